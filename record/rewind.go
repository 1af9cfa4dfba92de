package record

// Live rewind: an HLS playlist over the recorded segments themselves.
// Each segment file is an fMP4 init followed by fragments, so the playlist
// points into the files with byte ranges (EXT-X-MAP for the init,
// EXT-X-BYTERANGE for each run of fragments from one keyframe to the
// next): no second copy of the media, and the files are served with
// http.ServeContent (ranges).
//
//	GET /api/v1/recordings/rewind.m3u8?path=P&from=T  ─▶ EVENT playlist from T to now (no ENDLIST while recording)
//	GET /api/v1/recordings/segment?path=P&start=NS     ─▶ the segment file (Range)

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rewind paths.
const (
	RewindPath  = "/api/v1/recordings/rewind.m3u8"
	SegmentPath = "/api/v1/recordings/segment"
)

// fragSum is one fragment as a playlist needs it.
type fragSum struct {
	off, size int64
	start     time.Duration // media time in the file
	dur       time.Duration
	key       bool // starts with a video keyframe (or has no video)
}

// scanned is a segment file's header and fragment list, kept between
// playlist reloads: a growing file is read on from where the last scan
// stopped.
type scanned struct {
	fi    *fileInfo // frags dropped once summarized
	frags []fragSum
	size  int64
}

// scanCache holds the scans of the files rewinding viewers asked for.
type scanCache struct {
	mu sync.Mutex // mu guards m
	m  map[string]*scanned
}

// maxCachedScans bounds the cache (a path's rewind window is a few files).
const maxCachedScans = 512

// summarize scans name (again from where it stopped if it grew).
func (r *Recorder) summarize(name string) (*scanned, error) {
	f, err := r.root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	c := &r.scans
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*scanned{}
	}
	sc := c.m[name]
	if sc != nil && sc.size == st.Size() {
		return sc, nil
	}
	if sc == nil || st.Size() < sc.size {
		fi, err := scan(f, st.Size())
		if err != nil {
			return nil, err
		}
		sc = &scanned{fi: fi}
	} else {
		sc.fi.scanFrags(f, st.Size())
	}
	for _, fr := range sc.fi.frags {
		sc.frags = append(sc.frags, summarizeFrag(sc.fi, fr))
	}
	sc.fi.frags = nil // the sample tables are not needed any more
	sc.size = st.Size()
	if len(c.m) >= maxCachedScans {
		clear(c.m)
	}
	c.m[name] = sc
	return sc, nil
}

func summarizeFrag(fi *fileInfo, fr frag) fragSum {
	s := fragSum{off: fr.off, size: fr.size, key: true, start: -1}
	var video *trackInfo
	for i := range fi.tracks {
		if fi.tracks[i].video {
			video = &fi.tracks[i]
			break
		}
	}
	for _, ft := range fr.tracks {
		ti := fi.track(ft.id)
		if ti == nil || (video != nil && ti != video) || len(ft.samples) == 0 {
			continue
		}
		var d uint64
		for _, sm := range ft.samples {
			d += uint64(sm.dur)
		}
		st := tsToDur(ft.base, ti.timescale)
		if s.start < 0 || st < s.start {
			s.start = st
		}
		s.dur = max(s.dur, tsToDur(d, ti.timescale))
		if video != nil {
			s.key = ft.samples[0].sync
		}
	}
	s.start = max(s.start, 0)
	return s
}

// serveRewind renders the rewind playlist of path from the time from to
// now.
func (r *Recorder) serveRewind(w http.ResponseWriter, path string, q url.Values) {
	window := r.hub.PathConfig(path).RewindWindow
	if window <= 0 {
		httpError(w, http.StatusNotFound, "record: rewind is off for this path (paths.*.rewindWindow)")
		return
	}
	now := r.now()
	from := now.Add(-window)
	if s := q.Get("from"); s != "" {
		t, err := parseTime(s)
		if err != nil {
			httpError(w, http.StatusBadRequest, "from: %v", err)
			return
		}
		// A page asks for now - window when the viewer starts rewinding and
		// keeps that start while it reloads; twice the window bounds it.
		if t.Before(now.Add(-2 * window)) {
			httpError(w, http.StatusBadRequest, "from: further back than paths.*.rewindWindow (%s) allows", window)
			return
		}
		from = t
	}
	segs, err := r.overlapping(path, from, now.Add(time.Hour), 0)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "record: index: %v", err)
		return
	}
	live, recording := r.live(path)
	var b strings.Builder
	var body strings.Builder
	target := 1.0
	key := q.Get("key")
	first := true
	for _, sg := range segs {
		sc, err := r.summarize(sg.File)
		if err != nil {
			continue
		}
		v := url.Values{"path": {path}, "start": {strconv.FormatInt(sg.Start.UnixNano(), 10)}}
		if key != "" {
			v.Set("key", key)
		}
		uri := SegmentPath + "?" + v.Encode()
		// Runs of fragments from a keyframe to the next: a player can
		// start each of them.
		type run struct {
			off, size int64
			start     time.Duration
			dur       time.Duration
		}
		var runs []run
		for _, fr := range sc.frags {
			if sg.Start.Add(fr.start + fr.dur).Before(from) {
				continue
			}
			if n := len(runs); n > 0 && !fr.key && runs[n-1].off+runs[n-1].size == fr.off {
				runs[n-1].size += fr.size
				runs[n-1].dur = fr.start + fr.dur - runs[n-1].start
				continue
			}
			if len(runs) == 0 && !fr.key {
				continue // the first run starts at a keyframe
			}
			runs = append(runs, run{off: fr.off, size: fr.size, start: fr.start, dur: fr.dur})
		}
		if len(runs) == 0 {
			continue
		}
		if !first {
			body.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		first = false
		fmt.Fprintf(&body, "#EXT-X-MAP:URI=\"%s\",BYTERANGE=\"%d@0\"\n", uri, sc.fi.initEnd)
		fmt.Fprintf(&body, "#EXT-X-PROGRAM-DATE-TIME:%s\n", sg.Start.Add(runs[0].start).Format("2006-01-02T15:04:05.000Z07:00"))
		for _, rn := range runs {
			d := rn.dur.Seconds()
			target = max(target, math.Ceil(d))
			fmt.Fprintf(&body, "#EXTINF:%.5f,\n#EXT-X-BYTERANGE:%d@%d\n%s\n", d, rn.size, rn.off, uri)
		}
	}
	if first {
		httpError(w, http.StatusNotFound, "%v", ErrNoRecording)
		return
	}
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	fmt.Fprintf(&b, "#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:0\n", int(target))
	b.WriteString(body.String())
	if !recording || live.File == "" {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte(b.String())) //nolint:errcheck // the client went away
}

// serveSegment serves one recorded file of path with ranges.
func (r *Recorder) serveSegment(w http.ResponseWriter, req *http.Request, path string, q url.Values) {
	ns, err := strconv.ParseInt(q.Get("start"), 10, 64)
	if err != nil || ns < 0 {
		httpError(w, http.StatusBadRequest, "start: give the segment's start in Unix nanoseconds, as the playlist does")
		return
	}
	start := time.Unix(0, ns)
	sg, ok := r.idx.Get(path, start)
	if !ok {
		httpError(w, http.StatusNotFound, "%v", ErrNoRecording)
		return
	}
	// The file name comes from the index, never from the request; the
	// root keeps it inside the directory anyway.
	f, err := r.root.Open(sg.File)
	if errors.Is(err, os.ErrNotExist) {
		httpError(w, http.StatusNotFound, "%v", ErrNoRecording)
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "record: %v", err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "video/mp4")
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, req, "", time.Time{}, f)
}
