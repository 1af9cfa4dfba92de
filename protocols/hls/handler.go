// Package hls serves low-latency HLS from our own fMP4 segmenter.
//
//	hub ──one Reader per stream──▶ muxer (segmenter: parts of partTarget, segments at keyframes)
//	                                  │ bounded window in memory
//	GET /PATH/index.m3u8 ─────────────┤ multivariant playlist
//	GET /PATH/stream.m3u8?_HLS_msn=…  ┤ media playlist (blocking reload, delta updates)
//	GET /PATH/<id>init1.mp4, seg7.mp4, part8.2.mp4 (blocking for the hinted part)
//
// A muxer starts on the first request for a live stream, from the GOP
// cache, so a stream live for a few seconds has a playable playlist at
// once; it stops after idleTimeout without requests or when the stream ends.
package hls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamhub/streamhub/internal/conf"
	"github.com/streamhub/streamhub/protocols/internal/httperr"
	"github.com/streamhub/streamhub/server"
)

// Config configures LL-HLS.
type Config struct {
	// PartTarget is the part duration aimed at (EXT-X-PART-INF).
	PartTarget time.Duration `yaml:"partTarget"`
	// PartHoldBack is EXT-X-SERVER-CONTROL's PART-HOLD-BACK in part
	// targets: how far behind the live edge a player starts (hls.js stays
	// there for good). 0 means DefaultPartHoldBack.
	PartHoldBack float64 `yaml:"partHoldBack"`
	// SegmentMin is the shortest segment: segments are cut at the first
	// keyframe after it.
	SegmentMin time.Duration `yaml:"segmentMin"`
	// Window is how many complete segments a playlist lists.
	Window int `yaml:"window"`
	// IdleTimeout stops a muxer nobody asked for in this long.
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// BlockTimeout bounds a blocking playlist or part request.
	BlockTimeout time.Duration `yaml:"blockTimeout"`
	// ShareWindow is how often the value that stands in for a viewer's
	// key in playlist URIs changes (share.go); a value stays valid for one
	// to two windows.
	ShareWindow time.Duration `yaml:"shareWindow"`
	// ShareSecret keys the share values (main sets auth.playSecret, so
	// that values survive a restart); empty: a random key per process.
	ShareSecret string `yaml:"-"`
	// Renditions, if set, returns the ladder rungs of a live source path
	// (and starts an on-demand ladder); the multivariant playlist lists
	// each as <name>/stream.m3u8 beside the source. Set by main.
	Renditions func(path string) []Rendition `yaml:"-"`
}

// Validate returns the problems of the section at prefix ("hls"), each
// naming its key.
func (c *Config) Validate(prefix string) []error {
	p := conf.New(prefix)
	p.Duration("partTarget", c.PartTarget, 50*time.Millisecond, 2*time.Second)
	if c.PartHoldBack < MinPartHoldBack || c.PartHoldBack > 10 {
		p.Bad("partHoldBack", "must be between %g (RFC 8216bis: at least twice PART-TARGET) and 10 part targets (got %g)",
			float64(MinPartHoldBack), c.PartHoldBack)
	}
	if c.SegmentMin < c.PartTarget || c.SegmentMin > 30*time.Second {
		p.Bad("segmentMin", "must be between %s.partTarget and 30s (got %s)", prefix, c.SegmentMin)
	}
	if c.Window < 3 || c.Window > 100 {
		p.Bad("window", "must be between 3 and 100 segments (got %d)", c.Window)
	}
	p.Duration("idleTimeout", c.IdleTimeout, time.Second, time.Hour)
	p.Duration("blockTimeout", c.BlockTimeout, time.Second, time.Minute)
	p.Duration("shareWindow", c.ShareWindow, time.Minute, 24*time.Hour)
	return p.Errs()
}

// MinPartHoldBack is the smallest PART-HOLD-BACK in part targets: RFC
// 8216bis 4.4.3.8 says it MUST be at least twice PART-TARGET (and SHOULD
// be three times, as Apple's authoring spec asks of streams for its
// devices).
const MinPartHoldBack = 2

