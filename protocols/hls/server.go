// Package hls serves low-latency HLS from our own fMP4 segmenter.
//
//	hub ──one Reader per stream──▶ muxer (segmenter: parts ~200 ms, segments at keyframes)
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
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/internal/httperr"
	"github.com/streamhub/streamhub/server"
)

// Config configures LL-HLS.
type Config struct {
	// PartTarget is the part duration aimed at (EXT-X-PART-INF).
	PartTarget time.Duration
	// SegmentMin is the shortest segment: segments are cut at the first
	// keyframe after it.
	SegmentMin time.Duration
	// Window is how many complete segments a playlist lists.
	Window int
	// IdleTimeout stops a muxer nobody asked for in this long.
	IdleTimeout time.Duration
	// BlockTimeout bounds a blocking playlist or part request.
	BlockTimeout time.Duration
	// Renditions, if set, returns the ladder rungs of a live source path
	// (and starts an on-demand ladder); the multivariant playlist lists
	// each as <name>/stream.m3u8 beside the source.
	Renditions func(path string) []Rendition
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
	hub  *server.Hub
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex // mu guards muxers and groups
	muxers map[string]*muxer
	// groups holds the muxers of each ladder (a source and its rungs),
	// by the source's path.
	groups map[string]map[*muxer]struct{}
	// resume is where the numbering of a path's next muxer goes on, kept
	// when a muxer stops (see resumePoint).
	resume map[string]resumePoint

	viewers *viewers
}

// resumePoint continues a path's media sequence across muxers: a muxer
// that starts after another stopped (the publisher left and came back
// after the grace period, or nobody asked for a while) numbers its first
// segment where the last one stopped, one discontinuity later. A player
// still asking for the old session's next segment (_HLS_msn) then gets the
// new one after an EXT-X-DISCONTINUITY, instead of a 400 for a number "far
// ahead" of a muxer that restarted from 0.
type resumePoint struct {
	nextMSN uint64
	discSeq int // the discontinuity sequence of the next segment
	at      time.Time
}

// resumeTTL is how long a resume point is kept; resumeMax bounds how many.
const (
	resumeTTL = 10 * time.Minute
	resumeMax = 10000
)

// New returns a handler; Close stops its muxers. It counts the HLS viewers
// of every path for the hub (Hub.CountViewers).
func New(conf Config, hub *server.Hub, log *slog.Logger) *Handler {
	ctx, cancel := context.WithCancel(context.Background())
	h := &Handler{conf: conf, hub: hub, log: log.With("proto", "hls"), ctx: ctx, cancel: cancel, muxers: map[string]*muxer{},
		groups: map[string]map[*muxer]struct{}{}, resume: map[string]resumePoint{}, viewers: newViewers()}
	hub.CountViewers("hls", h.viewers.count)
	return h
}

// Close stops every muxer and waits for them; waiting requests end.
func (h *Handler) Close() {
	h.cancel()
	h.wg.Wait()
}

// IsHLS reports whether an URL path is one the handler serves.
func IsHLS(p string) bool { return strings.HasSuffix(p, ".m3u8") || strings.HasSuffix(p, ".mp4") }

// muxer is one stream's segmenter and what requests wait on.
type muxer struct {
	h      *Handler
	path   string
	prefix string

	mu      sync.RWMutex // mu guards seg, err, stopped, changed and version
	seg     *segmenter
	err     error         // the last segmenting error, or why the muxer stopped
	stopped bool          // the muxer ended: waiting is pointless
	changed chan struct{} // closed (and replaced) on every new part
	version uint64        // counts the changes
	tracks  []*media.Track

	// The rendered media playlist (plain and delta update) of a version:
	// every player woken by a new part asks for the same bytes.
	plMu    sync.Mutex
	plCache [2]struct {
		version uint64
		body    []byte
	}

	// resumeMSN is where the numbering goes on (resumePoint), 0 if it
	// starts afresh: the live edge until the first segment exists.
	resumeMSN uint64

	lastReq  time.Time // guarded by h.mu
	group    string    // the ladder's source path: itself, or the parent of a rung
	done     chan struct{}
	bytesOut uint64
}

