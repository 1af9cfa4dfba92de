package hls

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// live is a hub with one synthetic publisher on live/x and the HLS handler
// on a real listener. The test publishes units itself: nothing happens
// unless it does.
type live struct {
	t     testing.TB
	hub   *server.Hub
	pub   *server.Publisher
	src   *synth
	h     *Handler
	ts    *httptest.Server
	base  string // URL of the stream's directory, ending in /
	conf  Config
	last  *media.Unit // last video unit written
	first response    // the answer to the first request, made by warmUp
}

func serverConfig() Config {
	c := testConfig()
	c.BlockTimeout = 20 * time.Second // longer than any wait of these tests
	return c
}

// startLive publishes initial of the stream (as fast as it goes), starts
// the handler and warms it up (warmUp).
func startLive(t testing.TB, conf Config, opts synthOpts, initial time.Duration) *live {
	t.Helper()
	return startLiveHub(t, conf, opts, initial, nil)
}

// startLiveHub is startLive with a change to the hub's config (nil: none).
func startLiveHub(t testing.TB, conf Config, opts synthOpts, initial time.Duration, hubConf func(*server.HubConfig)) *live {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hc := server.HubConfig{Logger: log, PathConfig: func(string) server.PathConfig {
		c := server.DefaultPathConfig()
		c.GracePeriod = 0
		return c
	}}
	if hubConf != nil {
		hubConf(&hc)
	}
	hub := server.NewHub(hc)
	src := newSynth(opts)
	pub, err := hub.PublishTrusted("live/x", src.tracks(), server.PublishOptions{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	h := New(conf, hub, log)
	ts := httptest.NewServer(h)
	l := &live{t: t, hub: hub, pub: pub, src: src, h: h, ts: ts, base: ts.URL + "/live/x/", conf: conf}
	t.Cleanup(func() {
		pub.Close()
		hub.Close()
		h.Close()
		ts.Close()
	})
	l.publish(initial)
	l.warmUp()
	return l
}

// warmUp makes the first request, which starts the muxer, and writes the
// stream about three times as fast as real time until it is answered (a
// server may hold it until it has a complete segment). Then the muxer has
// taken everything written.
func (l *live) warmUp() {
	l.t.Helper()
	ch := l.async("stream.m3u8")
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case l.first = <-ch:
			if l.first.err != nil || l.first.code != http.StatusOK {
				l.t.Fatalf("first GET stream.m3u8: %d %v %s", l.first.code, l.first.err, l.first.body)
			}
			l.sync()
			return
		case <-time.After(10 * time.Millisecond):
			if time.Now().After(deadline) {
				l.t.Fatal("first GET stream.m3u8: no answer within 10 s")
			}
			l.nextFrame()
		}
	}
}

// publish writes d more of the stream.
func (l *live) publish(d time.Duration) {
	end := l.src.peek() + d
	for l.src.peek() < end {
		l.write(l.src.next())
	}
}

func (l *live) write(u *media.Unit) {
	if u.Track.IsVideo() {
		l.last = u
	}
	l.pub.Write(u)
}

// publishSync is publish in steps the muxer keeps up with (the hub skips
// a reader that falls more than readerQueue units behind).
func (l *live) publishSync(d time.Duration) {
	for end := l.src.peek() + d; l.src.peek() < end; {
		l.publish(min(300*time.Millisecond, end-l.src.peek()))
		l.sync()
	}
}

// nextFrame writes the units up to and including the next video unit (of
// an audio-only stream, the next unit).
func (l *live) nextFrame() {
	if l.src.video == nil {
		l.write(l.src.next())
		return
	}
	for {
		u := l.src.next()
		l.write(u)
		if u.Track.IsVideo() {
			return
		}
	}
}

// muxer returns the running muxer of live/x.
func (l *live) muxer() *muxer {
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	m := l.h.muxers["live/x"]
	if m == nil {
		l.t.Fatal("no muxer for live/x")
	}
	return m
}