// DefaultPartHoldBack is PART-HOLD-BACK in part targets when
// Config.PartHoldBack is 0: the spec's SHOULD. hls.js starts this far
// behind its first playlist's live edge and never catches up by itself,
// so every part of it is latency (docs/protocols.md). 2 is 0.15-0.2 s
// less, and three times as many hls.js starts that stall once and stay a
// second further behind (docs/benchmarks.md).
const DefaultPartHoldBack = 3

// partHoldBack returns PART-HOLD-BACK in part targets.
func (c *Config) partHoldBack() float64 {
	if c.PartHoldBack <= 0 {
		return DefaultPartHoldBack
	}
	return c.PartHoldBack
}

// Rendition is one ladder rung of a source, published as <path>/<Name>.
type Rendition struct {
	Name string
	// Bandwidth and AverageBandwidth are the rung's peak and average bits
	// per second, from its encoder settings.
	Bandwidth, AverageBandwidth int
}

// Handler serves LL-HLS for every hub stream. It is an http.Handler.
type Handler struct {
	conf Config
	// muxConf, when set, replaces conf's partTarget, partHoldBack,
	// segmentMin, window and idleTimeout for new muxers (SetMuxerConfig).
	muxConf atomic.Pointer[Config]
	hub     *server.Hub
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex // mu guards muxers, groups, resume and rungs
	muxers map[string]*muxer
	// groups holds the muxers of each ladder (a source and its rungs),
	// by the source's path.
	groups map[string]map[*muxer]struct{}
	// resume is where the numbering of a path's next muxer goes on, kept
	// when a muxer stops (see resumePoint).
	resume map[string]resumePoint

	// rungs holds the watches of the rungs multivariant requests wait for
	// (rungWatch), by path; guarded by mu.
	rungs map[string]*rungWatch
	// rungWakes counts the watches that found their rung ready and woke
	// its waiting requests (for the tests).
	rungWakes atomic.Int64

	viewers *viewers

	shares  *shares
	now     func() time.Time // time.Now; tests move it
	counts  responseCounts
	renders atomic.Uint64 // media playlists rendered (muxer.mediaPlaylist)
}

// New returns a handler; Close stops its muxers. It counts the HLS viewers
// of every path for the hub (Hub.CountViewers).
func New(conf Config, hub *server.Hub, log *slog.Logger) *Handler {
	ctx, cancel := context.WithCancel(context.Background())
	h := &Handler{conf: conf, hub: hub, log: log.With("proto", "hls"), ctx: ctx, cancel: cancel, muxers: map[string]*muxer{},
		groups: map[string]map[*muxer]struct{}{}, resume: map[string]resumePoint{}, rungs: map[string]*rungWatch{},
		viewers: newViewers(), shares: newShares(conf.ShareSecret, conf.ShareWindow), now: time.Now}
	hub.CountViewers("hls", h.viewers.count)
	return h
}

// SetMuxerConfig makes the muxers started from now on use c's partTarget,
// partHoldBack, segmentMin, window and idleTimeout (a config reload); running muxers keep
// theirs, so their players see no change. Safe for concurrent use.
func (h *Handler) SetMuxerConfig(c Config) {
	m := h.conf
	m.PartTarget, m.SegmentMin, m.Window, m.IdleTimeout = c.PartTarget, c.SegmentMin, c.Window, c.IdleTimeout
	m.PartHoldBack = c.PartHoldBack
	h.muxConf.Store(&m)
}

// muxerConfig returns the settings of a new muxer.
func (h *Handler) muxerConfig() Config {
	if c := h.muxConf.Load(); c != nil {
		return *c
	}
	return h.conf
}

// Close stops every muxer and waits for them; waiting requests end.
func (h *Handler) Close() {
	h.cancel()
	h.wg.Wait()
}

// IsHLS reports whether an URL path is one the handler serves.
func IsHLS(p string) bool { return strings.HasSuffix(p, ".m3u8") || strings.HasSuffix(p, ".mp4") }

