package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
)

// Peer says who asks to publish or read, for the auth hook and the logs.
type Peer struct {
	// Protocol is rtmp, rtsp, srt, httpflv or hls.
	Protocol string
	// Remote is the peer's address (HOST:PORT).
	Remote string
	// Query is the raw query of the URL the peer used, "" if none.
	Query string
}

// AuthRequest is what HubConfig.Authorize decides on.
type AuthRequest struct {
	// Action is "publish" or "read".
	Action string `json:"action"`
	// Path is the stream path (for a publisher, after a stream key was
	// resolved to the stream's public id).
	Path     string `json:"path"`
	Protocol string `json:"protocol"`
	Remote   string `json:"remote"`
	Query    string `json:"query"`
}

// Auth actions.
const (
	ActionPublish = "publish"
	ActionRead    = "read"
)

// authTimeout bounds HubConfig.Authorize; the hook has its own, shorter one.
const authTimeout = 30 * time.Second

// authorize runs HubConfig.Authorize; any error refuses, as ErrUnauthorized.
func (h *Hub) authorize(ctx context.Context, action, path string, from Peer) error {
	if h.conf.Authorize == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	err := h.conf.Authorize(ctx, AuthRequest{Action: action, Path: path, Protocol: from.Protocol, Remote: from.Remote, Query: withoutKey(from.Query)})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	return nil
}

// refusalDelay makes guessing keys slow: a refused publisher or reader is
// answered 100 to 300 ms late.
func refusalDelay() {
	time.Sleep(100*time.Millisecond + rand.N(200*time.Millisecond))
}

// AuthGate returns ErrTooManyFailures, after the refusal delay, when
// from's address has spent its failure budget (HubConfig.AuthFailures),
// else nil. CheckReadFrom and ResolvePublishFrom call it; a protocol or
// the API calls it before checking a credential of its own (an RTSP
// password, an API token), and AuthFailed after a wrong one, so that every
// way in shares one budget per address.
func (h *Hub) AuthGate(from Peer) error {
	if from.Remote == "" || h.conf.AuthFailures.Allow(guard.HostOfString(from.Remote)) {
		return nil
	}
	refusalDelay()
	return ErrTooManyFailures
}

// AuthFailed spends one of from's address's failures and waits the
// refusal delay: a credential from from was wrong.
func (h *Hub) AuthFailed(from Peer) {
	if from.Remote != "" {
		h.conf.AuthFailures.Fail(guard.HostOfString(from.Remote))
	}
	refusalDelay()
}

// authOutcome ends a credential check: a refusal for a wrong key or the
// hook is counted and delayed (AuthFailed).
func (h *Hub) authOutcome(err error, from Peer) error {
	if errors.Is(err, ErrUnauthorized) {
		h.AuthFailed(from)
	}
	return err
}

// LogRefusal logs a refused connection or request at Info, summarized per
// remote address and kind of refusal across every protocol: the first few
// in a window are written (the first with how many were left out before
// it), the others only counted. kind is the caller's name for why (a
// status code, "wrong password"): one of a few, never a peer's value. A
// protocol logs every refusal through it, so an address that retries in a
// loop costs a few lines per window.
func (h *Hub) LogRefusal(log *slog.Logger, remote, kind, msg string, attrs ...any) {
	ok, more := h.refusals.Note(guard.HostOfString(remote) + "\x00" + kind)
	if !ok {
		return
	}
	if more > 0 {
		attrs = append(attrs, "refusals_not_logged", more)
	}
	log.Info(msg, attrs...)
}

// Authorize decides whether req may read path, as Read does, without
// attaching a reader: for a protocol that serves many requests of one
// viewer from one reader of its own (LL-HLS), or checks before it attaches
// (RTSP DESCRIBE and SETUP). It returns a *PathError for an invalid path
// and ErrUnauthorized unless a signed play token (HubConfig.ReadToken) or
// the path's read key lets the peer in and the auth hook
// (HubConfig.Authorize) agrees. A refusal comes after a short random delay
// and spends one of the address's failures (auth.failureBudget).
func (h *Hub) Authorize(ctx context.Context, path string, req ReadRequest) error {
	if err := h.AuthGate(req.Peer); err != nil {
		return err
	}
	return h.authOutcome(h.checkRead(ctx, path, req.Key, req.Peer), req.Peer)
}

func (h *Hub) checkRead(ctx context.Context, path, key string, from Peer) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	pc := h.conf.PathConfig(path)
	signed := false
	if h.conf.ReadToken != nil {
		ok, err := h.conf.ReadToken(path, key)
		if !ok && pc.RungOf != "" {
			if ok2, _ := h.conf.ReadToken(pc.RungOf, key); ok2 {
				ok, err = true, nil // the source's token plays its rungs
			}
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnauthorized, err)
		}
		signed = ok
	}
	if !signed && !keyMatches(pc.ReadKey, key) {
		return ErrUnauthorized
	}
	return h.authorize(ctx, ActionRead, path, from)
}

// OpenToRead reports whether anyone may read path without a key or a
// signed link (the auth hook aside): what a public listing of the live
// streams may show to an anonymous visitor. It asks nothing of the hook
// and costs no refusal delay.
func (h *Hub) OpenToRead(path string) bool {
	pc := h.conf.PathConfig(path)
	if pc.ReadKey != "" {
		return false
	}
	if pc.RungOf != "" && h.conf.PathConfig(pc.RungOf).ReadKey != "" {
		return false
	}
	if h.conf.ReadToken != nil {
		if _, err := h.conf.ReadToken(path, ""); err != nil {
			return false // signed links only
		}
	}
	return true
}

// withoutKey drops the key parameter from a raw query: a stream key never
// leaves the server, not even to the auth hook.
func withoutKey(query string) string {
	if !strings.Contains(query, "key=") {
		return query
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return ""
	}
	q.Del("key")
	return q.Encode()
}