// muxerFor returns the running muxer of path, starting one if the stream is
// live (or an on-demand source starts).
func (h *Handler) muxerFor(ctx context.Context, path string) (*muxer, error) {
	h.mu.Lock()
	if m := h.muxers[path]; m != nil {
		h.touchGroupLocked(m, time.Now())
		h.mu.Unlock()
		return m, nil
	}
	h.mu.Unlock()
	// The segmenter is streamhub's own reader (the request that starts it
	// was authorized): it starts at the cached GOP with its real timing,
	// after an on-demand source has started.
	r, err := h.hub.ReadTrusted(ctx, path, server.ReadOptions{NoCatchUp: true, Wait: true})
	if err != nil {
		return nil, err
	}
	// One reader per path serves every HLS player. It is no viewer: the
	// viewers are the clients counted by Handler.viewers.
	var id [4]byte
	rand.Read(id[:]) //nolint:errcheck // never fails on Linux
	m := &muxer{h: h, path: path, prefix: hex.EncodeToString(id[:]) + "_", changed: make(chan struct{}),
		seg: newSegmenter(h.conf.PartTarget, h.conf.SegmentMin, h.conf.Window), lastReq: time.Now(),
		done: make(chan struct{}), tracks: r.Tracks(), group: path}
	if i := strings.LastIndexByte(path, '/'); i > 0 && r.Stream().Derived() {
		m.group = path[:i]
	}
	// Segments are cut at keyframes, so they last at least a GOP: start the
	// target duration there, since EXT-X-TARGETDURATION must not change.
	m.seg.maxDur = r.Stream().KeyframeInterval()
	h.mu.Lock()
	if old := h.muxers[path]; old != nil { // another request won the race
		h.mu.Unlock()
		r.Close()
		return old, nil
	}
	rp, resumed := h.resume[path]
	resumed = resumed && time.Since(rp.at) < resumeTTL
	if resumed {
		m.seg.discSeq, m.resumeMSN = rp.discSeq, rp.nextMSN
	}
	m.seg.firstMSN = func(dts time.Duration) (uint64, bool) {
		if n, ok := h.siblingMSN(m, dts); ok {
			return n, ok
		}
		return rp.nextMSN, resumed
	}
	if h.ctx.Err() != nil {
		h.mu.Unlock()
		r.Close()
		return nil, server.ErrHubClosed
	}
	h.muxers[path] = m
	if h.groups[m.group] == nil {
		h.groups[m.group] = map[*muxer]struct{}{}
	}
	h.groups[m.group][m] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()
	go m.run(r)
	return m, nil
}

// saveResumeLocked keeps rp for path, dropping old points; h.mu must be
// held.
func (h *Handler) saveResumeLocked(path string, rp resumePoint) {
	if len(h.resume) >= resumeMax {
		for p, old := range h.resume {
			if time.Since(old.at) >= resumeTTL {
				delete(h.resume, p)
			}
		}
		if len(h.resume) >= resumeMax {
			clear(h.resume)
		}
	}
	h.resume[path] = rp
}

// touchGroupLocked marks m and the other variants of its ladder (its
// source, its rungs, its sibling rungs) as asked for: the variants a player
// may switch to stay ready while any of them is watched, instead of
// restarting behind the others. h.mu must be held.
func (h *Handler) touchGroupLocked(m *muxer, now time.Time) {
	m.lastReq = now
	for o := range h.groups[m.group] {
		o.lastReq = now
	}
}

