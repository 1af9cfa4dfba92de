package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/server"
)

// The playback API's paths.
const (
	ListPath = "/api/v1/recordings"
	GetPath  = "/api/v1/recordings/get"
)

// maxGetDuration bounds one /get.
const maxGetDuration = 24 * time.Hour

// maxListSegments bounds one listing (30 days of 1-minute segments fit).
const maxListSegments = 100000

// IsRecordings reports whether an URL path is the playback API's.
func IsRecordings(p string) bool {
	return p == ListPath || p == GetPath || p == RewindPath || p == SegmentPath
}

// parseTime reads a time parameter: RFC 3339 (2026-12-04T10:00:00Z, with
// fractions) or Unix seconds (1764842400.5).
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("missing")
	}
	if len(s) > 64 {
		return time.Time{}, errors.New("too long")
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.Year() < 1970 || t.Year() > 2200 {
			return time.Time{}, errors.New("out of range (1970 to 2200)")
		}
		return t.UTC(), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 7e9 {
		return time.Time{}, errors.New("give RFC 3339 (2026-12-04T10:00:00Z) or Unix seconds")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

// parseDuration reads a duration parameter: Go syntax (90s, 1h30m) or
// seconds (90.5), more than 0 and at most maxGetDuration.
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("missing")
	}
	if len(s) > 32 {
		return 0, errors.New("too long")
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, errors.New("give a duration (90s, 1h30m) or seconds (90.5)")
		}
		if f <= 0 || f > maxGetDuration.Seconds() {
			return 0, fmt.Errorf("must be more than 0 and at most %s", maxGetDuration)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d <= 0 || d > maxGetDuration {
		return 0, fmt.Errorf("must be more than 0 and at most %s", maxGetDuration)
	}
	return d, nil
}

// parsePath reads the path parameter: a valid stream path.
func parsePath(s string) (string, error) {
	s = strings.Trim(s, "/")
	if err := server.ValidatePath(s); err != nil {
		return "", err
	}
	return s, nil
}

// Span is a stretch of recording without a hole, as the list gives it.
type Span struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Duration float64   `json:"duration"`
	// URL downloads the span as one MP4.
	URL string `json:"url"`
}

// ListResponse is GET /api/v1/recordings.
type ListResponse struct {
	Path     string        `json:"path"`
	Spans    []Span        `json:"spans"`
	Segments []SegmentJSON `json:"segments"`
	// Truncated is set when the range held more than maxListSegments
	// segments: ask again from the last one's end.
	Truncated bool `json:"truncated,omitempty"`
}

// SegmentJSON is one segment in a listing.
type SegmentJSON struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Size     int64     `json:"size"`
	Codecs   string    `json:"codecs,omitempty"`
	Complete bool      `json:"complete"`
}

// spanGap is the largest hole between two segments that still joins
// them into one span (timestamps rounded to milliseconds).
const spanGap = 100 * time.Millisecond

// ServeHTTP serves the playback API: the list of a path's recordings in
// a time range and one file for a time range. Each request passes the
// same read check as live viewing (Hub.Authorize, ?key=).
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "record: use GET", http.StatusMethodNotAllowed)
		return
	}
	q := req.URL.Query()
	path, err := parsePath(q.Get("path"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "path: %v", err)
		return
	}
	if err := r.hub.Authorize(req.Context(), path, server.ReadRequest{Key: q.Get("key"),
		Peer: server.Peer{Protocol: "recordings", Remote: req.RemoteAddr, Query: req.URL.RawQuery}}); err != nil {
		r.hub.LogRefusal(r.log, req.RemoteAddr, "recordings", "record: refused", "path", path, "remote", req.RemoteAddr, "error", err)
		status := http.StatusForbidden
		if errors.Is(err, server.ErrUnauthorized) {
			status = http.StatusUnauthorized
		}
		httpError(w, status, "%v", err)
		return
	}
	if r.idx == nil {
		httpError(w, http.StatusServiceUnavailable, "record: not started")
		return
	}
	if req.URL.Path == GetPath || req.URL.Path == SegmentPath {
		w = r.longResponse(w)
	}
	switch req.URL.Path {
	case ListPath:
		r.serveList(w, req, path, q)
	case GetPath:
		r.serveGet(w, req, path, q)
	case RewindPath:
		r.serveRewind(w, path, q)
	case SegmentPath:
		r.serveSegment(w, req, path, q)
	default:
		http.NotFound(w, req)
	}
}

func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	http.Error(w, guard.Truncate(fmt.Sprintf(format, args...)), status)
}

