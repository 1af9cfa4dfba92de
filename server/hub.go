// Package server is the hub: it maps paths to streams, takes units from one
// publisher per stream and hands them to any number of readers.
//
//	Publisher.Write ──▶ Stream ──┬─▶ gopcache (latest GOP, for joins)
//	                             └─▶ ring of *media.Unit (shared by all readers)
//	                                   ▲ each Reader keeps its own cursor and
//	                                   │ pulls in its connection's goroutine
//
// The hub never imports a protocol. Write costs the same for 1 or 10,000
// readers: it stores one pointer in the stream's ring and wakes the waiting
// readers with one channel close.
package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/media"
)

// HubConfig configures a Hub.
type HubConfig struct {
	// PathConfig returns the settings for a path. Nil means DefaultPathConfig.
	PathConfig func(path string) PathConfig
	// Logger receives one line per stream start and end. Nil means slog.Default().
	Logger *slog.Logger
	// OnDemand, if set, is called by ReadWait for a path nobody publishes on.
	// It starts the path's source (a pull) and reports whether it did, or
	// whether one is already starting; ReadWait then waits for the publish.
	OnDemand func(path string) bool
	// ResolvePublish, if set, maps a publisher's path and key to the path it
	// publishes on and the key that goes with it (a key given as the last
	// path segment), and reports whether that key vouches for the path
	// (then the path's publishKey is not asked); it must give the same
	// answer for its own answer. An error refuses the publisher as
	// ErrUnauthorized, one wrapping ErrUnavailable as itself (the answer
	// is not known: the registry's database is down). The stream registry
	// sets it; it must return within a bound (it runs in the publisher's
	// handshake, outside the hub's locks).
	ResolvePublish func(path, key string) (newPath, newKey string, vouched bool, err error)
	// Authorize, if set, decides on every publisher (at ResolvePublish) and
	// reader (at CheckReadFrom) that passed the keys: an error refuses it.
	// The auth hook sets it.
	Authorize func(ctx context.Context, req AuthRequest) error
	// ReadToken, if set, checks a signed play token given as a reader's key:
	// true lets the reader in without the path's read key; an error refuses
	// it (an expired or forged token, or none where one is required).
	ReadToken func(path, key string) (bool, error)
	// OnPublish and OnUnpublish, if set, are called after a publisher
	// attached to or left path, outside the hub's locks; derived tells a
	// ladder rung (PublishOptions.Derived). They must not block: the
	// transcoder starts and stops its workers from them.
	OnPublish, OnUnpublish func(path string, derived bool)
	// LiveElsewhere, if set, reports whether path is published on another
	// node (the cluster's live map). On a path with standby on, a publisher
	// then waits here as a standby, as behind a local live publisher, until
	// Hub.Promote makes it live (the cluster calls it when the other node's
	// publisher is gone). It is asked once per publisher, with no hub lock
	// held, and should answer from memory or within a short timeout.
	LiveElsewhere func(path string) bool
	// OnStandby, if set, is called outside the hub's locks when a path
	// changes publisher without the stream ending: a standby took over, the
	// main one took the path back, or Hub.Promote. (A path that becomes
	// free with no standby is OnUnpublish.) It must not block.
	OnStandby func(ev StandbyEvent)
	// AuthFailures, if set, throttles addresses that keep failing keys,
	// passwords, tokens and the hook (AuthGate); nil throttles nothing.
	AuthFailures *guard.Budget
	// PublishGuard, if set, is asked before a publisher from the network
	// (Publish) or a pulled source (PublishTrusted with Pulled) holds a
	// path, and told when it left: the cluster's live map.
	PublishGuard PublishGuard
	// RelayKey, if set, recognizes a relay's cluster key given as a
	// reader's key: true lets the reader in as a relay (no path key, no
	// hook, no catch-up, counted apart from viewers); an error refuses it;
	// false, nil for a key that is not a cluster key.
	RelayKey func(path, key string) (bool, error)
}

// LogRefusal writes refusalLogBurst lines about one address per
// refusalLogWindow, then counts the rest into the next window's first line.
const (
	refusalLogWindow = 10 * time.Second
	refusalLogBurst  = 5
)

// Hub maps paths to live streams. It is safe for concurrent use.
type Hub struct {
	conf HubConfig
	log  *slog.Logger

	refusals *guard.Summary // LogRefusal's lines per address
	// viewerCounters are CountViewers' counters by protocol (copy on write).
	viewerCounters atomic.Pointer[map[string]func(path string) int]

	mu        sync.Mutex // mu guards streams, published and closed
	streams   map[string]*Stream
	published chan struct{} // closed (and replaced) on every Publish, for ReadWait
	closed    bool
}