// ServeHTTP serves /PATH/index.m3u8, /PATH/stream.m3u8 and the fMP4 files.
// Every answer says how long a shared cache may keep it (cache.go).
func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	hd := w.Header()
	hd.Set("Access-Control-Allow-Origin", "*")
	hd.Set("Access-Control-Allow-Headers", "Range")
	switch req.Method {
	case http.MethodOptions:
		hd.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		hd.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodGet, http.MethodHead:
	default:
		hd.Set("Allow", "GET, HEAD, OPTIONS")
		h.fail(w, http.StatusMethodNotAllowed, "method not allowed: use GET or HEAD")
		return
	}
	i := strings.LastIndexByte(req.URL.Path, '/')
	if i <= 0 {
		h.fail(w, http.StatusNotFound, "not an HLS URL: use /<path>/index.m3u8")
		return
	}
	path, file := strings.Trim(req.URL.Path[:i], "/"), req.URL.Path[i+1:]
	q := req.URL.Query()
	share, err := h.admit(req, path, q)
	if err != nil {
		h.fail(w, refusalStatus(err), fmt.Sprintf("%s: %v", path, err))
		return
	}
	m, err := h.muxerFor(req.Context(), path)
	if err != nil && strings.HasSuffix(file, ".m3u8") && errors.Is(err, server.ErrStreamNotFound) && h.endedRecently(path) {
		// One hls.blockTimeout for the whole request: a blocking reload
		// that waited for the republish waits only what is left for its
		// part (a cache in front holds a request for about as long).
		deadline := time.Now().Add(h.conf.BlockTimeout)
		m, err = h.awaitRepublish(req.Context(), path, deadline)
		req = req.WithContext(context.WithValue(req.Context(), blockDeadlineKey{}, deadline))
	}
	if err != nil {
		if !strings.HasSuffix(file, ".mp4") || !h.serveEndedFile(w, req, path, file) {
			h.fail(w, httperr.Status(err), fmt.Sprintf("%s: %v", path, err))
		}
		return
	}
	defer h.hold(m)()
	h.viewers.seen(path, req.RemoteAddr, req.UserAgent()) // a live path only: its count is asked for
	switch {
	case file == "index.m3u8":
		h.serveMultivariant(w, req, m, share)
	case file == "stream.m3u8":
		h.serveMedia(w, req, q, m, share)
	case strings.HasPrefix(file, m.prefix) && strings.HasSuffix(file, ".mp4"):
		h.serveFile(w, req, m, strings.TrimSuffix(strings.TrimPrefix(file, m.prefix), ".mp4"))
	case strings.HasSuffix(file, ".mp4") && h.serveEndedFile(w, req, path, file):
		// The last files of the muxer before this one (serveEndedFile).
	default:
		// A file of an earlier muxer of this path (a player from before a
		// restart) or a wrong name: the player reloads the playlist.
		h.fail(w, http.StatusNotFound, fmt.Sprintf("%s: no such HLS file %q (reload index.m3u8)", path, file))
	}
}

// republishWindow is how long after a path's muxer stopped a playlist
// request for it waits for the path to come back (awaitRepublish) rather
// than failing at once.
const republishWindow = time.Minute

// blockDeadlineKey is the request context's value of when its blocking
// waits end (a time.Time), when not hls.blockTimeout from each wait's
// start.
type blockDeadlineKey struct{}

// endedRecently reports whether path had a muxer (with a segment) that
// stopped within republishWindow: its players, still polling, are
// probably waiting for its publisher to reconnect.
func (h *Handler) endedRecently(path string) bool {
	h.mu.Lock()
	rp, ok := h.resume[path]
	h.mu.Unlock()
	return ok && time.Since(rp.at) < republishWindow
}

// awaitRepublish waits until deadline for path to be published again
// and returns its muxer. A player's playlist reload thus spans a
// publisher's reconnection (OBS waits a few seconds before it tries
// again) instead of spending its few retries on 404s and giving up. It
// wakes at the hub's publishes (Hub.WaitStream), never polls.
func (h *Handler) awaitRepublish(ctx context.Context, path string, deadline time.Time) (*muxer, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel) // the handler closing ends the wait
	defer stop()
	for h.hub.WaitStream(ctx, path) {
		if m, err := h.muxerFor(ctx, path); !errors.Is(err, server.ErrStreamNotFound) {
			return m, err
		}
		// Gone again before the muxer could read it: wait for the next.
	}
	if h.ctx.Err() != nil {
		return nil, server.ErrHubClosed
	}
	return nil, server.ErrStreamNotFound
}