// sync waits until the muxer has taken every video unit written (for an
// audio-only stream, it waits a little).
func (l *live) sync() {
	l.t.Helper()
	if l.src.video == nil {
		time.Sleep(20 * time.Millisecond)
		return
	}
	m := l.muxer()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.mu.RLock()
		done := m.seg.video != nil && m.seg.video.pend != nil && m.seg.video.pend.DTS == l.last.DTS
		m.mu.RUnlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("the muxer did not take the video unit at %s within 5 s", l.last.DTS)
		}
		time.Sleep(time.Millisecond)
	}
}

// hasPart reports whether the muxer has part idx of segment msn.
func (l *live) hasPart(msn uint64, idx int) bool {
	m := l.muxer()
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, s := range m.seg.segs {
		if s.msn == msn {
			return idx < len(s.parts)
		}
	}
	return false
}

// nextMSN is the media sequence number of the segment after the growing one.
func (l *live) nextMSN() uint64 {
	m := l.muxer()
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.seg.nextMSN
}

type response struct {
	code   int
	header http.Header
	body   string
	err    error
	at     time.Time
}

func do(ctx context.Context, method, url string) response {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return response{err: err}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{err: err, at: time.Now()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, header: resp.Header, body: string(b), err: err, at: time.Now()}
}

func (l *live) get(name string) response {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := do(ctx, http.MethodGet, l.base+name)
	if r.err != nil {
		l.t.Fatalf("GET %s: %v", name, r.err)
	}
	return r
}

// async sends a GET in the background.
func (l *live) async(name string) <-chan response {
	ch := make(chan response, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	l.t.Cleanup(cancel)
	go func() { ch <- do(ctx, http.MethodGet, l.base+name) }()
	return ch
}

// playlist GETs a media playlist and parses and checks it.
func (l *live) playlist(query string) (*mediaPL, response) {
	l.t.Helper()
	r := l.get("stream.m3u8" + query)
	if r.code != http.StatusOK {
		l.t.Fatalf("GET stream.m3u8%s: %d %s", query, r.code, r.body)
	}
	pl := parseMedia(l.t, r.body)
	checkMedia(l.t, pl, l.conf)
	return pl, r
}

var hintRE = regexp.MustCompile(`part(\d+)\.(\d+)\.mp4$`)

func hintOf(t *testing.T, pl *mediaPL) (uint64, int) {
	t.Helper()
	m := hintRE.FindStringSubmatch(pl.hint)
	if m == nil {
		t.Fatalf("preload hint %q", pl.hint)
	}
	msn, _ := strconv.ParseUint(m[1], 10, 64)
	idx, _ := strconv.Atoi(m[2])
	return msn, idx
}

func noResponse(t *testing.T, ch <-chan response, d time.Duration, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s answered after less than %s (status %d):\n%s", what, d, r.code, r.body)
	case <-time.After(d):
	}
}

func wantResponse(t *testing.T, ch <-chan response, d time.Duration, what string) response {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		return r
	case <-time.After(d):
		t.Fatalf("%s: no answer within %s", what, d)
	}
	return response{}
}

// TestBlockingPlaylistReload: _HLS_msn/_HLS_part of the next part blocks
// until that part exists, and not a frame longer; the answer has it and a
// shared cache may keep it for a few part targets (cache.go).
func TestBlockingPlaylistReload(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 2500*time.Millisecond)
	pl, r := l.playlist("")
	if cc := r.header.Get("Cache-Control"); cc != ccPlain {
		t.Errorf("playlist Cache-Control %q, want %q (shorter than a part)", cc, ccPlain)
	}
	// Ask for the next three parts in turn, one crossing into a new segment.
	for range 8 {
		msn, idx := hintOf(t, pl)
		q := fmt.Sprintf("?_HLS_msn=%d&_HLS_part=%d", msn, idx)
		ch := l.async("stream.m3u8" + q)
		noResponse(t, ch, 200*time.Millisecond, "blocking reload "+q+" before any new unit")
		var got response
		for frames := 0; ; frames++ {
			if frames > 30 {
				t.Fatalf("part %d.%d does not exist after 30 more frames", msn, idx)
			}
			l.nextFrame()
			l.sync()
			if !l.hasPart(msn, idx) {
				select {
				case r := <-ch:
					t.Fatalf("blocking reload %s answered before part %d.%d existed:\n%s", q, msn, idx, r.body)
				case <-time.After(20 * time.Millisecond):
				}
				continue
			}
			got = wantResponse(t, ch, 2*time.Second, "blocking reload "+q+" once the part exists")
			break
		}
		if got.code != http.StatusOK {
			t.Fatalf("%s: %d %s", q, got.code, got.body)
		}
		if cc := got.header.Get("Cache-Control"); cc != "public, max-age=1" {
			t.Errorf("%s: Cache-Control %q, want public, max-age=1 (three part targets, rounded up)", q, cc)
		}
		pl = parseMedia(t, got.body)
		checkMedia(t, pl, l.conf)
		if !strings.Contains(got.body, fmt.Sprintf("part%d.%d.mp4", msn, idx)) {
			t.Fatalf("%s: the answer does not list part %d.%d:\n%s", q, msn, idx, got.body)
		}
	}
}