func (r *Recorder) serveList(w http.ResponseWriter, req *http.Request, path string, q url.Values) {
	from, to := time.Unix(0, 0).UTC(), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	var err error
	if s := q.Get("start"); s != "" {
		if from, err = parseTime(s); err != nil {
			httpError(w, http.StatusBadRequest, "start: %v", err)
			return
		}
	}
	if s := q.Get("end"); s != "" {
		if to, err = parseTime(s); err != nil {
			httpError(w, http.StatusBadRequest, "end: %v", err)
			return
		}
	}
	if !to.After(from) {
		httpError(w, http.StatusBadRequest, "end must be after start")
		return
	}
	segs, err := r.overlapping(path, from, to, maxListSegments)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "record: index: %v", err)
		return
	}
	resp := ListResponse{Path: path, Spans: []Span{}, Segments: make([]SegmentJSON, 0, len(segs)), Truncated: len(segs) >= maxListSegments}
	for _, s := range segs {
		resp.Segments = append(resp.Segments, SegmentJSON{Start: s.Start, End: s.End, Size: s.Size, Codecs: s.Codecs, Complete: s.Complete})
		if n := len(resp.Spans); n > 0 && s.Start.Sub(resp.Spans[n-1].End) <= spanGap && s.Start.Sub(resp.Spans[n-1].End) >= -spanGap {
			resp.Spans[n-1].End = s.End
			continue
		}
		resp.Spans = append(resp.Spans, Span{Start: s.Start, End: s.End})
	}
	key := q.Get("key")
	for i := range resp.Spans {
		sp := &resp.Spans[i]
		sp.Duration = sp.End.Sub(sp.Start).Seconds()
		v := url.Values{"path": {path}, "start": {sp.Start.Format(time.RFC3339Nano)},
			"duration": {strconv.FormatFloat(sp.Duration, 'f', 3, 64)}, "format": {"mp4"}}
		if key != "" {
			v.Set("key", key)
		}
		sp.URL = GetPath + "?" + v.Encode()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(resp) //nolint:errcheck // the client went away
}

func (r *Recorder) serveGet(w http.ResponseWriter, req *http.Request, path string, q url.Values) {
	start, err := parseTime(q.Get("start"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "start: %v", err)
		return
	}
	dur, err := parseDuration(q.Get("duration"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "duration: %v", err)
		return
	}
	format := q.Get("format")
	switch format {
	case "":
		format = "mp4"
	case "mp4", "fmp4":
	default:
		httpError(w, http.StatusBadRequest, "format: must be mp4 or fmp4 (got %q)", guard.Truncate(format))
		return
	}
	// The file is built once into a temporary file, so that range
	// requests, HEAD and the length are http.ServeContent's.
	tmp, err := os.CreateTemp("", "streamhub-get-*.mp4")
	if err != nil {
		httpError(w, http.StatusInternalServerError, "record: %v", err)
		return
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := r.export(tmp, path, start, dur, format); err != nil {
		switch {
		case errors.Is(err, ErrNoRecording):
			httpError(w, http.StatusNotFound, "%v", err)
		case errors.Is(err, ErrTooLarge):
			httpError(w, http.StatusRequestEntityTooLarge, "%v", err)
		default:
			r.log.Warn("record: get", "path", path, "err", err)
			httpError(w, http.StatusInternalServerError, "record: %v", err)
		}
		return
	}
	name := strings.ReplaceAll(path, "/", "_") + "_" + start.Format("2006-01-02_15-04-05") + ".mp4"
	w.Header().Set("Content-Type", "video/mp4")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, req, name, start, tmp)
}

// longResponse lifts the server's whole-response deadlines (http.server's
// ReadTimeout and WriteTimeout: seconds, made for live requests) for a
// download that may take minutes to build and send, and bounds each write
// by WriteTimeout instead.
func (r *Recorder) longResponse(w http.ResponseWriter) http.ResponseWriter {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})  //nolint:errcheck // not every connection has one
	rc.SetWriteDeadline(time.Time{}) //nolint:errcheck // idem
	d := r.conf.WriteTimeout
	if d <= 0 {
		d = 10 * time.Second
	}
	return &deadlineWriter{ResponseWriter: w, rc: rc, d: d}
}

// deadlineWriter sets a write deadline before each write.
type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *deadlineWriter) Write(b []byte) (int, error) {
	w.rc.SetWriteDeadline(time.Now().Add(w.d)) //nolint:errcheck // not every connection has one
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