// admit checks a request's credential and returns the query the URIs of
// its playlists carry ("" on a path anyone may read). A share value
// (share.go) is checked alone; anything else goes through the hub's
// guarded door with the request's key, and a request that gave a key gets
// the current share of the path in its URIs, never its own key.
func (h *Handler) admit(req *http.Request, path string, q url.Values) (string, error) {
	scope := path
	if src := h.hub.PathConfig(path).RungOf; src != "" {
		scope = src // the source's value plays its rungs, as its key does
	}
	now := h.now()
	if v := q.Get(shareParam); v != "" {
		if err := h.shares.check(scope, v, now); err != nil {
			h.hub.LogRefusal(h.log, req.RemoteAddr, "share", "hls: refused", "path", path, "remote", req.RemoteAddr, "error", err)
			return "", err
		}
		return h.shares.query(scope, now), nil
	}
	key := q.Get("key")
	if err := h.hub.Authorize(req.Context(), path, server.ReadRequest{Key: key,
		Peer: server.Peer{Protocol: "hls", Remote: req.RemoteAddr, Query: req.URL.RawQuery}}); err != nil {
		return "", err
	}
	if key == "" {
		return "", nil
	}
	return h.shares.query(scope, now), nil
}

// refusalStatus is the status of a refused request: 403 for a bad share
// value, else the hub's error's (401 for a wrong key).
func refusalStatus(err error) int {
	if errors.Is(err, ErrShareInvalid) || errors.Is(err, ErrShareExpired) {
		return http.StatusForbidden
	}
	return httperr.Status(err)
}

// waitFor waits until ready holds of the muxer's snapshot, the muxer
// stops, the request ends or BlockTimeout passes (the request's
// blockDeadlineKey, when it has one); it reports whether ready
// held. A waiting request costs its own goroutine (net/http's) and nothing
// else: it selects on the muxer's change channel and its own context.
func (h *Handler) waitFor(ctx context.Context, m *muxer, ready func(*snapshot) bool) bool {
	d := h.conf.BlockTimeout
	if dl, ok := ctx.Value(blockDeadlineKey{}).(time.Time); ok {
		d = time.Until(dl)
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		v, ch, stopped := m.state()
		ok := ready(v)
		if ok || stopped {
			return ok
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-timer.C:
			return false
		case <-m.done:
			return false
		}
	}
}

// maxPartIndex bounds _HLS_part, as parseFileName bounds a part's index.
const maxPartIndex = 999