// TestFirstPlaylistHasSegment: the first media playlist a new muxer
// serves lists a complete segment: one with parts only is useless to a
// client that does not play parts (ffmpeg fails with "Empty segment",
// hls.js reports levelEmptyError and retries). And its TARGETDURATION is
// the one of later playlists (§6.2.1), not a guess made before the first
// segment is complete. Here the GOP is 2 s and the muxer starts in the
// middle of one.
func TestFirstPlaylistHasSegment(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC, gop: 2 * time.Second}, 3*time.Second)
	for _, name := range []string{"stream.m3u8", "index.m3u8"} {
		t.Run(name, func(t *testing.T) {
			// A handler of its own: a new muxer.
			h := New(l.conf, l.hub, slog.New(slog.NewTextHandler(io.Discard, nil)))
			ts := httptest.NewServer(h)
			defer ts.Close()
			defer h.Close()
			base := ts.URL + "/live/x/"
			ch := make(chan response, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			go func() { ch <- do(ctx, http.MethodGet, base+name) }()
			var r response
			// The stream goes on in real time until the request is answered.
			for i := 0; ; i++ {
				select {
				case r = <-ch:
				case <-time.After(33 * time.Millisecond):
					if i > 150 {
						t.Fatalf("GET %s: no answer after 5 s", name)
					}
					l.nextFrame()
					continue
				}
				break
			}
			if r.err != nil || r.code != http.StatusOK {
				t.Fatalf("GET %s: %d %v %s", name, r.code, r.err, r.body)
			}
			if name == "index.m3u8" {
				r = do(ctx, http.MethodGet, base+"stream.m3u8")
			}
			pl := parseMedia(t, r.body)
			if len(pl.complete()) == 0 {
				t.Errorf("the first media playlist of a new muxer (after %s) lists no complete segment:\n%s", name, r.body)
			}
			// §6.2.1: EXT-X-TARGETDURATION never changes. Two more GOPs.
			for range 120 {
				l.nextFrame()
			}
			l.sync()
			time.Sleep(50 * time.Millisecond)
			later := parseMedia(t, do(ctx, http.MethodGet, base+"stream.m3u8").body)
			if later.target != pl.target {
				t.Errorf("EXT-X-TARGETDURATION %d in the first media playlist, %d two GOPs later (§6.2.1: it MUST NOT change)\nfirst:\n%s\nlater:\n%s",
					pl.target, later.target, pl.raw, later.raw)
			}
		})
	}
}

