//go:build e2e && unix

package e2e

// The LL-HLS end-to-end tests: ffmpeg publishes over RTMP to the streamhub
// binary built by TestMain; ffmpeg and ffprobe read the HLS output, and
// hls.js in headless Chromium (e2e/browser/hls.mjs) plays it in low-latency
// mode through a republish.

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/m3u8"
)

// hlsURL is the URL of file (index.m3u8, stream.m3u8 or a media file) of
// path's HLS output.
func (s *streamhub) hlsURL(path, file string) string {
	return "http://" + s.httpAddr + "/" + path + "/" + file
}

// hlsPlaylist is a media playlist as read (internal/m3u8) with its text.
type hlsPlaylist struct {
	*m3u8.Media
	raw string
}

// httpGet GETs url with a timeout and returns the status and body.
func httpGet(t testing.TB, url string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, b
}

// waitHLSSegments polls path's media playlist until it lists n complete
// segments.
func waitHLSSegments(t testing.TB, s *streamhub, path string, n int, timeout time.Duration) hlsPlaylist {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := httpGet(t, s.hlsURL(path, "stream.m3u8"))
		if code == http.StatusOK {
			if m, err := m3u8.ParseMedia(body); err == nil && len(m.Segments) >= n {
				return hlsPlaylist{Media: m, raw: string(body)}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %d complete HLS segments after %s (last answer %d):\n%s", path, n, timeout, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// probedStream is one stream as ffprobe reports it.
type probedStream struct {
	CodecType     string `json:"codec_type"`
	CodecName     string `json:"codec_name"`
	Width         int    `json:"width"`
	Height        int    `json:"height"`
	NbReadFrames  string `json:"nb_read_frames"`
	NbReadPackets string `json:"nb_read_packets"`
}

// probeFMP4 writes init and media to one file and ffprobes it, counting
// decoded frames (decode) or packets; an ffprobe error fails the test.
func probeFMP4(t *testing.T, name string, init, media []byte, decode bool) map[string]probedStream {
	t.Helper()
	f := filepath.Join(t.TempDir(), name+".mp4")
	if err := os.WriteFile(f, append(append([]byte(nil), init...), media...), 0o600); err != nil {
		t.Fatal(err)
	}
	count := "-count_packets"
	if decode {
		count = "-count_frames"
	}
	return ffprobeStreams(t, name, true, count,
		"-show_entries", "stream=codec_type,codec_name,width,height,nb_read_frames,nb_read_packets", f)
}

// TestHLSFFmpeg publishes H264+AAC over RTMP; ffmpeg decodes the live HLS
// stream from index.m3u8 with no error, both as the stream's first HLS
// viewer (the muxer starts on its request) and once segments exist, and
// ffprobe reads an init with a segment and with parts.
func TestHLSFFmpeg(t *testing.T) {
	t.Parallel()
	requireTool(t, "ffprobe")
	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/hls"))
	waitLive(t, s, "live/hls", pub)

	// ffmpeg reads the multivariant playlist, then the media playlist and
	// its segments, as a player would; every frame is decoded. The first
	// one is the stream's first HLS request.
	index := s.hlsURL("live/hls", "index.m3u8")
	cold, warm := make(chan decoded, 1), make(chan decoded, 1)
	go func() { cold <- decode(t, index, 3) }()

	pl := waitHLSSegments(t, s, "live/hls", 2, 15*time.Second)
	go func() { warm <- decode(t, index, 3) }()

	seg := pl.Segments[0]
	_, init := httpGet(t, s.hlsURL("live/hls", seg.Map))
	code, media := httpGet(t, s.hlsURL("live/hls", seg.URI))
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d", seg.URI, code)
	}
	st := probeFMP4(t, "segment", init, media, true)
	v, a := st["video"], st["audio"]
	frames, _ := strconv.Atoi(v.NbReadFrames)
	want := int(seg.Duration*30 + 0.5)
	if v.CodecName != "h264" || v.Width != 320 || v.Height != 240 || frames < want-1 || frames > want+1 {
		t.Errorf("ffprobe of %s (EXTINF %.3f): video %+v, want h264 320x240 with %d frames", seg.URI, seg.Duration, v, want)
	}
	if af, _ := strconv.Atoi(a.NbReadFrames); a.CodecName != "aac" || float64(af) < seg.Duration*43-3 {
		t.Errorf("ffprobe of %s (EXTINF %.3f): audio %+v, want aac with about %.0f frames", seg.URI, seg.Duration, a, seg.Duration*44100/1024)
	}

	// An INDEPENDENT part decodes on its own; the newest part has its
	// 200 ms of samples.
	var indep, last m3u8.Part
	for _, p := range pl.Parts {
		if p.Independent {
			indep = p
		}
		last = p
	}
	if indep.URI == "" {
		t.Fatalf("no INDEPENDENT=YES part in:\n%s", pl.raw)
	}
	_, init = httpGet(t, s.hlsURL("live/hls", pl.Map))
	for _, p := range []m3u8.Part{indep, last} {
		code, media = httpGet(t, s.hlsURL("live/hls", p.URI))
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d", p.URI, code)
		}
		st = probeFMP4(t, "part", init, media, p.Independent)
		n, _ := strconv.Atoi(st["video"].NbReadPackets)
		if p.Independent {
			n, _ = strconv.Atoi(st["video"].NbReadFrames)
		}
		if st["video"].CodecName != "h264" || n < 1 || n > 7 {
			t.Errorf("ffprobe of %s (INDEPENDENT %v): video %+v, want h264 with 1 to 7 frames (a 200 ms part at 30 fps)", p.URI, p.Independent, st["video"])
		}
		if n, _ := strconv.Atoi(st["audio"].NbReadPackets + st["audio"].NbReadFrames); st["audio"].CodecName != "aac" || n < 5 || n > 15 {
			t.Errorf("ffprobe of %s: audio %+v, want aac with about 9 frames", p.URI, st["audio"])
		}
	}

	// 3 s at 30 fps is 90 frames; AAC at 44.1 kHz is ~43 frames/s.
	d := <-warm
	d.url += " (segments listed)"
	d.check(t, 60, 60)
	d = <-cold
	d.url += " (as the first HLS request of the stream)"
	d.check(t, 60, 60)
	if pub.exited() {
		t.Errorf("publisher exited with status %d while being read; stderr:\n%s", pub.cmd.ProcessState.ExitCode(), pub.stderr.String())
	}
}

// hlsPlayResult is the last JSON line printed by hls.mjs.
// checkPlaysFrom asserts that the player presented about 30 frames a
// second, and currentTime moved, from the first sample at or after from
// to the last one (at least 2 s of them).
func (res hlsPlayResult) checkPlaysFrom(t *testing.T, from time.Time, what string) {
	t.Helper()
	first := -1
	for i, smp := range res.Samples {
		if smp.T >= from.UnixMilli() {
			first = i
			break
		}
	}
	if first < 0 {
		t.Fatalf("no sample %s", what)
	}
	a, b := res.Samples[first], res.Samples[len(res.Samples)-1]
	span := time.Duration(b.T-a.T) * time.Millisecond
	if span < 2*time.Second || b.Frames-a.Frames < int(span.Seconds()*30*0.6) || b.CT <= a.CT {
		t.Errorf("from %s for %s: frames %d -> %d, currentTime %.3f -> %.3f; want about 30 frames per second (hls.js errors %q, warnings %q)",
			what, span, a.Frames, b.Frames, a.CT, b.CT, res.Errors, res.Warnings)
	}
}

type hlsPlayResult struct {
	OK        bool `json:"ok"`
	StartupMs int  `json:"startupMs"`
	Samples   []struct {
		T      int64   `json:"t"`
		Frames int     `json:"frames"`
		CT     float64 `json:"ct"`
	} `json:"samples"`
	Stalls           int             `json:"stalls"`
	VideoWidth       int             `json:"videoWidth"`
	VideoHeight      int             `json:"videoHeight"`
	PartTarget       float64         `json:"partTarget"`
	CanBlockReload   bool            `json:"canBlockReload"`
	LevelPartTargets []float64       `json:"levelPartTargets"`
	Details          json.RawMessage `json:"details"`
	Latency          float64         `json:"latency"`
	PlaylistRequests int             `json:"playlistRequests"`
	BlockingRequests int             `json:"blockingRequests"`
	PartRequests     int             `json:"partRequests"`
	SegmentRequests  int             `json:"segmentRequests"`
	SampleRequests   []string        `json:"sampleRequests"`
	Errors           []string        `json:"errors"`
	Warnings         []string        `json:"warnings"`
	Console          []string        `json:"console"`
}

// TestHLSBrowser plays the HLS output with hls.js in low-latency mode in
// headless Chromium: frames advance, hls.js sees the parts and uses
// blocking playlist reloads, and playback goes on through a republish
// within the grace period (EXT-X-DISCONTINUITY and a new EXT-X-MAP).
func TestHLSBrowser(t *testing.T) {
	browserDir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	requireBrowser(t, browserDir)
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules/hls.js/dist/hls.min.js")); err != nil {
		t.Fatalf("e2e/browser/node_modules/hls.js/dist/hls.min.js is missing: %s", npmHint)
	}
	// Not parallel, as TestBrowserHTTPFLVPlayback: Chromium and the
	// playback timing need the CPU more than the ffmpeg tests do.

	s := startServer(t, "paths:\n  default:\n    gracePeriod: 8s\n")
	pub1 := startPublisher(t, s.rtmpURL("live/hls"))
	waitLive(t, s, "live/hls", pub1)

	start := time.Now()
	node := startProc(t, "node", filepath.Join(browserDir, "hls.mjs"), s.hlsURL("live/hls", "index.m3u8"), "--play", "13", "--timeout", "45")
	stopNode := func() {
		// SIGTERM the group first: hls.mjs then closes Chromium, which
		// playwright runs in a process group of its own.
		syscall.Kill(-node.cmd.Process.Pid, syscall.SIGTERM) //nolint:errcheck // it may just have exited
		if _, ok := node.wait(10 * time.Second); !ok {
			node.kill()
		}
	}
	defer func() {
		if t.Failed() {
			t.Logf("hls.mjs stderr:\n%s", tail(node.stderr.String(), 40))
			t.Logf("publisher logs:\n%s", tail(pub1.stderr.String(), 20))
		}
	}()

	// Once hls.js plays, republish: stop the publisher, start another one
	// on the same path within the grace period.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(node.stdout.String(), `"event":"playing"`) {
		if node.exited() || time.Now().After(deadline) {
			stopNode()
			t.Fatalf("hls.js did not start playing within 30 s (hls.mjs exited: %v); stdout:\n%s", node.exited(), tail(node.stdout.String(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	playing := time.Now()
	time.Sleep(2 * time.Second)
	pub1.signal(syscall.SIGINT)
	if _, ok := pub1.wait(5 * time.Second); !ok {
		t.Fatal("first publisher did not stop on SIGINT")
	}
	s.waitLog(t, 5*time.Second, "stream waiting for a publisher")
	pub2 := startPublisher(t, s.rtmpURL("live/hls"))
	republished := time.Now()

	code, ok := node.wait(45 * time.Second)
	if !ok {
		stopNode()
		code = node.cmd.ProcessState.ExitCode()
	}
	stdout := node.stdout.String()
	t.Logf("hls.mjs ran %s (playing after %s, republished %s later)", time.Since(start).Round(time.Millisecond),
		playing.Sub(start).Round(time.Millisecond), republished.Sub(playing).Round(time.Millisecond))
	var res hlsPlayResult
	var line string
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, `{"ok"`) {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("hls.mjs (exit status %d): no result line; stdout:\n%s", code, tail(stdout, 20))
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		t.Fatalf("hls.mjs: bad result %q: %v", line, err)
	}
	t.Logf("hls.js: startup %d ms, part target %v, blocking reload %v, %d playlist requests (%d blocking, e.g. %q), %d part and %d segment requests, latency %.2f s, %d stalls, details %s",
		res.StartupMs, res.PartTarget, res.CanBlockReload, res.PlaylistRequests, res.BlockingRequests, res.SampleRequests,
		res.PartRequests, res.SegmentRequests, res.Latency, res.Stalls, res.Details)
	if len(res.Warnings) > 0 {
		t.Logf("hls.js non-fatal errors: %q", res.Warnings)
	}

	if len(res.Errors) > 0 {
		t.Errorf("player errors (fatal hls.js errors / page errors): %q", res.Errors)
	}
	if code != 0 {
		t.Errorf("hls.mjs: exit status %d, want 0", code)
	}
	// LL-HLS engaged: hls.js read PART-TARGET, saw CAN-BLOCK-RELOAD and
	// made blocking reloads, and loaded parts.
	if res.PartTarget < 0.16 || res.PartTarget > 0.25 {
		t.Errorf("hls.js level details partTarget %v (levels %v), want about 0.2 (hls.partTarget; low-latency mode not engaged)", res.PartTarget, res.LevelPartTargets)
	}
	if !res.CanBlockReload || res.BlockingRequests < 5 {
		t.Errorf("hls.js canBlockReload %v and %d playlist requests with _HLS_msn, want blocking reloads", res.CanBlockReload, res.BlockingRequests)
	}
	if res.PartRequests < 5 {
		t.Errorf("hls.js requested %d parts, want it to load parts", res.PartRequests)
	}
	if res.VideoWidth != 320 || res.VideoHeight != 240 {
		t.Errorf("video size %dx%d, want 320x240", res.VideoWidth, res.VideoHeight)
	}

	// Frames advance before the republish and again after it.
	if n := len(res.Samples); n < 2 || res.Samples[n-1].Frames <= res.Samples[0].Frames {
		t.Fatalf("frames did not advance: %+v", res.Samples)
	}
	res.checkPlaysFrom(t, republished.Add(3*time.Second), "3 s after the republish")
	if pub2.exited() {
		t.Errorf("second publisher exited with status %d; stderr:\n%s", pub2.cmd.ProcessState.ExitCode(), pub2.stderr.String())
	}
	// The server did see the republish as a discontinuity.
	code2, body := httpGet(t, s.hlsURL("live/hls", "stream.m3u8"))
	if code2 != http.StatusOK || !strings.Contains(string(body), "#EXT-X-DISCONTINUITY") {
		t.Errorf("media playlist after the republish (%d) has no EXT-X-DISCONTINUITY:\n%s", code2, body)
	}
}
