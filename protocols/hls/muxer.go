package hls

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

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
	// prefix and last are the stopped muxer's file names' prefix and its
	// last snapshot, whose files are served for republishWindow
	// (Handler.serveEndedFile); last is dropped after that.
	prefix string
	last   *snapshot
}

// resumeTTL is how long a resume point is kept; resumeMax bounds how many.
const (
	resumeTTL = 10 * time.Minute
	resumeMax = 10000
)

// muxer is one stream's segmenter and what requests wait on.
//
// Locks: mu guards seg, snap's updates, err, stopped, changed and version.
// The reader goroutine (run, feed, add) is seg's only user and holds mu
// exclusively while it segments a batch; at the end of a batch that changed
// the segmenter it stores a new snapshot. Requests take mu shared for a few
// loads (the snapshot, the change channel, stopped, version, err) and then
// work on the snapshot without any lock. Sibling variants read snap without
// mu (it is atomic): a muxer numbering its first segment holds its own mu
// and must not wait for another's. Lock order: muxer.mu, then Handler.mu;
// plMu is taken alone.
type muxer struct {
	h      *Handler
	path   string
	prefix string
	// conf is the handler's muxer settings when the muxer started: a
	// reload changes those of the muxers started after it.
	conf Config

	mu  sync.RWMutex
	seg *segmenter // the reader goroutine's, under mu: requests read snap
	// snap is seg's state after the last batch that changed it (stored
	// under mu, loaded with or without it).
	snap    atomic.Pointer[snapshot]
	snapRev uint64        // seg.revision() of snap, under mu
	err     error         // the last segmenting error, or why the muxer stopped
	stopped bool          // the muxer ended: waiting is pointless
	changed chan struct{} // closed (and replaced) on every new part
	version uint64        // counts the changes

	// The rendered media playlist (plain and delta update) of a version
	// and URI query (a path's share value, the same for every viewer):
	// every player woken by a new part asks for the same bytes.
	plMu    sync.Mutex
	plCache [2]struct {
		version uint64
		query   string
		body    []byte
	}

	// resumeMSN is where the numbering goes on (resumePoint), 0 if it
	// starts afresh: the live edge until the first segment exists.
	resumeMSN uint64

	lastReq time.Time // guarded by h.mu
	// inflight counts the requests in progress (Handler.hold): a muxer
	// does not idle out under one that waits longer than idleTimeout.
	inflight atomic.Int32
	group    string // the ladder's source path: itself, or the parent of a rung
	done     chan struct{}
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
	// was authorized): it starts at the cached GOPs with their real
	// timing, after an on-demand source has started, from the newest
	// keyframe at least segmentMin ago (the gopCache.backlog keeps it):
	// the GOP before the current one is then a complete segment at once,
	// and the first playlist is answered at once with the current GOP's
	// parts up to the live edge, where a player starts. From the current
	// GOP alone, the first playlist would wait for its end (a segment is
	// complete at the next keyframe: up to a GOP) and the player would
	// start that much later.
	conf := h.muxerConfig()
	r, err := h.hub.ReadTrusted(ctx, path, server.ReadOptions{NoCatchUp: true, Wait: true, Backlog: conf.SegmentMin})
	if err != nil {
		return nil, err
	}
	// One reader per path serves every HLS player. It is no viewer: the
	// viewers are the clients counted by Handler.viewers.
	var id [4]byte
	rand.Read(id[:]) //nolint:errcheck // never fails on Linux
	m := &muxer{h: h, path: path, prefix: hex.EncodeToString(id[:]) + "_", changed: make(chan struct{}), conf: conf,
		seg: newSegmenter(conf.PartTarget, conf.SegmentMin, conf.Window), lastReq: time.Now(),
		done: make(chan struct{}), group: path}
	if i := strings.LastIndexByte(path, '/'); i > 0 && r.Stream().Derived() {
		m.group = path[:i]
	}
	h.mu.Lock()
	if old := h.muxers[path]; old != nil { // another request won the race
		h.mu.Unlock()
		r.Close()
		return old, nil
	}
	rp, resumed := h.resume[path]
	resumed = resumed && time.Since(rp.at) < resumeTTL
	discSeq := 0
	if resumed {
		discSeq, m.resumeMSN = rp.discSeq, rp.nextMSN
	}
	// Segments are cut at keyframes, so they last at least a GOP: start the
	// target duration there, since EXT-X-TARGETDURATION must not change.
	m.seg.startAt(r.Stream().KeyframeInterval(), discSeq, siblingInfo{
		firstMSN: func(dts time.Duration) (uint64, bool) {
			if n, ok := h.siblingMSN(m, dts); ok {
				return n, ok
			}
			return rp.nextMSN, resumed
		},
		anchors:   func() []wallAnchor { return h.siblingAnchors(m) },
		notBefore: func() (time.Duration, bool) { return h.siblingStart(m) },
	})
	m.takeSnapshot()
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

// hold marks a request of m in progress until the returned func is
// called, which counts as a request of m's ladder then: a request that
// waits (a blocking reload, a multivariant playlist waiting for the
// ladder's rungs) for longer than idleTimeout does not see its muxer stop
// under it, and idleTimeout runs from the end of the last request.
func (h *Handler) hold(m *muxer) (release func()) {
	m.inflight.Add(1)
	return func() {
		h.mu.Lock()
		h.touchGroupLocked(m, time.Now())
		h.mu.Unlock()
		m.inflight.Add(-1)
	}
}

// dropEndedFiles lets go of the last snapshot of path's muxer whose files
// were named with prefix, once republishWindow is over.
func (h *Handler) dropEndedFiles(path, prefix string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rp, ok := h.resume[path]; ok && rp.prefix == prefix {
		rp.last = nil
		h.resume[path] = rp
	}
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
				idle := m.inflight.Load() == 0 && time.Since(m.lastReq) > m.conf.IdleTimeout
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
	m.finish()
	rp := m.view().resumePoint(time.Now())
	rp.prefix, rp.last = m.prefix, m.view()
	h.mu.Lock()
	if h.muxers[m.path] == m {
		delete(h.muxers, m.path)
	}
	if rp.nextMSN > 0 {
		h.saveResumeLocked(m.path, rp)
		path, prefix := m.path, m.prefix // not m or rp: the timer must not keep the muxer
		time.AfterFunc(republishWindow, func() { h.dropEndedFiles(path, prefix) })
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

// finish completes the growing segment when the muxer stops, so that the
// last playlist its players get (the waiting requests are answered at
// the stop) ends with a complete segment, and a muxer that resumes the
// numbering after a republish starts right after it. Otherwise hls.js,
// whose last segment was the one before, places the new session's first
// segment a target duration too late and waits at the hole without
// loading anything (TestHLSBrowserRepublishAfterGrace).
func (m *muxer) finish() {
	defer guard.Recover(m.h.log, "hls muxer end", "path", m.path)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seg.endSegment() || m.seg.revision() != m.snapRev {
		m.takeSnapshot()
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
	if m.seg.revision() != m.snapRev {
		m.takeSnapshot()
	}
	if cut {
		m.version++
		close(m.changed)
		m.changed = make(chan struct{})
	}
}

// takeSnapshot stores the segmenter's state for requests; m.mu must be
// held exclusively (or the muxer not started yet).
func (m *muxer) takeSnapshot() {
	m.snap.Store(m.seg.snapshot())
	m.snapRev = m.seg.revision()
}

// view returns the segmenter's state after its last change.
func (m *muxer) view() *snapshot { return m.snap.Load() }

// state returns, under one read lock, the segmenter's state with what a
// waiting request needs beside it: the channel closed on the next change
// and whether the muxer stopped.
func (m *muxer) state() (v *snapshot, changed <-chan struct{}, stopped bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.snap.Load(), m.changed, m.stopped
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
	if c.body != nil && c.version == v && c.query == query {
		return c.body, nil
	}
	m.mu.RLock()
	pl, v := m.playlist(m.snap.Load()), m.version
	m.mu.RUnlock()
	if len(pl.segs) == 0 {
		return nil, err
	}
	pl.reports = m.h.reports(m)
	pl.query = query
	body := pl.render(skip)
	m.h.renders.Add(1)
	m.plMu.Lock()
	if m.plCache[i].version <= v {
		m.plCache[i].version, m.plCache[i].query, m.plCache[i].body = v, query, body
	}
	m.plMu.Unlock()
	return body, nil
}

// playlist is what a media playlist of the snapshot v needs (its segments
// are shared: a snapshot never changes).
func (m *muxer) playlist(v *snapshot) *mediaPlaylist {
	return &mediaPlaylist{prefix: m.prefix, partTarget: v.partTarget,
		partHoldBack: time.Duration(m.conf.partHoldBack() * float64(v.partTarget)),
		targetDur:    targetDuration(v.maxDur, m.conf.SegmentMin),
		segs:         v.segs, discSeq: v.discSeq}
}
