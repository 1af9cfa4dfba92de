package hls

import (
	"strings"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// ladderLive is live/x with a ladder of one rung, live/x/160p, that the
// hub waits for (on demand) but nobody publishes until the test does.
func ladderLive(t *testing.T, conf Config) *live {
	conf.Renditions = func(p string) []Rendition {
		if p == "live/x" {
			return []Rendition{{Name: "160p", Bandwidth: 300000, AverageBandwidth: 250000}}
		}
		return nil
	}
	return startLiveHub(t, conf, synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 2500*time.Millisecond,
		func(hc *server.HubConfig) { hc.OnDemand = func(p string) bool { return p == "live/x/160p" } })
}

// waitWatch waits until a multivariant request waits on the watch of the
// rung at path.
func (l *live) waitWatch(path string) {
	l.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		l.h.mu.Lock()
		w := l.h.rungs[path]
		l.h.mu.Unlock()
		if w != nil {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("no request waits for %s", path)
		}
	}
}

// noWatches checks that no rung watch is left.
func (l *live) noWatches() {
	l.t.Helper()
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	if len(l.h.rungs) != 0 {
		l.t.Errorf("%d rung watches left", len(l.h.rungs))
	}
}

// publishRung publishes the rung at path with tracks and writes a second
// of it.
func (l *live) publishRung(path string, tracks []*media.Track, src *synth) *server.Publisher {
	l.t.Helper()
	pub, err := l.hub.PublishTrusted(path, tracks, server.PublishOptions{Protocol: "test", Derived: true})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(pub.Close)
	for end := src.peek() + time.Second; src.peek() < end; {
		pub.Write(src.next())
	}
	return pub
}

// TestRungWakesMultivariant: a multivariant request waiting for a rung of
// an on-demand ladder is woken by the rung's watch when the rung publishes
// (not by a timer), and lists it.
func TestRungWakesMultivariant(t *testing.T) {
	l := ladderLive(t, serverConfig())
	ch := l.async("index.m3u8")
	l.waitWatch("live/x/160p")
	noResponse(t, ch, 100*time.Millisecond, "index.m3u8 before the rung publishes")
	if n := l.h.rungWakes.Load(); n != 0 {
		t.Fatalf("%d rung wake-ups before the rung published", n)
	}
	src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC})
	l.publishRung("live/x/160p", src.tracks(), src)
	r := wantResponse(t, ch, 10*time.Second, "index.m3u8")
	if n := l.h.rungWakes.Load(); n != 1 {
		t.Errorf("the watch woke the request %d times, want 1", n)
	}
	lines := strings.Split(strings.TrimSpace(r.body), "\n")
	if len(lines) != 7 || lines[6] != "160p/stream.m3u8" {
		t.Fatalf("index.m3u8 does not list the rung last:\n%s", r.body)
	}
	a := attrs(strings.TrimPrefix(lines[5], "#EXT-X-STREAM-INF:"))
	if a["BANDWIDTH"] != "300000" || a["AVERAGE-BANDWIDTH"] != "250000" || a["RESOLUTION"] != "320x240" || a["CODECS"] != "avc1.64000c,mp4a.40.2" {
		t.Errorf("the rung's entry: %v", a)
	}
	l.noWatches()
	// The watch's reader leaves the rung.
	for deadline := time.Now().Add(5 * time.Second); l.hub.Stream("live/x/160p").ReaderCount() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the rung's watch still reads it")
		}
	}
	// Now that it is up, the next request lists it with no watch.
	if r := l.get("index.m3u8"); !strings.Contains(r.body, "160p/stream.m3u8") || l.h.rungWakes.Load() != 1 {
		t.Errorf("second index.m3u8 (%d wake-ups):\n%s", l.h.rungWakes.Load(), r.body)
	}
}

