//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// progressReader is an ffmpeg reading url to nothing, reporting the frames
// it decoded (-progress).
type progressReader struct {
	*proc
	url string
}

var frameRE = regexp.MustCompile(`(?m)^frame=(\d+)$`)

func startProgressReader(t *testing.T, url string, inOpts ...string) progressReader {
	t.Helper()
	args := append([]string{"-hide_banner", "-nostdin", "-v", "error"}, inOpts...)
	args = append(args, "-i", url, "-map", "0:v", "-f", "null", "-progress", "pipe:1", "-stats_period", "0.25", "-")
	return progressReader{proc: startProc(t, "ffmpeg", args...), url: url}
}

// frames returns the frames the reader decoded so far.
func (r progressReader) frames() int {
	m := frameRE.FindAllStringSubmatch(r.stdout.String(), -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

// waitFrames waits until the reader decoded more than n frames.
func (r progressReader) waitFrames(t *testing.T, n int, timeout time.Duration, what string) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for r.frames() <= n {
		if r.exited() {
			t.Fatalf("%s: the reader of %s exited (status %d) %s; stderr:\n%s", what, r.url, r.cmd.ProcessState.ExitCode(),
				"before decoding more frames", tail(r.stderr.String(), 10))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the reader of %s decoded no frame past %d within %s", what, r.url, n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Now()
}

// A publisher killed (kill -9) and back within the grace period keeps
// every viewer: HTTP-FLV, RTMP, RTSP and SRT players stay connected and
// decode again, and the grace period ends when the new publisher is
// accepted, not when its tracks are known.
func TestReconnectWithinGraceKeepsViewers(t *testing.T) {
	s := startServer(t, "paths:\n  default:\n    gracePeriod: 5s\n    transcode: \"off\"\n")
	pub := startPublisher(t, s.rtmpURL("live/re"))
	waitLive(t, s, "live/re", pub)
	flv := openFLV(t, s.flvURL("live/re"))
	readers := map[string]progressReader{
		"rtmp": startProgressReader(t, s.rtmpURL("live/re")),
		"rtsp": startProgressReader(t, s.rtspURL("live/re"), "-rtsp_transport", "tcp"),
		"srt":  startProgressReader(t, s.srtURL("read:live/re")),
	}
	for name, r := range readers {
		r.waitFrames(t, 10, 20*time.Second, name+" before the kill")
	}
	flv.waitTags(t, 10*time.Second, "pictures", func(tags []flvTag) bool { return countVideo(tags) >= 10 })

	pub.kill() // kill -9: the connection just drops
	time.Sleep(3 * time.Second)
	before := map[string]int{}
	for name, r := range readers {
		before[name] = r.frames()
	}
	flvBefore := countVideo(mustTags(t, flv))
	restarted := time.Now()
	pub2 := startPublisher(t, s.rtmpURL("live/re"))
	_ = pub2
	tags := flv.waitTags(t, 10*time.Second, "pictures after the reconnect", func(tags []flvTag) bool { return countVideo(tags) > flvBefore+5 })
	var firstNew time.Time
	for _, tg := range tags {
		if tg.typ == tagVideo && !tg.cfg && tg.at.After(restarted) {
			firstNew = tg.at
			break
		}
	}
	t.Logf("HTTP-FLV: first picture of the new publisher %s after it started (ffmpeg start-up included)", firstNew.Sub(restarted).Round(time.Millisecond))
	for name, r := range readers {
		at := r.waitFrames(t, before[name]+5, 15*time.Second, name+" after the reconnect")
		t.Logf("%s: decoding again %s after the new publisher started", name, at.Sub(restarted).Round(time.Millisecond))
	}
	if _, err := flv.snapshot(); err != nil {
		t.Fatalf("the HTTP-FLV viewer was ended: %v", err)
	}
	log := s.stderr.String()
	if strings.Contains(log, "no publisher within the grace period") {
		t.Error("the stream ended in its grace period although the publisher came back within it")
	}
	if !strings.Contains(log, "stream publisher accepted within the grace period") {
		t.Error("the log does not say the new publisher took the stream over within the grace period")
	}
}

// A refused RTMP publisher hears why: ffmpeg prints the server's reason
// (not "Broken pipe").
func TestRTMPRefusalReasonShown(t *testing.T) {
	requireTool(t, "ffmpeg")
	s := startServer(t, "paths:\n  overrides:\n    - match: \"locked/*\"\n      publishKey: \"right\"\n")
	_, stderr, code := run(t, 30*time.Second, "ffmpeg", publisherArgs(s.rtmpURL("locked/x?key=wrong"), "-t", "2")...)
	if code == 0 {
		t.Fatal("ffmpeg published with a wrong key")
	}
	if !strings.Contains(stderr, "wrong or missing key") {
		t.Fatalf("ffmpeg does not show the reason; stderr:\n%s", tail(stderr, 10))
	}
	t.Logf("ffmpeg says: %s", strings.TrimSpace(tail(stderr, 3)))
}

// LL-HLS across a republish after the grace period: the publisher is gone
// long enough for the stream and its segmenter to end, and comes back;
// hls.js, still playing the old session's playlist, plays the new one
// within 3 s (the media sequence goes on, with a discontinuity).
func TestHLSBrowserRepublishAfterGrace(t *testing.T) {
	browserDir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	requireBrowser(t, browserDir)
	s := startServer(t, "paths:\n  default:\n    gracePeriod: 0s\n    transcode: \"off\"\n")
	pub := startPublisher(t, s.rtmpURL("live/hr"))
	waitLive(t, s, "live/hr", pub)
	node := startProc(t, "node", filepath.Join(browserDir, "hls.mjs"), s.hlsURL("live/hr", "stream.m3u8"), "--play", "14", "--timeout", "50")
	defer func() {
		syscall.Kill(-node.cmd.Process.Pid, syscall.SIGTERM) //nolint:errcheck // it may have exited
		if _, ok := node.wait(10 * time.Second); !ok {
			node.kill()
		}
		if t.Failed() {
			t.Logf("hls.mjs stderr:\n%s", tail(node.stderr.String(), 30))
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(node.stdout.String(), `"event":"playing"`) {
		if node.exited() || time.Now().After(deadline) {
			t.Fatalf("hls.js did not start playing; stdout:\n%s", tail(node.stdout.String(), 10))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	pub.kill()
	s.waitLog(t, 5*time.Second, "stream ended")
	time.Sleep(2 * time.Second) // hls.js keeps asking for the old session's next part
	pub2 := startPublisher(t, s.rtmpURL("live/hr"))
	waitLive(t, s, "live/hr", pub2)
	republished := time.Now()
	code, ok := node.wait(50 * time.Second)
	if !ok {
		t.Fatal("hls.mjs did not finish")
	}
	var res hlsPlayResult
	sc := bufio.NewScanner(strings.NewReader(node.stdout.String()))
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, `{"ok"`) {
			if err := json.Unmarshal([]byte(l), &res); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(res.Samples) == 0 {
		t.Fatalf("hls.mjs (status %d) gave no samples; stdout:\n%s", code, tail(node.stdout.String(), 10))
	}
	// Frames advance again within 3 s of the new publisher being live.
	res.checkPlaysFrom(t, republished.Add(3*time.Second), "3 s after the republish")
	for _, w := range res.Warnings {
		if strings.Contains(w, "HTTP 400") {
			t.Errorf("hls.js got a 400 after the republish: %s", w)
		}
	}
}