// TestBlockingReloadSegment: _HLS_msn alone waits for that segment to be
// complete; a segment already there (or gone from the window) answers at
// once.
func TestBlockingReloadSegment(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 2500*time.Millisecond)
	pl, _ := l.playlist("")
	next := l.nextMSN() // the growing segment is next-1
	for _, msn := range []uint64{0, pl.mediaSeq, next - 2} {
		if next < 2 {
			break
		}
		ch := l.async(fmt.Sprintf("stream.m3u8?_HLS_msn=%d", msn))
		r := wantResponse(t, ch, time.Second, fmt.Sprintf("_HLS_msn=%d (already there)", msn))
		if r.code != http.StatusOK {
			t.Errorf("_HLS_msn=%d: %d %s", msn, r.code, r.body)
		}
	}
	ch := l.async(fmt.Sprintf("stream.m3u8?_HLS_msn=%d", next-1))
	noResponse(t, ch, 200*time.Millisecond, "_HLS_msn of the growing segment")
	complete := func() bool {
		m := l.muxer()
		m.mu.RLock()
		defer m.mu.RUnlock()
		for _, s := range m.seg.segs {
			if s.msn == next-1 {
				return s.complete
			}
		}
		return false
	}
	for frames := 0; !complete(); frames++ {
		if frames > 60 {
			t.Fatalf("segment %d not complete after 2 s more of stream", next-1)
		}
		select {
		case r := <-ch:
			t.Fatalf("_HLS_msn=%d answered before that segment was complete:\n%s", next-1, r.body)
		default:
		}
		l.nextFrame()
		l.sync()
	}
	r := wantResponse(t, ch, 2*time.Second, fmt.Sprintf("_HLS_msn=%d once complete", next-1))
	pl = parseMedia(t, r.body)
	checkMedia(t, pl, l.conf)
	if last := pl.complete(); len(last) == 0 || last[len(last)-1].msn != next-1 {
		t.Fatalf("_HLS_msn=%d answered without that segment complete:\n%s", next-1, r.body)
	}
}

// TestBlockingReloadPastLastPart: a Part Index past the last part of a
// complete segment M means part 0 of M+1 (RFC 8216bis §6.2.5.2): the server
// waits for it.
func TestBlockingReloadPastLastPart(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264}, 2500*time.Millisecond)
	// Go on to right after a segment cut: the new segment has no part yet.
	for {
		l.nextFrame()
		l.sync()
		m := l.muxer()
		m.mu.RLock()
		n := len(m.seg.cur().parts)
		m.mu.RUnlock()
		if n == 0 {
			break
		}
	}
	pl, _ := l.playlist("")
	c := pl.complete()
	last := c[len(c)-1]
	q := fmt.Sprintf("?_HLS_msn=%d&_HLS_part=%d", last.msn, len(last.parts))
	ch := l.async("stream.m3u8" + q)
	select {
	case r := <-ch:
		got := parseMedia(t, r.body)
		if g := got.growing(); g == nil || g.msn != last.msn+1 || len(g.parts) == 0 {
			t.Fatalf("%s (segment %d has %d parts, so this is part 0 of segment %d) answered at once without part %d.0 (RFC 8216bis §6.2.5.2: the server MUST treat it as a request for part 0 of the next segment):\n%s",
				q, last.msn, len(last.parts), last.msn+1, last.msn+1, r.body)
		}
	case <-time.After(300 * time.Millisecond):
	}
	for !l.hasPart(last.msn+1, 0) {
		l.nextFrame()
		l.sync()
	}
	r := wantResponse(t, ch, 2*time.Second, q+" once part 0 of the next segment exists")
	if g := parseMedia(t, r.body).growing(); g == nil || g.msn != last.msn+1 || len(g.parts) == 0 {
		t.Errorf("%s: the answer has no part %d.0:\n%s", q, last.msn+1, r.body)
	}
}

// TestBadDirectives: more than two segments ahead, or an _HLS_part
// without _HLS_msn, or garbage, is 400 at once.
func TestBadDirectives(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 2500*time.Millisecond)
	next := l.nextMSN()
	for _, q := range []string{
		fmt.Sprintf("_HLS_msn=%d", next+2),
		fmt.Sprintf("_HLS_msn=%d&_HLS_part=0", next+5),
		"_HLS_msn=x",
		"_HLS_msn=1&_HLS_part=-1",
		"_HLS_part=1", // §6.2.5.2: MUST be Bad Request
	} {
		start := time.Now()
		r := l.get("stream.m3u8?" + q)
		if r.code != http.StatusBadRequest {
			t.Errorf("?%s: status %d, want 400 (growing segment %d):\n%s", q, r.code, next-1, r.body)
		} else if took := time.Since(start); took > time.Second {
			t.Errorf("?%s: 400 after %s, want at once", q, took)
		}
	}
}

