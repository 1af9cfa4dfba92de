package hls

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

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

// sibling is another variant of m's ladder, with the URI of its media
// playlist relative to m's.
type sibling struct {
	m   *muxer
	uri string
}

// siblings returns the running muxers of the variants beside m's stream
// (its ladder group: the source and the other rungs of a rung, the rungs
// of a source), by URI.
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
	slices.SortFunc(out, func(a, b sibling) int { return strings.Compare(a.uri, b.uri) })
	return out
}

// reports returns the rendition reports of m's siblings.
func (h *Handler) reports(m *muxer) []renditionReport {
	var out []renditionReport
	for _, o := range h.siblings(m) {
		msn, part, ok := o.m.view().lastPart()
		if ok {
			out = append(out, renditionReport{uri: o.uri, lastMSN: msn, lastPart: part})
		}
	}
	return out // by URI, as siblings are
}

// siblingMSN numbers a muxer's first segment, starting at dts, like the
// other variants of its ladder (the source and its rungs): the number of
// their segment that starts at the same keyframe (the rungs have the
// source's keyframes), else one past their newest. It is false when no
// sibling has a segment. It is called with m.mu held and takes no
// sibling's lock: it reads their snapshots, so two muxers starting at once
// never wait on each other, and the answer depends on what the siblings
// segmented, never on whether one was busy at that moment. Siblings are
// asked in the order of their URIs.
func (h *Handler) siblingMSN(m *muxer, dts time.Duration) (uint64, bool) {
	var best uint64
	found := false
	for _, sib := range h.siblings(m) {
		v := sib.m.view()
		if n, ok := v.msnAt(dts); ok {
			return n, true
		}
		if n := len(v.segs); n > 0 && v.segs[n-1].msn+1 > best {
			best, found = v.segs[n-1].msn+1, true
		}
	}
	return best, found
}

// siblingStart returns the earliest start of the sibling variants'
// segments (false when none has one): a new muxer's backlog that reaches
// further back is dropped (segmenter.notBefore). Called with m.mu held;
// reads only snapshots.
func (h *Handler) siblingStart(m *muxer) (time.Duration, bool) {
	var first time.Duration
	found := false
	for _, sib := range h.siblings(m) {
		if v := sib.m.view(); len(v.segs) > 0 && (!found || v.segs[0].startDTS < first) {
			first, found = v.segs[0].startDTS, true
		}
	}
	return first, found
}

// siblingAnchors returns the PROGRAM-DATE-TIME anchors of the variants
// beside m (see segmenter.programDateTime), in the order of their URIs. Like
// siblingMSN, it is called with m.mu held and reads only snapshots.
func (h *Handler) siblingAnchors(m *muxer) []wallAnchor {
	var out []wallAnchor
	for _, sib := range h.siblings(m) {
		if a := sib.m.view().anchor; !a.wall.IsZero() {
			out = append(out, a)
		}
	}
	return out
}

// rungWatch follows one rung that multivariant requests wait for (the
// ladder is starting, or the rung does not know its picture size yet):
// one trusted hub reader per rung, however many requests wait, started by
// the first of them and stopped when the last leaves. The hub wakes it
// when the rung is published (an on-demand wait) and on each batch of its
// units (a track update comes with the unit that carries it); when the
// rung is ready, the watch closes ready and every waiting request answers
// at once. A watch that cannot follow the rung (nothing publishes it, the
// stream ended) drops out of Handler.rungs without closing ready: its
// requests wait out their deadline and look once more; the next request
// starts a new watch.
type rungWatch struct {
	ready   chan struct{}  // closed when the rung is ready
	tracks  []*media.Track // the rung's tracks, set before ready is closed
	cancel  context.CancelFunc
	waiters int // guarded by Handler.mu
}

// joinRungWatch returns the watch of the rung at path, starting one.
func (h *Handler) joinRungWatch(path string) *rungWatch {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.rungs[path]
	if w == nil {
		ctx, cancel := context.WithCancel(h.ctx)
		w = &rungWatch{ready: make(chan struct{}), cancel: cancel}
		if h.ctx.Err() == nil { // closed: no watch (the request waits out its deadline)
			h.rungs[path] = w
			h.wg.Add(1)
			go h.watchRung(ctx, path, w)
		}
	}
	w.waiters++
	return w
}

// leaveRungWatch ends a request's wait; the last to leave stops the watch.
func (h *Handler) leaveRungWatch(path string, w *rungWatch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.waiters--; w.waiters == 0 {
		w.cancel()
		if h.rungs[path] == w {
			delete(h.rungs, path)
		}
	}
}

// watchRung reads the rung at path until it is ready (then it wakes the
// waiting requests), the watch is stopped or the rung cannot be followed.
func (h *Handler) watchRung(ctx context.Context, path string, w *rungWatch) {
	defer h.wg.Done()
	defer w.cancel()
	defer func() {
		h.mu.Lock()
		if h.rungs[path] == w {
			delete(h.rungs, path)
		}
		h.mu.Unlock()
	}()
	// A trusted reader (the request that waits was authorized for the
	// source); Wait waits for an on-demand ladder to publish the rung.
	r, err := h.hub.ReadTrusted(ctx, path, server.ReadOptions{NoCatchUp: true, Wait: true})
	if err != nil {
		return
	}
	defer r.Close()
	batch := make([]*media.Unit, 0, 64)
	for {
		if t := h.rungReady(path); t != nil {
			w.tracks = t
			h.rungWakes.Add(1)
			close(w.ready)
			return
		}
		if batch, err = r.NextBatch(ctx, batch[:0]); err != nil {
			return
		}
	}
}
