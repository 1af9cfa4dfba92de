// Package auth holds the optional checks on publishers and readers that
// go beyond the per-path keys: an HTTP hook that decides on each of them,
// and signed play tokens with an expiry.
//
//	publisher/reader ─▶ hub (keys) ─▶ Hook.Authorize ──POST JSON──▶ your service (2xx allows)
//	reader ?key=s1.<expiry>.<signature> ─▶ Signer.Check (HMAC-SHA256 of path and expiry)
package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/streamhub/streamhub/server"
)

// Hook asks an HTTP service about every publisher and reader: a POST of
// the server.AuthRequest as JSON; a 2xx answer allows, anything else, an
// error or no answer within the timeout refuses (it fails closed). A
// "read" allowed for an address is remembered for CacheFor, since an HLS
// player makes several requests a second.
type Hook struct {
	url      string
	timeout  time.Duration
	cacheFor time.Duration
	client   *http.Client

	mu    sync.Mutex // mu guards cache
	cache map[string]time.Time
}

// CacheFor is how long an allowed read is remembered per path, protocol,
// peer address and token (the query's token or auth parameter);
// maxCache bounds the entries.
const (
	CacheFor = 30 * time.Second
	maxCache = 10000
)

// NewHook returns a hook that posts to url.
func NewHook(url string, timeout time.Duration) *Hook {
	return &Hook{url: url, timeout: timeout, cacheFor: CacheFor, cache: map[string]time.Time{},
		client: &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// Authorize is the hub's HubConfig.Authorize.
func (h *Hook) Authorize(ctx context.Context, req server.AuthRequest) error {
	key := ""
	if req.Action == server.ActionRead {
		host, _, err := net.SplitHostPort(req.Remote)
		if err != nil {
			host = req.Remote
		}
		// Not the whole query: hls.js puts a new _HLS_msn in every
		// playlist request. What can change the answer is who asks for
		// what, with which token.
		q, _ := url.ParseQuery(req.Query)
		key = req.Path + "\n" + req.Protocol + "\n" + host + "\n" + q.Get("token") + "\n" + q.Get("auth")
		h.mu.Lock()
		until, ok := h.cache[key]
		h.mu.Unlock()
		if ok && time.Now().Before(until) {
			return nil
		}
	}
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("auth hook: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(hr)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("auth hook: no answer within %s (auth.hookTimeout): refused", h.timeout)
		}
		return fmt.Errorf("auth hook: %v: refused", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) //nolint:errcheck // reuse the connection
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("auth hook answered %s", resp.Status)
	}
	if key != "" {
		h.mu.Lock()
		if len(h.cache) >= maxCache {
			now := time.Now()
			for k, until := range h.cache {
				if now.After(until) {
					delete(h.cache, k)
				}
			}
			if len(h.cache) >= maxCache {
				clear(h.cache) // still full of live entries: start over
			}
		}
		h.cache[key] = time.Now().Add(h.cacheFor)
		h.mu.Unlock()
	}
	return nil
}

// Signer makes and checks play tokens: "s1.<unix expiry>.<signature>",
// given by a reader as its key (?key=, SRT s=, the RTSP password); the
// signature is HMAC-SHA256 over the path and the expiry.
type Signer struct {
	secret   []byte
	required bool
}

// tokenPrefix starts every play token.
const tokenPrefix = "s1."

// NewSigner returns a signer with secret. required: every reader needs a
// token (a path's read key no longer suffices).
func NewSigner(secret string, required bool) *Signer {
	return &Signer{secret: []byte(secret), required: required}
}

func (s *Signer) mac(path string, exp int64) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(path + "\n" + strconv.FormatInt(exp, 10)))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// Sign returns a token that lets its holder read path (and its ladder
// rungs) until exp.
func (s *Signer) Sign(path string, exp time.Time) string {
	e := exp.Unix()
	return tokenPrefix + strconv.FormatInt(e, 10) + "." + s.mac(path, e)
}

// Errors of Check.
var (
	ErrTokenExpired  = errors.New("auth: the play token has expired: ask for a new link")
	ErrTokenInvalid  = errors.New("auth: the play token is not valid for this stream")
	ErrTokenRequired = errors.New("auth: this server plays signed links only (?key=s1....)")
)

// Check is the hub's HubConfig.ReadToken: true for a valid, unexpired
// token for path; an error for a bad or expired one, or for none when
// tokens are required; false, nil for none when they are not.
func (s *Signer) Check(path, key string) (bool, error) {
	rest, ok := strings.CutPrefix(key, tokenPrefix)
	if !ok {
		if s.required {
			return false, ErrTokenRequired
		}
		return false, nil
	}
	es, sig, ok := strings.Cut(rest, ".")
	exp, err := strconv.ParseInt(es, 10, 64)
	if !ok || err != nil {
		return false, ErrTokenInvalid
	}
	if !hmac.Equal([]byte(sig), []byte(s.mac(path, exp))) {
		return false, ErrTokenInvalid
	}
	if time.Now().Unix() > exp {
		return false, ErrTokenExpired
	}
	return true, nil
}