// TestPreloadHintBlocks: a GET of the hinted part waits until the part
// exists and gets exactly its bytes; a part that can never exist is 404.
func TestPreloadHintBlocks(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 2500*time.Millisecond)
	pl, _ := l.playlist("")
	for range 6 {
		msn, idx := hintOf(t, pl)
		ch := l.async(pl.hint)
		noResponse(t, ch, 200*time.Millisecond, "GET of the hinted part "+pl.hint)
		for !l.hasPart(msn, idx) {
			select {
			case r := <-ch:
				t.Fatalf("GET %s answered (%d) before the part existed", pl.hint, r.code)
			default:
			}
			l.nextFrame()
			l.sync()
		}
		r := wantResponse(t, ch, 2*time.Second, "GET "+pl.hint)
		if r.code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", pl.hint, r.code, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "video/mp4" {
			t.Errorf("GET %s: Content-Type %q", pl.hint, ct)
		}
		m := l.muxer()
		m.mu.RLock()
		var want []byte
		for _, s := range m.seg.segs {
			if s.msn == msn {
				want = s.parts[idx].data
			}
		}
		m.mu.RUnlock()
		if r.body != string(want) {
			t.Fatalf("GET %s: %d bytes, not the part's %d", pl.hint, len(r.body), len(want))
		}
		parsePart(t, pl.hint, []byte(r.body))
		pl, _ = l.playlist("")
	}
	// Parts that will never exist: far ahead, or past the end of a complete
	// segment, or gone from the window.
	c := pl.complete()
	lastSeg := c[len(c)-1]
	for _, name := range []string{
		fmt.Sprintf("%spart%d.0.mp4", l.muxer().prefix, l.nextMSN()+3),
		fmt.Sprintf("%spart%d.%d.mp4", l.muxer().prefix, lastSeg.msn, len(lastSeg.parts)),
		fmt.Sprintf("%sseg%d.mp4", l.muxer().prefix, l.nextMSN()-1),
		fmt.Sprintf("%sinit%d.mp4", l.muxer().prefix, 99),
	} {
		start := time.Now()
		r := l.get(name)
		if r.code != http.StatusNotFound || time.Since(start) > time.Second {
			t.Errorf("GET %s: %d after %s, want 404 at once", name, r.code, time.Since(start).Round(time.Millisecond))
		}
	}
}