func (h *Handler) serveMedia(w http.ResponseWriter, req *http.Request, q url.Values, m *muxer, share string) {
	if q.Has("_HLS_part") && !q.Has("_HLS_msn") {
		h.fail(w, http.StatusBadRequest, "_HLS_part needs _HLS_msn")
		return
	}
	skip := q.Get("_HLS_skip")
	if skip != "" && skip != "YES" && skip != "v2" {
		h.fail(w, http.StatusBadRequest, "bad _HLS_skip: use YES or v2")
		return
	}
	kind, cc := KindPlaylist, ccPlain
	if v := q.Get("_HLS_msn"); v != "" {
		msn, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			h.fail(w, http.StatusBadRequest, "bad _HLS_msn")
			return
		}
		part := -1
		if pv := q.Get("_HLS_part"); pv != "" {
			if part, err = strconv.Atoi(pv); err != nil || part < 0 || part > maxPartIndex {
				h.fail(w, http.StatusBadRequest, fmt.Sprintf("bad _HLS_part: use 0 to %d", maxPartIndex))
				return
			}
		}
		v := m.view()
		next := v.nextMSN
		if len(v.segs) == 0 {
			next = max(next, m.resumeMSN)
		}
		// RFC 8216bis 6.2.5.2: more than two segments ahead is an error.
		if msn > next+1 {
			h.fail(w, http.StatusBadRequest, fmt.Sprintf("_HLS_msn=%d is more than two segments ahead of the live edge (%d)", msn, next))
			return
		}
		kind, cc = KindBlocking, blockingCacheControl(m.conf.PartTarget)
		if !h.waitFor(req.Context(), m, func(v *snapshot) bool { return v.hasPart(msn, part) }) {
			if req.Context().Err() != nil {
				return // the player left
			}
			// Not there in time: the playlist as it is, kept no longer
			// than an error, since it lacks what its URL names.
			kind, cc = KindError, ccShort
		}
	} else {
		// A muxer that just started may have no complete segment yet.
		h.waitFor(req.Context(), m, (*snapshot).hasCompleteSegment)
	}
	body, err := m.mediaPlaylist(skip != "", share)
	if body == nil {
		code := http.StatusNotFound
		if err == nil {
			code = http.StatusServiceUnavailable
			err = errors.New("no media yet: retry")
		}
		h.fail(w, code, fmt.Sprintf("%s: %v", m.path, err))
		return
	}
	h.counts.add(kind)
	w.Header().Set("Cache-Control", cc)
	w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if req.Method != http.MethodHead {
		w.Write(body) //nolint:errcheck // the player left
	}
}

// serveFile serves init<N>, seg<N> and part<N>.<I>. A request for the next
// part (the preload hint) waits until it exists.
func (h *Handler) serveFile(w http.ResponseWriter, req *http.Request, m *muxer, name string) {
	if ref, ok := parseFileName(name); ok && ref.kind == "part" {
		msn, idx := ref.n, ref.idx
		if msn <= m.view().nextMSN { // the hinted part, or one just before: block for it
			h.waitFor(req.Context(), m, func(v *snapshot) bool { d, gone := v.partData(msn, idx); return d != nil || gone })
			if req.Context().Err() != nil {
				return // the player (or the cache's fetch) left
			}
		}
	}
	h.writeFile(w, req, m.path, m.view(), name)
}

// serveEndedFile serves a file of path's muxer that stopped within
// republishWindow, from its last snapshot: a player still loading the
// last segment of a session that ended (the segment the stop completed)
// gets it while the publisher comes back, instead of a 404 that leaves a
// hole before the next session. It reports whether file was one.
func (h *Handler) serveEndedFile(w http.ResponseWriter, req *http.Request, path, file string) bool {
	h.mu.Lock()
	rp, ok := h.resume[path]
	h.mu.Unlock()
	if !ok || rp.last == nil || rp.prefix == "" || !strings.HasPrefix(file, rp.prefix) || time.Since(rp.at) >= republishWindow {
		return false
	}
	h.writeFile(w, req, path, rp.last, strings.TrimSuffix(strings.TrimPrefix(file, rp.prefix), ".mp4"))
	return true
}

// writeFile answers with the file name (init<N>, seg<N>, part<N>.<I>) of
// snapshot v, or 404.
func (h *Handler) writeFile(w http.ResponseWriter, req *http.Request, path string, v *snapshot, name string) {
	var data []byte
	ref, ok := parseFileName(name)
	kind := KindSegment
	switch {
	case !ok:
	case ref.kind == "init":
		kind, data = KindInit, v.inits[int(ref.n)]
	case ref.kind == "seg":
		data = v.segmentData(ref.n)
	case ref.kind == "part":
		kind = KindPart
		data, _ = v.partData(ref.n, ref.idx)
	}
	if data == nil {
		h.fail(w, http.StatusNotFound, fmt.Sprintf("%s: %s.mp4 is not (or no longer) available", path, name))
		return
	}
	h.counts.add(kind)
	// Names are unique per muxer and never reused: caches may keep them.
	w.Header().Set("Cache-Control", ccFile)
	w.Header().Set("Content-Type", "video/mp4")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	if req.Method != http.MethodHead {
		w.Write(data) //nolint:errcheck
	}
}