// NewHub returns an empty hub.
func NewHub(c HubConfig) *Hub {
	if c.PathConfig == nil {
		c.PathConfig = func(string) PathConfig { return DefaultPathConfig() }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return &Hub{conf: c, log: c.Logger, refusals: guard.NewSummary(refusalLogWindow, refusalLogBurst), streams: map[string]*Stream{}, published: make(chan struct{})}
}

// PublishOptions describe who publishes.
type PublishOptions struct {
	// Key is the publish key the client gave (?key=...), "" if none.
	Key string
	// Protocol and Remote are for logs and stats ("rtmp", "1.2.3.4:5678").
	Protocol, Remote string
	// Derived marks a stream made by streamhub itself from another (a
	// ladder rung): it never gets a transcoder of its own, its publisher
	// needs no key, and its timestamps are kept as given across a
	// republish (they are the source's, so the rungs stay aligned with it).
	Derived bool
	// Pulled marks a source streamhub pulls itself (paths.*.source): the
	// operator configured it, so it needs no key and no stream registry.
	Pulled bool
	// Upstream marks a pulled source that is another node of the cluster
	// (an edge's pull from its origin): the live map is not asked.
	Upstream bool
	// OnKick, if set, ends the publisher's connection; Hub.KickPublisher
	// calls it (in its own goroutine) after detaching the publisher.
	OnKick func()
	// OnKeyframeRequest, if set, asks the publisher's encoder for a
	// keyframe soon (a WebRTC publisher sends it a PLI). The hub calls it
	// when a reader joins with no keyframe cached; readers ask through
	// Stream.RequestKeyframe. It must not block, and should rate-limit.
	OnKeyframeRequest func()
	// Role is RoleMain or RoleBackup on a path with standby on (standby.go):
	// what the publisher asked (role= in its URL query) or, if it did not
	// say, what the hub decided. "" means main.
	Role string
}

// PublishTrusted makes the caller the publisher of path with the given tracks
// (their IDs must be their indexes). Publish takes the tracks over: it sets
// their Session, so they must not be shared with another publisher. It
// returns ErrPathBusy if the path has a live publisher, ErrUnauthorized if
// the path's key does not match, or a *PathError. A stream in its grace period is taken over: its readers
// continue with the new publisher's units.
//
// It is the trusted entry point for streamhub's own publishers (the
// ladder's rungs, pulled sources) and tests: the auth hook is not asked
// and a refusal costs no delay; a Derived or Pulled publisher needs no key
// either. A publisher from the network comes in through Publish.
func (h *Hub) PublishTrusted(path string, tracks []*media.Track, opts PublishOptions) (*Publisher, error) {
	if len(tracks) == 0 {
		return nil, ErrNoTracks
	}
	var pc PathConfig
	var err error
	path, opts.Key, pc, err = h.checkPublisher(path, opts.Key, opts.Derived || opts.Pulled)
	if err != nil {
		return nil, err
	}
	if opts.Role == "" {
		opts.Role = RoleMain
	}
	release := func() {}
	if opts.Pulled && !opts.Upstream {
		if release, err = h.acquire(context.Background(), path); err != nil {
			return nil, err
		}
	}
	p, err := h.attachClaimed(&Claim{h: h, path: path, pc: pc, opts: opts, release: release}, tracks)
	if err != nil {
		release()
		return nil, err
	}
	return p, nil
}

// attachClaimed attaches c's publisher with tracks, logs it and tells
// HubConfig.OnPublish.
func (h *Hub) attachClaimed(c *Claim, tracks []*media.Track) (*Publisher, error) {
	p, err := h.attach(c, tracks)
	if err != nil {
		return nil, err
	}
	if p.Standby() {
		h.log.Info("stream standby publisher waiting", "path", c.path, "protocol", c.opts.Protocol, "remote", c.opts.Remote,
			"role", p.opts.Role, "tracks", describeTracks(tracks))
		return p, nil
	}
	h.log.Info("stream publishing", "path", c.path, "protocol", c.opts.Protocol, "remote", c.opts.Remote, "tracks", describeTracks(tracks))
	if h.conf.OnPublish != nil {
		h.conf.OnPublish(c.path, c.opts.Derived)
	}
	return p, nil
}

// attach makes a publisher for c's path under the hub lock.
func (h *Hub) attach(c *Claim, tracks []*media.Track) (*Publisher, error) {
	path, pc, opts := c.path, c.pc, c.opts
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.mayAttachLocked(c); err != nil {
		return nil, err
	}
	s := h.streams[path]
	if s == nil {
		s = newStream(h, path, pc)
		h.streams[path] = s
	}
	p, err := s.attachPublisher(tracks, opts, c)
	if err != nil {
		return nil, err
	}
	close(h.published)
	h.published = make(chan struct{})
	return p, nil
}

// mayAttachLocked refuses c's publisher when the hub is closed or its path
// is a rung of a live ladder; h.mu must be held.
func (h *Hub) mayAttachLocked(c *Claim) error {
	if h.closed {
		return ErrHubClosed
	}
	if !c.opts.Derived && h.rungOfLiveLocked(c.pc) {
		return ErrRungPath
	}
	return nil
}

// rungOfLiveLocked reports whether pc is a rung path of a source that is
// published now; h.mu must be held.
func (h *Hub) rungOfLiveLocked(pc PathConfig) bool {
	if pc.RungOf == "" {
		return false
	}
	src := h.streams[pc.RungOf]
	return src != nil && src.Publishing() && !src.Derived()
}

// resolvePublishFrom is resolvePublish for a known peer: once the keys
// passed, the auth hook (HubConfig.Authorize) decides. A refusal comes after
// a short random delay and spends one of the address's failures.
func (h *Hub) resolvePublishFrom(ctx context.Context, path, key string, vouched bool, from Peer) (string, string, error) {
	if err := h.AuthGate(from); err != nil {
		return "", "", err
	}
	p, k, err := h.resolvePublish(path, key, vouched)
	if err == nil {
		err = h.authorize(ctx, ActionPublish, p, from)
	}
	if err != nil {
		return "", "", h.authOutcome(err, from)
	}
	return p, k, nil
}

// resolvePublish checks a publisher's path and key and returns the path it
// publishes on and the key that goes with it: HubConfig.ResolvePublish may
// map them (a stream key given as the path's last segment becomes the
// stream's public id). It refuses a busy path or a rung of a live ladder.
// vouched is PublishRequest.Vouched.
func (h *Hub) resolvePublish(path, key string, vouched bool) (string, string, error) {
	path, key, pc, err := h.checkPublisher(path, key, vouched)
	if err != nil {
		return "", "", err
	}
	h.mu.Lock()
	s := h.streams[path]
	rung := h.rungOfLiveLocked(pc)
	h.mu.Unlock()
	if rung {
		return "", "", ErrRungPath
	}
	if s != nil {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if s.publisher != nil || s.claim != nil {
			if _, standby := s.standbyClaimLocked(PublishOptions{}); !standby {
				return "", "", ErrPathBusy
			}
		}
	}
	return path, key, nil
}

// checkPublisher validates path, maps it and the key with
// HubConfig.ResolvePublish and checks the publish key given for it. A
// publisher of streamhub's own (the ladder, a pulled source) is trusted:
// no mapping, no key.
func (h *Hub) checkPublisher(path, key string, derived bool) (string, string, PathConfig, error) {
	if err := ValidatePath(path); err != nil {
		return "", "", PathConfig{}, err
	}
	vouched := derived
	if !derived && h.conf.ResolvePublish != nil {
		p, k, ok, err := h.conf.ResolvePublish(path, key)
		if errors.Is(err, ErrUnavailable) {
			return "", "", PathConfig{}, err
		}
		if err != nil {
			return "", "", PathConfig{}, fmt.Errorf("%w: %w", ErrUnauthorized, err)
		}
		if err := ValidatePath(p); err != nil {
			return "", "", PathConfig{}, err
		}
		path, key, vouched = p, k, ok
	}
	pc := h.conf.PathConfig(path)
	if !vouched && !keyMatches(pc.PublishKey, key) {
		return "", "", PathConfig{}, ErrUnauthorized
	}
	return path, key, pc, nil
}

// PathConfig returns the settings for path.
func (h *Hub) PathConfig(path string) PathConfig { return h.conf.PathConfig(path) }

// keyMatches compares in constant time; an empty want allows anyone.
func keyMatches(want, got string) bool {
	return want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// ReadOptions change how a reader starts.
type ReadOptions struct {
	// Wait waits for an on-demand source to publish (HubConfig.OnDemand),
	// up to OnDemandTimeout or the end of the context.
	Wait bool
	// NoCatchUp starts at the cached GOP with its real timing, whatever
	// the path's catchUp: for an HLS segmenter, whose first segment must
	// last as long as the GOP did.
	NoCatchUp bool
	// Backlog starts at the newest cached keyframe at least this long ago
	// (the path's gopCache.backlog bounds what is kept), for players that
	// must receive that much media before they show any: ffmpeg and
	// ffprobe analyze 5 s of an MPEG-TS input. It applies with catch-up
	// (the backlog is played through within catchUp, so the player is not
	// left that far behind live) and with NoCatchUp, for a reader that
	// does not play but cuts the backlog at its real timing (an HLS
	// segmenter: complete segments at once); with a path's catchUp of 0
	// it is ignored.
	Backlog time.Duration
}

// readWith attaches a new reader to path. It returns ErrStreamNotFound when
// nothing is published there (a stream within its grace period counts as
// published), ErrTooManyReaders, or a *PathError.
func (h *Hub) readWith(path string, opts ReadOptions) (*Reader, error) {
	if err := ValidatePath(path); err != nil {
		return nil, err
	}
	h.mu.Lock()
	s := h.streams[path]
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, ErrHubClosed
	}
	if s == nil {
		return nil, ErrStreamNotFound
	}
	window := s.conf.CatchUp
	if opts.NoCatchUp {
		window = 0
	}
	backlog := opts.Backlog
	if window == 0 && !opts.NoCatchUp {
		backlog = 0
	}
	r, err := s.addReader(window, backlog)
	if err != nil {
		return nil, err
	}
	if r.waitKey {
		// Nothing to start from: a publisher that sends keyframes only
		// when asked (a browser over WHIP) would keep this reader waiting.
		s.RequestKeyframe()
	}
	return r, nil
}

// OnDemandTimeout bounds how long ReadWait waits for an on-demand source.
const OnDemandTimeout = 10 * time.Second

// readWait is readWith, except that for a path nobody publishes on whose
// source HubConfig.OnDemand starts, it waits until the source publishes or
// ctx ends or OnDemandTimeout passes (then ErrStreamNotFound).
func (h *Hub) readWait(ctx context.Context, path string, opts ReadOptions) (*Reader, error) {
	r, err := h.readWith(path, opts)
	if err != ErrStreamNotFound || h.conf.OnDemand == nil || !h.conf.OnDemand(path) {
		return r, err
	}
	ctx, cancel := context.WithTimeout(ctx, OnDemandTimeout)
	defer cancel()
	for {
		h.mu.Lock()
		s, published, closed := h.streams[path], h.published, h.closed
		h.mu.Unlock()
		if closed {
			return nil, ErrHubClosed
		}
		if s != nil {
			if r, err = h.readWith(path, opts); err != ErrStreamNotFound {
				return r, err
			}
		}
		select {
		case <-published:
		case <-ctx.Done():
			return nil, ErrStreamNotFound
		}
	}
}

// WaitStream waits until path has a live stream (a publisher came; a
// stream in its grace period counts) or ctx ends or the hub closes, and
// reports whether it has one. It wakes at each publish, never polls.
func (h *Hub) WaitStream(ctx context.Context, path string) bool {
	for {
		h.mu.Lock()
		s, published, closed := h.streams[path], h.published, h.closed
		h.mu.Unlock()
		if s != nil {
			return true
		}
		if closed {
			return false
		}
		select {
		case <-published:
		case <-ctx.Done():
			return false
		}
	}
}

// Stream returns the live stream at path, or nil.
func (h *Hub) Stream(path string) *Stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams[path]
}