// TestHTTPHeaders: status codes, CORS, OPTIONS, HEAD, Content-Type and
// Cache-Control of every kind of resource, and 404s with a reason.
func TestHTTPHeaders(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 4500*time.Millisecond)
	l.publishSync(2 * time.Second)
	pl, _ := l.playlist("")
	c := pl.complete()
	if len(c) == 0 {
		t.Fatalf("no complete segment:\n%s", pl.raw)
	}
	seg := c[len(c)-1]
	files := map[string]string{ // name → kind
		"index.m3u8":             "playlist",
		"stream.m3u8":            "playlist",
		seg.mapURI:               "media",
		seg.uri:                  "media",
		c[len(c)-1].parts[0].uri: "media",
	}
	for name, kind := range files {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			req, _ := http.NewRequestWithContext(ctx, method, l.base+name, nil)
			req.Header.Set("Origin", "http://example.com")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				cancel()
				t.Fatalf("%s %s: %v", method, name, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s %s: %s", method, name, resp.Status)
				continue
			}
			if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "*" {
				t.Errorf("%s %s: Access-Control-Allow-Origin %q, want *", method, name, v)
			}
			cl, _ := strconv.Atoi(resp.Header.Get("Content-Length"))
			if cl <= 0 {
				t.Errorf("%s %s: Content-Length %q", method, name, resp.Header.Get("Content-Length"))
			}
			if method == http.MethodHead && len(body) != 0 {
				t.Errorf("HEAD %s: %d body bytes", name, len(body))
			}
			if method == http.MethodGet && len(body) != cl {
				t.Errorf("GET %s: %d bytes, Content-Length %d", name, len(body), cl)
			}
			ct, cc := resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control")
			switch kind {
			case "playlist":
				if ct != "application/vnd.apple.mpegurl" {
					t.Errorf("%s %s: Content-Type %q", method, name, ct)
				}
				if age := maxAge(cc); (age < 0 || age > 2) && cc != ccPlain {
					t.Errorf("%s %s: Cache-Control %q, want a max-age of at most 2 s or no-cache", method, name, cc)
				}
			case "media":
				if ct != "video/mp4" {
					t.Errorf("%s %s: Content-Type %q", method, name, ct)
				}
				if age := maxAge(cc); age < 600 {
					t.Errorf("%s %s: Cache-Control %q, want a long max-age (the names are never reused)", method, name, cc)
				}
			}
		}
	}

	// The preflight a player's page may send.
	req, _ := http.NewRequest(http.MethodOptions, l.base+"stream.m3u8", nil)
	req.Header.Set("Origin", "http://example.com")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "range")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		t.Errorf("OPTIONS: %s, want 204", resp.Status)
	}
	for k, want := range map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET", "Access-Control-Allow-Headers": "Range"} {
		if v := resp.Header.Get(k); !strings.Contains(strings.ToLower(v), strings.ToLower(want)) && v != "*" {
			t.Errorf("OPTIONS: %s %q, want it to allow %s", k, v, want)
		}
	}

	resp, err = http.Post(l.base+"stream.m3u8", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(resp.Header.Get("Allow"), "GET") {
		t.Errorf("POST: %s, Allow %q; want 405 with GET allowed", resp.Status, resp.Header.Get("Allow"))
	}

	for _, tc := range []struct {
		url  string
		code int
		say  string
	}{
		{l.ts.URL + "/live/nope/index.m3u8", http.StatusNotFound, "not found"},
		{l.ts.URL + "/live/nope/stream.m3u8", http.StatusNotFound, "not found"},
		{l.ts.URL + "/live/nope/abc_seg1.mp4", http.StatusNotFound, "not found"},
		{l.base + "00000000_seg1.mp4", http.StatusNotFound, "reload"},
		{l.base + "other.m3u8", http.StatusNotFound, "no such"},
		{l.ts.URL + "/live/te$t/index.m3u8", http.StatusBadRequest, "invalid path"},
	} {
		r := do(context.Background(), http.MethodGet, tc.url)
		if r.err != nil {
			t.Fatal(r.err)
		}
		reason := strings.TrimSuffix(r.body, "\n")
		if r.code != tc.code || !strings.Contains(reason, tc.say) || strings.Contains(reason, "\n") {
			t.Errorf("GET %s: %d %q, want %d and one line saying %q", tc.url, r.code, r.body, tc.code, tc.say)
		}
		if v := r.header.Get("Access-Control-Allow-Origin"); v != "*" {
			t.Errorf("GET %s: no CORS header on the error", tc.url)
		}
	}
}

