//go:build e2e

package e2e

// Hot-standby ingest (paths.*.standby, docs/standby.md) with real ffmpeg
// RTMP publishers and viewers.

import (
	"flag"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var standbyTries = flag.Int("standby.tries", 0, "TestStandbyTakeoverGap: takeovers to time (bench/standby.sh); 0 skips it")

// ptsViewer is an ffmpeg decoding a stream's video and printing each
// decoded frame's pts (showinfo).
type ptsViewer struct {
	*proc
	url string
}

var ptsTimeRE = regexp.MustCompile(`pts_time:\s*(-?[0-9.]+)`)

func startPTSViewer(t *testing.T, url string) ptsViewer {
	t.Helper()
	requireTool(t, "ffmpeg")
	return ptsViewer{proc: startProc(t, "ffmpeg", "-hide_banner", "-nostdin", "-v", "info", "-i", url,
		"-map", "0:v", "-vf", "showinfo", "-fps_mode", "passthrough", "-f", "null", "-"), url: url}
}

// pts returns the pts (seconds) of the frames decoded so far.
func (v ptsViewer) pts() []float64 {
	var out []float64
	for _, m := range ptsTimeRE.FindAllStringSubmatch(v.stderr.String(), -1) {
		f, err := strconv.ParseFloat(m[1], 64)
		if err == nil {
			out = append(out, f)
		}
	}
	return out
}

// waitFrames waits until the viewer decoded more than n frames.
func (v ptsViewer) waitFrames(t *testing.T, n int, timeout time.Duration, what string) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := len(v.pts())
		if got > n {
			return got
		}
		if v.exited() {
			t.Fatalf("%s: the viewer of %s exited after %d frames; stderr:\n%s", what, v.url, got, tail(v.stderr.String(), 10))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the viewer of %s decoded %d frames, no more than %d within %s", what, v.url, got, n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkPTS fails on a decoded pts that goes back or a step over 1 s.
func checkPTS(t *testing.T, pts []float64) {
	t.Helper()
	var maxStep float64
	for i := 1; i < len(pts); i++ {
		step := pts[i] - pts[i-1]
		if step <= 0 {
			t.Errorf("decoded frame %d: pts %.3f after %.3f (goes back)", i, pts[i], pts[i-1])
		}
		if step > 1 {
			t.Errorf("decoded frame %d: pts %.3f after %.3f (a gap over 1 s)", i, pts[i], pts[i-1])
		}
		maxStep = max(maxStep, step)
	}
	t.Logf("%d frames decoded, pts %.3f..%.3f, largest step %.3f s", len(pts), pts[0], pts[len(pts)-1], maxStep)
}

// switchedAt returns when an HTTP-FLV viewer got the first picture of a
// new publisher after since: the first picture after the sequence header
// the egress sends when the parameters change. The publishers of these
// tests use different H.264 profiles so that their SPS differ (the same
// SPS needs no new header, and the switch would not show in the tags).
func switchedAt(tags []flvTag, since time.Time) (time.Time, bool) {
	cfg := false
	for _, tg := range tags {
		if tg.at.Before(since) {
			continue
		}
		if tg.typ == tagVideo && tg.cfg {
			cfg = true
		} else if cfg && tg.typ == tagVideo {
			return tg.at, true
		}
	}
	return time.Time{}, false
}

// A main and a backup RTMP publisher on one path: the main killed with
// SIGKILL, the backup takes over, the viewers (an ffmpeg decoding HTTP-FLV
// and an HTTP-FLV tag reader) stay connected with continuous timestamps;
// the main started again takes the path back at its keyframe.
func TestStandbyFailoverRTMP(t *testing.T) {
	s := startServer(t, "paths:\n  default:\n    standby: failback\n    transcode: \"off\"\n")
	main := startPublisher(t, s.rtmpURL("live/sb"))
	waitLive(t, s, "live/sb", main)
	backup := startPublisher(t, s.rtmpURL("live/sb?role=backup"), "-profile:v", "baseline")
	s.waitLog(t, 20*time.Second, "stream standby publisher waiting")
	flv := openFLV(t, s.flvURL("live/sb"))
	viewer := startPTSViewer(t, s.flvURL("live/sb"))
	n := viewer.waitFrames(t, 30, 20*time.Second, "before the kill")

	killed := time.Now()
	main.kill() // SIGKILL: the connection just drops
	s.waitLog(t, 5*time.Second, "event=takeover")
	tags := flv.waitTags(t, 10*time.Second, "the backup's first picture", func(tags []flvTag) bool {
		_, ok := switchedAt(tags, killed)
		return ok
	})
	at, _ := switchedAt(tags, killed)
	t.Logf("takeover: the HTTP-FLV viewer got the backup's first picture %s after the kill", at.Sub(killed).Round(time.Millisecond))
	n = viewer.waitFrames(t, n+45, 20*time.Second, "after the takeover")

	restarted := time.Now()
	main2 := startPublisher(t, s.rtmpURL("live/sb"))
	s.waitLog(t, 20*time.Second, "event=failback")
	t.Logf("failback: %s after the main started again (its first keyframe; ffmpeg start-up included)", time.Since(restarted).Round(time.Millisecond))
	viewer.waitFrames(t, n+45, 20*time.Second, "after the failback")
	for name, p := range map[string]*proc{"backup": backup, "main2": main2} {
		if p.exited() {
			t.Fatalf("%s publisher exited; stderr:\n%s", name, tail(p.stderr.String(), 10))
		}
	}
	if _, err := flv.snapshot(); err != nil {
		t.Fatalf("the HTTP-FLV viewer was ended: %v", err)
	}
	checkPTS(t, viewer.pts())
	// A switch that started mid-GOP would show as decoding errors.
	for _, bad := range []string{"non-existing PPS", "decode_slice_header error", "no frame!", "error while decoding"} {
		if n := strings.Count(viewer.stderr.String(), bad); n > 0 {
			t.Errorf("the viewer's decoder said %q %d times; stderr:\n%s", bad, n, tail(viewer.stderr.String(), 20))
		}
	}
	if s.countLog("stream ended") > 0 || s.countLog("stream waiting for a publisher") > 0 {
		t.Error("the stream ended or waited for a publisher although a standby was there")
	}
}

// TestStandbyTakeoverGap times the takeover gap: a publisher killed with
// SIGKILL → an HTTP-FLV viewer gets the standby's first picture. Each try
// starts a new standby, waits until it waits with a keyframe, and kills the
// live publisher. Run by bench/standby.sh (-standby.tries=N); it reports
// the median and asserts nothing about it (the machine may be loaded).
func TestStandbyTakeoverGap(t *testing.T) {
	if *standbyTries <= 0 {
		t.Skip("a benchmark: run with -standby.tries=N (bench/standby.sh)")
	}
	s := startServer(t, "paths:\n  default:\n    standby: takeover\n    transcode: \"off\"\n")
	live := startPublisher(t, s.rtmpURL("live/gap"))
	waitLive(t, s, "live/gap", live)
	flv := openFLV(t, s.flvURL("live/gap"))
	var gaps []time.Duration
	for i := range *standbyTries {
		next := startPublisher(t, s.rtmpURL("live/gap"), "-profile:v", []string{"baseline", "main"}[i%2])
		s.waitLogLines(t, 20*time.Second, i+1, "stream standby publisher waiting")
		time.Sleep(500 * time.Millisecond) // its first keyframe is cached
		killed := time.Now()
		live.kill()
		tags := flv.waitTags(t, 10*time.Second, "the standby's first picture", func(tags []flvTag) bool {
			_, ok := switchedAt(tags, killed)
			return ok
		})
		at, _ := switchedAt(tags, killed)
		gaps = append(gaps, at.Sub(killed))
		live = next
	}
	slices.Sort(gaps)
	t.Logf("takeover gap over %d tries: median %s, min %s, max %s (all: %v)", len(gaps), gaps[len(gaps)/2].Round(100*time.Microsecond),
		gaps[0].Round(100*time.Microsecond), gaps[len(gaps)-1].Round(100*time.Microsecond), gaps)
}

// Every protocol's publisher becomes a standby through the guarded door,
// with role=backup where each carries its URL query (SRT: the stream ID):
// an RTMP main, SRT and RTSP backups; the main killed, one of them takes
// over and an HTTP-FLV viewer goes on.
func TestStandbyRolesPerProtocol(t *testing.T) {
	s := startServer(t, "paths:\n  default:\n    standby: takeover\n    transcode: \"off\"\n")
	main := startPublisher(t, s.rtmpURL("live/pp"))
	waitLive(t, s, "live/pp", main)
	startSRTPublisher(t, s.srtURL("publish:live/pp?role=backup"), "-profile:v", "baseline")
	s.waitLogLines(t, 20*time.Second, 1, "stream standby publisher waiting", "protocol=srt", "role=backup")
	startRTSPPublisher(t, s.rtspURL("live/pp?role=backup"), "tcp", "-profile:v", "baseline")
	s.waitLogLines(t, 20*time.Second, 1, "stream standby publisher waiting", "protocol=rtsp", "role=backup")
	flv := openFLV(t, s.flvURL("live/pp"))
	flv.waitTags(t, 10*time.Second, "pictures", func(tags []flvTag) bool { return countVideo(tags) >= 10 })
	killed := time.Now()
	main.kill()
	s.waitLogLines(t, 5*time.Second, 1, "event=takeover", "from=\"rtmp ")
	flv.waitTags(t, 10*time.Second, "a standby's first picture", func(tags []flvTag) bool {
		_, ok := switchedAt(tags, killed)
		return ok
	})
	if _, err := flv.snapshot(); err != nil {
		t.Fatalf("the HTTP-FLV viewer was ended: %v", err)
	}
}