// run feeds the segmenter until the stream ends, the muxer idles or the
// handler closes.
func (m *muxer) run(r *server.Reader) {
	h := m.h
	defer h.wg.Done()
	defer close(m.done)
	defer r.Close()
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				h.mu.Lock()
				idle := time.Since(m.lastReq) > h.conf.IdleTimeout
				h.mu.Unlock()
				if idle {
					cancel()
					return
				}
			}
		}
	}()
	h.log.Info("muxer started", "path", m.path)
	err := m.feed(ctx, r)
	m.mu.RLock()
	rp := resumePoint{nextMSN: m.seg.nextMSN, discSeq: m.seg.discSeq + 1, at: time.Now()}
	for _, sg := range m.seg.segs[min(1, len(m.seg.segs)):] {
		if sg.discontinuity {
			rp.discSeq++
		}
	}
	m.mu.RUnlock()
	h.mu.Lock()
	if h.muxers[m.path] == m {
		delete(h.muxers, m.path)
	}
	if rp.nextMSN > 0 {
		h.saveResumeLocked(m.path, rp)
	}
	if g := h.groups[m.group]; g != nil {
		delete(g, m)
		if len(g) == 0 {
			delete(h.groups, m.group)
		}
	}
	h.mu.Unlock()
	m.mu.Lock()
	if m.err == nil {
		m.err = err
	}
	m.stopped = true
	m.version++
	close(m.changed) // wake every waiting request: they answer and end
	m.changed = make(chan struct{})
	m.mu.Unlock()
	reason := err.Error()
	if ctx.Err() != nil && h.ctx.Err() == nil {
		reason = "no requests for idleTimeout"
	}
	h.log.Info("muxer stopped", "path", m.path, "cause", reason)
}

// feed segments the reader's units until it ends. A panic ends this muxer
// only (the next request starts another), as an error.
func (m *muxer) feed(ctx context.Context, r *server.Reader) (err error) {
	defer guard.RecoverErr(m.h.log, "hls muxer", &err, "path", m.path)
	tracks := func() []*media.Track { return r.Stream().Tracks() }
	batch := make([]*media.Unit, 0, 256)
	for {
		batch, err = r.NextBatch(ctx, batch[:0])
		if err != nil {
			return err
		}
		m.add(batch, tracks)
	}
}

// add segments a batch and wakes the waiting requests when a part is cut.
func (m *muxer) add(batch []*media.Unit, tracks func() []*media.Track) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cut := false
	for _, u := range batch {
		c, aerr := m.seg.add(u, tracks)
		cut = cut || c
		switch {
		case aerr != nil && m.err == nil:
			m.h.log.Warn("muxer cannot segment the stream", "path", m.path, "reason", aerr.Error())
			m.err = aerr
		case aerr == nil && c:
			m.err = nil // segmenting again (a republish with other codecs)
		}
	}
	if cut {
		m.version++
		close(m.changed)
		m.changed = make(chan struct{})
	}
}

// ServeHTTP serves /PATH/index.m3u8, /PATH/stream.m3u8 and the fMP4 files.
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
		http.Error(w, "method not allowed: use GET or HEAD", http.StatusMethodNotAllowed)
		return
	}
	i := strings.LastIndexByte(req.URL.Path, '/')
	if i <= 0 {
		http.Error(w, "not an HLS URL: use /<path>/index.m3u8", http.StatusNotFound)
		return
	}
	path, file := strings.Trim(req.URL.Path[:i], "/"), req.URL.Path[i+1:]
	if err := h.hub.Authorize(req.Context(), path, server.ReadRequest{Key: req.URL.Query().Get("key"),
		Peer: server.Peer{Protocol: "hls", Remote: req.RemoteAddr, Query: req.URL.RawQuery}}); err != nil {
		httperr.Refuse(w, path, err)
		return
	}
	m, err := h.muxerFor(req.Context(), path)
	if err != nil {
		httperr.Refuse(w, path, err)
		return
	}
	h.viewers.seen(path, req.RemoteAddr, req.UserAgent()) // a live path only: its count is asked for
	switch {
	case file == "index.m3u8":
		h.serveMultivariant(w, req, m)
	case file == "stream.m3u8":
		h.serveMedia(w, req, m)
	case strings.HasPrefix(file, m.prefix) && strings.HasSuffix(file, ".mp4"):
		h.serveFile(w, req, m, strings.TrimSuffix(strings.TrimPrefix(file, m.prefix), ".mp4"))
	default:
		// A file of an earlier muxer of this path (a player from before a
		// restart) or a wrong name: the player reloads the playlist.
		http.Error(w, fmt.Sprintf("%s: no such HLS file %q (reload index.m3u8)", path, file), http.StatusNotFound)
	}
}