// TestRungWatchSharedAndTracksLater: requests waiting for the same rung
// share one watch (one hub reader), which also wakes them when the rung,
// published without its parameter sets, learns them from its units.
func TestRungWatchSharedAndTracksLater(t *testing.T) {
	l := ladderLive(t, serverConfig())
	chs := []<-chan response{l.async("index.m3u8"), l.async("index.m3u8"), l.async("index.m3u8")}
	l.waitWatch("live/x/160p")
	src := newSynth(synthOpts{video: media.CodecH264})
	bare := *src.video // as a rung over MPEG-TS starts: no SPS or size yet
	bare.SPS, bare.PPS, bare.Width, bare.Height = nil, nil, 0, 0
	pub, err := l.hub.PublishTrusted("live/x/160p", []*media.Track{&bare}, server.PublishOptions{Protocol: "test", Derived: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	pub.Write(src.next())
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		l.h.mu.Lock()
		w := l.h.rungs["live/x/160p"]
		waiters := 0
		if w != nil {
			waiters = w.waiters
		}
		l.h.mu.Unlock()
		if waiters == len(chs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests wait on the watch, want %d", waiters, len(chs))
		}
	}
	// The watch attaches its reader once the hub tells it the rung is up;
	// however many wait, there is one.
	for deadline := time.Now().Add(10 * time.Second); l.hub.Stream("live/x/160p").ReaderCount() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watch does not read the rung")
		}
	}
	time.Sleep(20 * time.Millisecond)
	if n := l.hub.Stream("live/x/160p").ReaderCount(); n != 1 {
		t.Errorf("%d readers on the rung, want one (the watch)", n)
	}
	noResponse(t, chs[0], 100*time.Millisecond, "index.m3u8 before the rung knows its size")
	pub.UpdateTrack(src.video)
	pub.Write(src.next())
	for i, ch := range chs {
		r := wantResponse(t, ch, 10*time.Second, "index.m3u8")
		if !strings.Contains(r.body, "RESOLUTION=320x240,FRAME-RATE=30.000\n160p/stream.m3u8") {
			t.Errorf("request %d does not list the rung:\n%s", i, r.body)
		}
	}
	if n := l.h.rungWakes.Load(); n != 1 {
		t.Errorf("%d wake-ups, want 1 for the three requests", n)
	}
	l.noWatches()
}

// TestRungNotUpInTime: a rung that does not publish within BlockTimeout
// is left out, and its watch stops with the last request.
func TestRungNotUpInTime(t *testing.T) {
	conf := serverConfig()
	conf.BlockTimeout = time.Second
	l := ladderLive(t, conf)
	start := time.Now()
	r := l.get("index.m3u8")
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("answered after %s, before BlockTimeout", took)
	}
	if strings.Contains(r.body, "160p") || !strings.HasSuffix(r.body, "\nstream.m3u8\n") {
		t.Errorf("index.m3u8:\n%s", r.body)
	}
	if n := l.h.rungWakes.Load(); n != 0 {
		t.Errorf("%d wake-ups", n)
	}
	l.noWatches()
}

// TestRungNumberedLikeSource: a rung's muxer, started while the source's
// runs, numbers its segments like the source's segments that start at the
// same keyframes (the rung carries the source's timestamps), and each
// variant's playlist reports the other.
func TestRungNumberedLikeSource(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 2500*time.Millisecond)
	var rtracks []*media.Track
	for _, tr := range l.src.tracks() {
		c := *tr
		rtracks = append(rtracks, &c)
	}
	rpub, err := l.hub.PublishTrusted("live/x/160p", rtracks, server.PublishOptions{Protocol: "test", Derived: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rpub.Close)
	// mirror writes the next units of the source to both variants, up to
	// and including the next video unit.
	mirror := func() {
		for {
			u := l.src.next()
			l.write(u)
			rpub.Write(&media.Unit{Track: rtracks[u.Track.ID], PTS: u.PTS, DTS: u.DTS, KeyFrame: u.KeyFrame, Payload: u.Payload, Wall: u.Wall})
			if u.Track.IsVideo() {
				return
			}
		}
	}
	for range 60 { // two GOPs in the rung's cache
		mirror()
	}
	l.sync()
	ch := l.async("160p/stream.m3u8")
	var first response
	for deadline := time.Now().Add(10 * time.Second); first.code == 0; {
		select {
		case first = <-ch:
		case <-time.After(10 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("160p/stream.m3u8: no answer within 10 s")
			}
			mirror()
		}
	}
	if first.code != 200 {
		t.Fatalf("160p/stream.m3u8: %d %s", first.code, first.body)
	}
	for range 90 {
		mirror()
		if l.src.peek()%(300*time.Millisecond) < 40*time.Millisecond {
			l.sync()
		}
	}
	l.sync()
	l.h.mu.Lock()
	src, rung := l.h.muxers["live/x"], l.h.muxers["live/x/160p"]
	l.h.mu.Unlock()
	if src == nil || rung == nil {
		t.Fatal("a variant has no muxer")
	}
	sv, rv := src.view(), rung.view()
	matched := 0
	for _, rs := range rv.segs {
		if n, ok := sv.msnAt(rs.startDTS); ok {
			matched++
			if n != rs.msn {
				t.Errorf("the rung's segment at %s is %d, the source's %d", rs.startDTS, rs.msn, n)
			}
		}
	}
	if matched < 2 {
		t.Errorf("%d of the rung's segments start where one of the source's does, want 2 or more", matched)
	}
	if r := l.get("stream.m3u8"); !strings.Contains(r.body, `#EXT-X-RENDITION-REPORT:URI="160p/stream.m3u8"`) {
		t.Errorf("the source's playlist does not report the rung:\n%s", tail(r.body, 400))
	}
	if r := l.get("160p/stream.m3u8"); !strings.Contains(r.body, `#EXT-X-RENDITION-REPORT:URI="../stream.m3u8"`) {
		t.Errorf("the rung's playlist does not report the source:\n%s", tail(r.body, 400))
	}
}
