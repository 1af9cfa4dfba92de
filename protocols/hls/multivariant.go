package hls

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/streamhub/streamhub/media"
)

// serveMultivariant serves index.m3u8; share is the query of every URI
// in it (admit).
func (h *Handler) serveMultivariant(w http.ResponseWriter, req *http.Request, m *muxer, share string) {
	var rends []Rendition
	if h.conf.Renditions != nil {
		rends = h.conf.Renditions(m.path) // starts an on-demand ladder now, while we wait below
	}
	deadline := time.Now().Add(h.conf.BlockTimeout)
	// Wait for a first segment so the bandwidth is measured, bounded.
	h.waitFor(req.Context(), m, (*snapshot).hasCompleteSegment)
	if len(rends) == 0 && h.conf.Renditions != nil {
		rends = h.conf.Renditions(m.path) // a source over TS or RTSP knows its picture size only now
	}
	vs := []variant{m.variant("stream.m3u8" + share)}
	for _, r := range rends {
		tracks := h.waitRung(req.Context(), m.path+"/"+r.Name, deadline)
		if tracks == nil {
			continue // not up in time: players see it on their next load
		}
		v := variant{uri: r.Name + "/stream.m3u8" + share, bandwidth: r.Bandwidth, average: r.AverageBandwidth}
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
	h.counts.add(KindMultivariant)
	w.Header().Set("Cache-Control", ccShort)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if req.Method != http.MethodHead {
		w.Write(body) //nolint:errcheck
	}
}

// waitRung waits until the rung at path is published with a video track
// whose parameters are known, and returns its tracks; nil at the deadline.
// It does not poll: it waits on the group's watch of the rung (rungWatch),
// which wakes every request waiting on it when the rung is ready.
func (h *Handler) waitRung(ctx context.Context, path string, deadline time.Time) []*media.Track {
	if t := h.rungReady(path); t != nil {
		return t
	}
	if !time.Now().Before(deadline) {
		return nil
	}
	w := h.joinRungWatch(path)
	defer h.leaveRungWatch(path, w)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-w.ready:
		return w.tracks
	case <-ctx.Done():
		return nil
	case <-timer.C:
		// A rung the watch could not follow (nothing would have started
		// it) may still have come: one last look.
		return h.rungReady(path)
	}
}

// rungReady returns the tracks of the rung at path if it is published
// with a video track whose parameters are known, else nil.
func (h *Handler) rungReady(path string) []*media.Track {
	if s := h.hub.Stream(path); s != nil && s.Publishing() && s.Derived() {
		if t := s.Tracks(); rungTracksReady(t) {
			return t
		}
	}
	return nil
}

// rungTracksReady reports whether a rung's tracks can be listed: a video
// track with its parameter sets and picture size.
func rungTracksReady(tracks []*media.Track) bool {
	vt, _ := pickTracks(tracks)
	return vt != nil && vt.SPS != nil && vt.Width > 0
}

// variant describes the muxer's own stream, its bandwidth measured from
// its segments.
func (m *muxer) variant(uri string) variant {
	snap := m.view()
	v := variant{uri: uri}
	if t := snap.video; t != nil {
		v.codecs = append(v.codecs, codecString(t))
		v.width, v.height, v.fps = t.Width, t.Height, t.FPS
	}
	if snap.audio != nil {
		v.codecs = append(v.codecs, codecString(snap.audio))
	}
	var bytes int
	var dur time.Duration
	for _, s := range snap.segs {
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
		for _, s := range snap.segs {
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