// Streams returns the live streams, in no particular order.
func (h *Hub) Streams() []*Stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*Stream, 0, len(h.streams))
	for _, s := range h.streams {
		out = append(out, s)
	}
	return out
}

// Close ends every stream (its readers get ErrStreamClosed once they have
// read what was queued) and refuses new publishers and readers.
func (h *Hub) Close() {
	h.mu.Lock()
	if !h.closed {
		close(h.published) // wakes ReadWait, which then sees closed
	}
	h.closed = true
	streams := h.streams
	h.streams = map[string]*Stream{}
	h.mu.Unlock()
	for _, s := range streams {
		s.end()
	}
}

func describeTracks(tracks []*media.Track) string {
	out := ""
	for i, t := range tracks {
		if i > 0 {
			out += ", "
		}
		out += t.Codec.String()
		if t.Width > 0 {
			out += " " + strconv.Itoa(t.Width) + "x" + strconv.Itoa(t.Height)
		}
		if t.SampleRate > 0 {
			out += " " + strconv.Itoa(t.SampleRate) + "Hz"
		}
	}
	return out
}

// KickPublisher detaches every publisher of path, as if it had closed, and
// ends its connection (PublishOptions.OnKick): the standbys first, so that
// none takes over (a deleted stream or a rotated key ends them all). It
// reports whether the path had a live publisher. Readers wait out the grace
// period as after any publisher. Kicking only the live one, so that a
// standby takes over, is KickSession with its id, or Promote.
func (h *Hub) KickPublisher(path string) bool {
	s := h.Stream(path)
	if s == nil {
		return false
	}
	s.mu.RLock()
	standbys := append([]*Publisher(nil), s.standbys...)
	s.mu.RUnlock()
	for _, p := range standbys {
		h.kick(p)
	}
	s.mu.RLock()
	p := s.publisher
	s.mu.RUnlock()
	if p == nil {
		return false
	}
	h.kick(p)
	return true
}

// kick closes p and ends its connection.
func (h *Hub) kick(p *Publisher) {
	standby := p.Standby()
	p.Close()
	if p.opts.OnKick != nil {
		go p.opts.OnKick()
	}
	h.log.Info("publisher kicked", "path", p.s.path, "protocol", p.opts.Protocol, "remote", p.opts.Remote, "standby", standby)
}