// maxAge returns Cache-Control's max-age, or -1.
func maxAge(cc string) int {
	for _, d := range strings.Split(cc, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(d), "max-age="); ok {
			n, err := strconv.Atoi(v)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// TestMultivariant checks index.m3u8: one variant pointing at stream.m3u8
// with the codecs, resolution and a bandwidth.
func TestMultivariant(t *testing.T) {
	for _, tc := range []struct {
		opts   synthOpts
		codecs string
		res    bool
	}{
		{synthOpts{video: media.CodecH264, audio: media.CodecAAC}, "avc1.64000c,mp4a.40.2", true},
		{synthOpts{video: media.CodecH265}, "hvc1.2.4.L123.B0", true},
		{synthOpts{audio: media.CodecAAC}, "mp4a.40.2", false},
		{synthOpts{video: media.CodecH264, audio: media.CodecOpus}, "avc1.64000c,opus", true},
	} {
		t.Run(tc.codecs, func(t *testing.T) {
			l := startLive(t, serverConfig(), tc.opts, 2500*time.Millisecond)
			l.publish(1500 * time.Millisecond)
			r := l.get("index.m3u8")
			lines := strings.Split(strings.TrimSpace(r.body), "\n")
			if len(lines) != 5 || lines[0] != "#EXTM3U" || lines[4] != "stream.m3u8" || !strings.HasPrefix(lines[3], "#EXT-X-STREAM-INF:") {
				t.Fatalf("index.m3u8:\n%s", r.body)
			}
			a := attrs(strings.TrimPrefix(lines[3], "#EXT-X-STREAM-INF:"))
			if a["CODECS"] != tc.codecs {
				t.Errorf("CODECS %q, want %q", a["CODECS"], tc.codecs)
			}
			if bw, _ := strconv.Atoi(a["BANDWIDTH"]); bw < 1000 {
				t.Errorf("BANDWIDTH %q", a["BANDWIDTH"])
			}
			if tc.res && (a["RESOLUTION"] != "320x240" || a["FRAME-RATE"] != "30.000") {
				t.Errorf("RESOLUTION %q FRAME-RATE %q, want 320x240 and 30.000", a["RESOLUTION"], a["FRAME-RATE"])
			}
			// The media playlist it names is there.
			if r := l.get("stream.m3u8"); r.code != http.StatusOK {
				t.Errorf("stream.m3u8: %d %s", r.code, r.body)
			}
		})
	}
}

// TestDeltaUpdateHTTP: _HLS_skip=YES gives a delta update once the
// playlist is longer than CAN-SKIP-UNTIL.
func TestDeltaUpdateHTTP(t *testing.T) {
	conf := serverConfig()
	conf.Window = 12
	l := startLive(t, conf, synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 1500*time.Millisecond)
	l.publishSync(14 * time.Second)
	full, _ := l.playlist("")
	delta, _ := l.playlist("?_HLS_skip=YES")
	if delta.skipped == 0 || delta.skipped+len(delta.segs) != len(full.segs) {
		t.Fatalf("delta update skips %d of %d segments:\n%s", delta.skipped, len(full.segs), delta.raw)
	}
	if delta.segs[0].uri != full.segs[delta.skipped].uri {
		t.Errorf("first segment after EXT-X-SKIP %q, want %q", delta.segs[0].uri, full.segs[delta.skipped].uri)
	}
	// Blocking and delta together.
	msn, idx := hintOf(t, full)
	ch := l.async(fmt.Sprintf("stream.m3u8?_HLS_msn=%d&_HLS_part=%d&_HLS_skip=YES", msn, idx))
	l.publish(time.Second)
	r := wantResponse(t, ch, 2*time.Second, "blocking delta update")
	if !strings.Contains(r.body, "#EXT-X-SKIP:SKIPPED-SEGMENTS=") {
		t.Errorf("blocking delta update without EXT-X-SKIP:\n%s", r.body)
	}
}

// TestStreamEndWakesWaiters: when the stream ends, blocked requests answer
// at once (not after blockTimeout) and the path is 404 afterwards.
func TestStreamEndWakesWaiters(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 2500*time.Millisecond)
	pl, _ := l.playlist("")
	msn, idx := hintOf(t, pl)
	plCh := l.async(fmt.Sprintf("stream.m3u8?_HLS_msn=%d&_HLS_part=%d", msn+1, idx))
	partCh := l.async(pl.hint)
	noResponse(t, plCh, 200*time.Millisecond, "blocking reload")
	l.pub.Close() // gracePeriod 0: the stream ends
	wantResponse(t, plCh, 2*time.Second, "blocking reload after the stream ended")
	wantResponse(t, partCh, 2*time.Second, "hinted part after the stream ended")
	deadline := time.Now().Add(3 * time.Second)
	for {
		r := l.get("stream.m3u8")
		if r.code == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream.m3u8 after the stream ended: %d, want 404", r.code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestVanishingClientsLeaveNoGoroutines: 1000 blocked requests (playlist
// reloads and hinted parts) whose clients go away leave nothing behind.
func TestVanishingClientsLeaveNoGoroutines(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 2500*time.Millisecond)
	pl, _ := l.playlist("")
	tr := &http.Transport{DisableKeepAlives: true, MaxConnsPerHost: 0}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()

	msn, idx := hintOf(t, pl)
	next := l.nextMSN()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 1000
	var wg sync.WaitGroup
	var mu sync.Mutex
	early := 0
	for i := range n {
		url := l.base + fmt.Sprintf("stream.m3u8?_HLS_msn=%d", next+1)
		switch i % 3 {
		case 1:
			url = l.base + fmt.Sprintf("stream.m3u8?_HLS_msn=%d&_HLS_part=%d", msn, idx)
		case 2:
			url = l.base + pl.hint
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				mu.Lock()
				early++
				mu.Unlock()
			}
		}()
	}
	// Wait until the requests are in (each costs goroutines on both ends).
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() < before+3*n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d goroutines (%d before) with %d requests sent", runtime.NumGoroutine(), before, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	peak := runtime.NumGoroutine()
	cancel()
	wg.Wait()
	if early > 0 {
		t.Errorf("%d of the %d blocked requests were answered before their clients left", early, n)
	}
	tr.CloseIdleConnections()
	// The handler still answers, and the goroutines are gone.
	l.nextFrame()
	l.sync()
	if _, r := l.playlist(""); r.code != http.StatusOK {
		t.Fatalf("after the clients left: %d", r.code)
	}
	http.DefaultClient.CloseIdleConnections()
	deadline = time.Now().Add(10 * time.Second)
	for {
		after := runtime.NumGoroutine()
		if after <= before+10 {
			t.Logf("goroutines: %d before, %d with %d blocked requests, %d after", before, peak, n, after)
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: %d before, %d with %d blocked requests, %d 10 s after the clients left; stacks:\n%s",
				before, peak, n, after, tail(string(buf), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// TestFirstPlaylistAtOnce: a new muxer of a stream that is live starts
// from the GOP before the current one (the hub's backlog), so its first
// playlist is answered at once, without waiting for the current GOP to
// end, and lists a complete segment and the current GOP's parts up to the
// newest picture: a player starts at the live edge right away.
func TestFirstPlaylistAtOnce(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 3500*time.Millisecond)
	l.sync()
	h := New(l.conf, l.hub, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ts := httptest.NewServer(h)
	defer ts.Close()
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r := do(ctx, http.MethodGet, ts.URL+"/live/x/stream.m3u8") // nothing more is published
	if r.err != nil || r.code != http.StatusOK {
		t.Fatalf("GET stream.m3u8 of a new muxer, the stream not going on: %d %v %s", r.code, r.err, r.body)
	}
	pl := parseMedia(t, r.body)
	if len(pl.complete()) == 0 {
		t.Fatalf("no complete segment:\n%s", r.body)
	}
	var listed time.Duration
	for _, s := range pl.segs {
		if s.complete {
			listed += time.Duration(s.dur * float64(time.Second))
			continue
		}
		for _, p := range s.parts {
			listed += time.Duration(p.dur * float64(time.Second))
		}
	}
	// From the keyframe at 2 s to the newest picture but the one a part
	// waits on: about 1.4 s.
	if want := l.last.DTS - 2*time.Second - l.conf.PartTarget; listed < want {
		t.Errorf("the first playlist lists %s of media, want at least %s (from the keyframe before the current one to near the newest picture at %s):\n%s",
			listed, want, l.last.DTS, r.body)
	}
}

// TestWaitingRequestKeepsMuxer: a request that waits longer than
// idleTimeout (here a blocking reload for the next segment, while the
// stream stalls) keeps its muxer: it is answered by the same muxer, whose
// file names the player already has, not by a new one started after the
// first idled out under it.
func TestWaitingRequestKeepsMuxer(t *testing.T) {
	conf := serverConfig()
	conf.IdleTimeout = time.Second
	l := startLive(t, conf, synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 3*time.Second)
	m := l.muxer()
	ch := l.async(fmt.Sprintf("stream.m3u8?_HLS_msn=%d", l.nextMSN()))
	noResponse(t, ch, 2500*time.Millisecond, "a blocking reload for the next segment while nothing is published")
	l.publishSync(2 * time.Second)
	r := wantResponse(t, ch, 5*time.Second, "the blocking reload once the segment is complete")
	if r.code != http.StatusOK {
		t.Fatalf("blocking reload: %d %s", r.code, r.body)
	}
	if now := l.muxer(); now != m || !strings.Contains(r.body, m.prefix) {
		t.Errorf("the muxer stopped under a waiting request (idleTimeout %s) and another answered it", conf.IdleTimeout)
	}
}