// waitFor waits until ready (checked under m.mu read lock) holds, the muxer
// stops, the request ends or BlockTimeout passes; it reports whether ready
// held. A waiting request costs its own goroutine (net/http's) and nothing
// else: it selects on the muxer's change channel and its own context.
func (h *Handler) waitFor(ctx context.Context, m *muxer, ready func() bool) bool {
	timer := time.NewTimer(h.conf.BlockTimeout)
	defer timer.Stop()
	for {
		m.mu.RLock()
		ok, ch, stopped := ready(), m.changed, m.stopped
		m.mu.RUnlock()
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

// hasPart reports whether segment msn has part idx (or is complete with
// fewer parts, when idx is -1: the whole segment).
func hasPart(segs []*segment, msn uint64, idx int) bool {
	for i := len(segs) - 1; i >= 0; i-- {
		s := segs[i]
		if s.msn < msn {
			return false
		}
		if s.msn == msn {
			if idx < 0 {
				return s.complete
			}
			if idx < len(s.parts) {
				return true
			}
			// §6.2.5.2: a Part Index past the last part of a complete
			// segment asks for part 0 of the next one.
			return s.complete && hasPart(segs, msn+1, 0)
		}
	}
	return len(segs) > 0 && segs[0].msn > msn // already left the window
}

func (h *Handler) serveMedia(w http.ResponseWriter, req *http.Request, m *muxer) {
	q := req.URL.Query()
	if q.Has("_HLS_part") && !q.Has("_HLS_msn") {
		http.Error(w, "_HLS_part needs _HLS_msn", http.StatusBadRequest)
		return
	}
	if v := q.Get("_HLS_msn"); v != "" {
		msn, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			http.Error(w, "bad _HLS_msn", http.StatusBadRequest)
			return
		}
		part := -1
		if pv := q.Get("_HLS_part"); pv != "" {
			if part, err = strconv.Atoi(pv); err != nil || part < 0 {
				http.Error(w, "bad _HLS_part", http.StatusBadRequest)
				return
			}
		}
		m.mu.RLock()
		next := m.seg.nextMSN
		if len(m.seg.segs) == 0 {
			next = max(next, m.resumeMSN)
		}
		m.mu.RUnlock()
		// RFC 8216bis 6.2.5.2: more than two segments ahead is an error.
		if msn > next+1 {
			http.Error(w, fmt.Sprintf("_HLS_msn=%d is more than two segments ahead of the live edge (%d)", msn, next), http.StatusBadRequest)
			return
		}
		if !h.waitFor(req.Context(), m, func() bool { return hasPart(m.seg.segs, msn, part) }) {
			if req.Context().Err() != nil {
				return // the player left
			}
		}
		w.Header().Set("Cache-Control", "no-cache")
	} else {
		// A muxer that just started may have no complete segment yet.
		h.waitFor(req.Context(), m, func() bool { return hasCompleteSegment(m.seg.segs) })
		w.Header().Set("Cache-Control", "max-age=1")
	}
	body, err := m.mediaPlaylist(q.Get("_HLS_skip") == "YES" || q.Get("_HLS_skip") == "v2", keyQuery(q.Get("key")))
	if body == nil {
		code := http.StatusNotFound
		if err == nil {
			code = http.StatusServiceUnavailable
			err = errors.New("no media yet: retry")
		}
		http.Error(w, fmt.Sprintf("%s: %v", m.path, err), code)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if req.Method != http.MethodHead {
		w.Write(body) //nolint:errcheck // the player left
	}
}

// mediaPlaylist returns the rendered media playlist, nil (with the
// muxer's error, if any) while there is no segment. It renders once per
// change and delta-update flag.
func (m *muxer) mediaPlaylist(skip bool, query string) ([]byte, error) {
	i := 0
	if skip {
		i = 1
	}
	m.mu.RLock()
	v, err := m.version, m.err
	m.mu.RUnlock()
	m.plMu.Lock()
	c := m.plCache[i]
	m.plMu.Unlock()
	if query == "" && c.body != nil && c.version == v {
		return c.body, nil
	}
	m.mu.RLock()
	pl, v := m.playlist(), m.version
	m.mu.RUnlock()
	if len(pl.segs) == 0 {
		return nil, err
	}
	pl.reports = m.h.reports(m)
	pl.query = query
	body := pl.render(skip)
	if query != "" {
		return body, nil // per viewer: not cached
	}
	m.plMu.Lock()
	if m.plCache[i].version <= v {
		m.plCache[i].version, m.plCache[i].body = v, body
	}
	m.plMu.Unlock()
	return body, nil
}

// playlist copies what a media playlist needs; m.mu must be held.
func (m *muxer) playlist() *mediaPlaylist {
	segs := append([]*segment(nil), m.seg.segs...)
	// The growing segment is copied too: its parts slice grows under the lock.
	if n := len(segs); n > 0 && !segs[n-1].complete {
		c := *segs[n-1]
		c.parts = append([]*part(nil), c.parts...)
		segs[n-1] = &c
	}
	return &mediaPlaylist{prefix: m.prefix, partTarget: m.seg.PartTarget(),
		targetDur: targetDuration(m.seg.maxDur, m.h.conf.SegmentMin), segs: segs, discSeq: m.seg.discSeq}
}

func (h *Handler) serveMultivariant(w http.ResponseWriter, req *http.Request, m *muxer) {
	var rends []Rendition
	if h.conf.Renditions != nil {
		rends = h.conf.Renditions(m.path) // starts an on-demand ladder now, while we wait below
	}
	deadline := time.Now().Add(h.conf.BlockTimeout)
	// Wait for a first segment so the bandwidth is measured, bounded.
	h.waitFor(req.Context(), m, func() bool { return hasCompleteSegment(m.seg.segs) })
	if len(rends) == 0 && h.conf.Renditions != nil {
		rends = h.conf.Renditions(m.path) // a source over TS or RTSP knows its picture size only now
	}
	key := keyQuery(req.URL.Query().Get("key"))
	vs := []variant{m.variant("stream.m3u8" + key)}
	for _, r := range rends {
		tracks := h.waitRung(req.Context(), m.path+"/"+r.Name, deadline)
		if tracks == nil {
			continue // not up in time: players see it on their next load
		}
		v := variant{uri: r.Name + "/stream.m3u8" + key, bandwidth: r.Bandwidth, average: r.AverageBandwidth}
		if vt, at := pickTracks(tracks); vt != nil {
			v.codecs = append(v.codecs, codecString(vt))
			v.width, v.height, v.fps = vt.Width, vt.Height, vt.FPS
			if at != nil {
				v.codecs = append(v.codecs, codecString(at))
			}
		}
		vs = append(vs, v)
	}
	body := renderMultivariant(vs)
	w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
	w.Header().Set("Cache-Control", "max-age=1")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if req.Method != http.MethodHead {
		w.Write(body) //nolint:errcheck
	}
}

// waitRung waits until the rung at path is published with a video track
// whose parameters are known, and returns its tracks; nil at the deadline.
func (h *Handler) waitRung(ctx context.Context, path string, deadline time.Time) []*media.Track {
	for {
		if s := h.hub.Stream(path); s != nil && s.Publishing() && s.Derived() {
			if vt, _ := pickTracks(s.Tracks()); vt != nil && vt.SPS != nil && vt.Width > 0 {
				return s.Tracks()
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// variant describes the muxer's own stream, its bandwidth measured from
// its segments.
func (m *muxer) variant(uri string) variant {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v := variant{uri: uri}
	if m.seg.video != nil {
		t := m.seg.video.hub
		v.codecs = append(v.codecs, codecString(t))
		v.width, v.height, v.fps = t.Width, t.Height, t.FPS
	}
	if m.seg.audio != nil {
		v.codecs = append(v.codecs, codecString(m.seg.audio.hub))
	}
	var bytes int
	var dur time.Duration
	for _, s := range m.seg.segs {
		if s.complete && s.dur > 0 {
			bytes += len(s.data)
			dur += s.dur
			v.bandwidth = max(v.bandwidth, int(float64(len(s.data)*8)/s.dur.Seconds()))
		}
	}
	if dur > 0 {
		v.average = int(float64(bytes*8) / dur.Seconds())
	}
	if v.bandwidth == 0 { // no complete segment yet: estimate from the parts
		for _, s := range m.seg.segs {
			for _, p := range s.parts {
				bytes += len(p.data)
				dur += p.dur
			}
		}
		if dur > 0 {
			v.bandwidth = int(float64(bytes*8) / dur.Seconds())
			v.average = v.bandwidth
		}
	}
	return v
}

// sibling is another variant of m's ladder, with the URI of its media
// playlist relative to m's.
type sibling struct {
	m   *muxer
	uri string
}

// siblings returns the running muxers of the variants beside m's stream
// (its ladder group: the source and the other rungs of a rung, the rungs
// of a source).
func (h *Handler) siblings(m *muxer) []sibling {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []sibling
	for o := range h.groups[m.group] {
		switch {
		case o == m:
		case m.path == m.group: // m is the source, o a rung
			out = append(out, sibling{o, o.path[len(m.group)+1:] + "/stream.m3u8"})
		case o.path == o.group: // o is the source
			out = append(out, sibling{o, "../stream.m3u8"})
		default:
			out = append(out, sibling{o, "../" + o.path[len(o.group)+1:] + "/stream.m3u8"})
		}
	}
	return out
}

// reports returns the rendition reports of m's siblings.
func (h *Handler) reports(m *muxer) []renditionReport {
	var out []renditionReport
	for _, o := range h.siblings(m) {
		o.m.mu.RLock()
		msn, part, ok := lastPart(o.m.seg.segs)
		o.m.mu.RUnlock()
		if ok {
			out = append(out, renditionReport{uri: o.uri, lastMSN: msn, lastPart: part})
		}
	}
	slices.SortFunc(out, func(a, b renditionReport) int { return strings.Compare(a.uri, b.uri) })
	return out
}

// serveFile serves init<N>, seg<N> and part<N>.<I>. A request for the next
// part (the preload hint) waits until it exists.
func (h *Handler) serveFile(w http.ResponseWriter, req *http.Request, m *muxer, name string) {
	var data []byte
	ref, ok := parseFileName(name)
	switch {
	case !ok:
	case ref.kind == "init":
		m.mu.RLock()
		data = m.seg.inits[int(ref.n)]
		m.mu.RUnlock()
	case ref.kind == "seg":
		m.mu.RLock()
		for _, s := range m.seg.segs {
			if s.msn == ref.n && s.complete {
				data = s.data
			}
		}
		m.mu.RUnlock()
	case ref.kind == "part":
		msn, idx := ref.n, ref.idx
		// find returns the part, or gone when it will never exist
		// (its segment ended with fewer parts, or left the window).
		find := func() (d []byte, gone bool) {
			if len(m.seg.segs) > 0 && msn < m.seg.segs[0].msn {
				return nil, true
			}
			for _, s := range m.seg.segs {
				if s.msn == msn {
					if idx < len(s.parts) {
						return s.parts[idx].data, false
					}
					return nil, s.complete
				}
			}
			return nil, false
		}
		m.mu.RLock()
		next := m.seg.nextMSN
		m.mu.RUnlock()
		if msn <= next { // the hinted part, or one just before: block for it
			h.waitFor(req.Context(), m, func() bool { d, gone := find(); return d != nil || gone })
		}
		m.mu.RLock()
		data, _ = find()
		m.mu.RUnlock()
	}
	if data == nil {
		http.Error(w, fmt.Sprintf("%s: %s.mp4 is not (or no longer) available", m.path, name), http.StatusNotFound)
		return
	}
	// Names are unique per muxer and never reused: caches may keep them.
	w.Header().Set("Cache-Control", "public, max-age=3600, immutable")
	w.Header().Set("Content-Type", "video/mp4")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	if req.Method != http.MethodHead {
		w.Write(data) //nolint:errcheck
	}
}

// keyQuery is the query every URI of a playlist carries when the player
// gave a read key: players resolve playlist URIs without the query of the
// playlist they came from.
func keyQuery(key string) string {
	if key == "" {
		return ""
	}
	return "?key=" + url.QueryEscape(key)
}

// fileRef names one fMP4 file: init<n>, seg<n> or part<n>.<idx>.
type fileRef struct {
	kind string
	n    uint64
	idx  int
}

// parseFileName parses a file name (without the muxer prefix and ".mp4")
// as the playlists write it (initURI, segURI, partURI).
func parseFileName(name string) (fileRef, bool) {
	num := func(s string) (uint64, bool) {
		if s == "" || len(s) > 19 || (len(s) > 1 && s[0] == '0') {
			return 0, false
		}
		v, err := strconv.ParseUint(s, 10, 64)
		return v, err == nil
	}
	switch {
	case strings.HasPrefix(name, "init"):
		n, ok := num(name[4:])
		return fileRef{kind: "init", n: n}, ok && n < 1<<31
	case strings.HasPrefix(name, "seg"):
		n, ok := num(name[3:])
		return fileRef{kind: "seg", n: n}, ok
	case strings.HasPrefix(name, "part"):
		a, b, found := strings.Cut(name[4:], ".")
		n, ok1 := num(a)
		i, ok2 := num(b)
		return fileRef{kind: "part", n: n, idx: int(i)}, found && ok1 && ok2 && i < 1000
	}
	return fileRef{}, false
}

// hasCompleteSegment reports whether a playlist of segs lists a segment.
func hasCompleteSegment(segs []*segment) bool {
	for _, s := range segs {
		if s.complete {
			return true
		}
	}
	return false
}

// siblingMSN numbers a muxer's first segment, starting at dts, like the
// other variants of its ladder (the source and its rungs): the number of
// their segment that starts at the same keyframe (the rungs have the
// source's keyframes), else one past their newest. It is false when no
// sibling runs. It is called with m.mu held, so it only tries the
// siblings' locks: two muxers starting at once must not wait on each other.
func (h *Handler) siblingMSN(m *muxer, dts time.Duration) (uint64, bool) {
	var best uint64
	found := false
	for _, sib := range h.siblings(m) {
		o := sib.m
		if !o.mu.TryRLock() {
			continue
		}
		for _, s := range o.seg.segs {
			if s.startDTS == dts {
				o.mu.RUnlock()
				return s.msn, true
			}
		}
		if n := len(o.seg.segs); n > 0 && o.seg.segs[n-1].msn+1 > best {
			best, found = o.seg.segs[n-1].msn+1, true
		}
		o.mu.RUnlock()
	}
	return best, found
}
