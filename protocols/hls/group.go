package hls

import (
	"slices"
	"strings"
	"time"
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
