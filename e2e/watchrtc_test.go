//go:build e2e && unix

package e2e

// The watch page's WebRTC mode (web/static/watch.js) in headless Chromium
// (e2e/browser/watchrtc.mjs): an ffmpeg RTMP publisher is watched over WHEP
// by default, frames advancing, audio arriving and the latency readout
// showing a figure; a stream with B-frames, which WHEP refuses, falls back
// to LL-HLS with the reason shown.

import (
	"fmt"
	"strings"
	"testing"
)

// watchSample is one sample of the watch page (watchrtc.mjs).
type watchSample struct {
	Mode     string  `json:"mode"`
	Select   string  `json:"select"`
	RVFC     int     `json:"rvfc"`
	Frames   int     `json:"frames"`
	CT       float64 `json:"ct"`
	W        int     `json:"w"`
	H        int     `json:"h"`
	Latency  string  `json:"latency"`
	Status   string  `json:"status"`
	Fallback string  `json:"fallback"`
	RTC      *struct {
		FramesDecoded int     `json:"framesDecoded"`
		AudioSamples  int     `json:"audioSamples"`
		Latency       float64 `json:"latency"`     // seconds
		LatencyFrom   string  `json:"latencyFrom"` // playout or network
		Location      string  `json:"location"`
		Connection    string  `json:"connection"`
	} `json:"rtc"`
	Search string `json:"search"`
}

// watchResult is the JSON line printed by watchrtc.mjs.
type watchResult struct {
	OK        bool         `json:"ok"`
	Mode      string       `json:"mode"`
	StartupMs int          `json:"startupMs"`
	First     *watchSample `json:"first"`
	Last      *watchSample `json:"last"`
	Fallback  string       `json:"fallback"`
	Events    []string     `json:"events"`
	Errors    []string     `json:"errors"`
	Console   []string     `json:"console"`
}

func TestWatchPageWebRTC(t *testing.T) {
	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/rtc"))
	// B-frames: x264's default (not zerolatency) with 2 B-frames.
	pubBF := startProc(t, "ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
		"-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-threads", "1", "-g", "30", "-pix_fmt", "yuv420p",
		"-f", "flv", s.rtmpURL("live/bf"))
	waitLive(t, s, "live/rtc", pub)
	waitLive(t, s, "live/bf", pubBF)
	watch := "http://" + s.httpAddr + "/watch/"

	// The default mode of an H.264 stream is WebRTC.
	var res watchResult
	code := runBrowserScript(t, &res, "watchrtc.mjs", watch+"live/rtc", "--sample", "3", "--timeout", "50")
	checkWatchConsole(t, res)
	if code != 0 || !res.OK || len(res.Errors) > 0 {
		t.Errorf("watchrtc.mjs on live/rtc: exit status %d, ok %v, errors %q, events %q", code, res.OK, res.Errors, res.Events)
	}
	if res.First == nil || res.Last == nil {
		t.Fatalf("live/rtc never played: %+v", res)
	}
	f, l := res.First, res.Last
	if res.Mode != "webrtc" || l.Select != "webrtc" || !strings.Contains(l.Search, "mode=webrtc") || res.Fallback != "" {
		t.Errorf("live/rtc: mode %q (picker %q, query %q), fallback %q; want WebRTC by default", res.Mode, l.Select, l.Search, res.Fallback)
	}
	if l.RVFC <= f.RVFC || l.CT <= f.CT || l.W != 320 || l.H != 240 {
		t.Errorf("live/rtc over WebRTC: frames %d -> %d, time %.2f -> %.2f, size %dx%d; want frames advancing at 320x240",
			f.RVFC, l.RVFC, f.CT, l.CT, l.W, l.H)
	}
	if l.RTC == nil || f.RTC == nil || l.RTC.FramesDecoded <= f.RTC.FramesDecoded || l.RTC.Connection != "connected" ||
		!strings.HasPrefix(l.RTC.Location, "/live/rtc/whep/") {
		t.Errorf("live/rtc WebRTC session: %+v -> %+v; want connected, a WHEP session, frames decoded advancing", f.RTC, l.RTC)
	} else if l.RTC.AudioSamples <= f.RTC.AudioSamples {
		// The source's audio is AAC: the transcode audio job makes Opus.
		t.Errorf("live/rtc: audio samples %d -> %d; want audio arriving (getStats)", f.RTC.AudioSamples, l.RTC.AudioSamples)
	}
	var ms int
	if _, err := fmt.Sscanf(l.Latency, "latency %d ms", &ms); err != nil || ms < 0 || ms >= 1000 || l.RTC == nil || l.RTC.Latency <= 0 {
		t.Errorf("latency readout in WebRTC mode: %q (getStats figure %+v); want a figure in ms under a second", l.Latency, l.RTC)
	}
	if f.RTC == nil || l.RTC == nil {
		return
	}
	t.Logf("WebRTC mode: playing %d ms after the page opened, %s (from %s), frames %d -> %d, audio samples %d -> %d",
		res.StartupMs, l.Latency, l.RTC.LatencyFrom, f.RVFC, l.RVFC, f.RTC.AudioSamples, l.RTC.AudioSamples)

	// B-frames: the WHEP POST is refused with the reason, the page says so
	// and plays LL-HLS.
	res = watchResult{}
	code = runBrowserScript(t, &res, "watchrtc.mjs", watch+"live/bf?mode=webrtc", "--sample", "2", "--timeout", "50")
	checkWatchConsole(t, res)
	if code != 0 || !res.OK || len(res.Errors) > 0 {
		t.Errorf("watchrtc.mjs on live/bf: exit status %d, ok %v, errors %q, events %q", code, res.OK, res.Errors, res.Events)
	}
	if res.Mode != "hls" || !strings.Contains(res.Fallback, "HTTP 400") || !strings.Contains(res.Fallback, "B-frames") ||
		!strings.Contains(res.Fallback, "LL-HLS") {
		t.Errorf("live/bf?mode=webrtc: mode %q, fallback %q; want LL-HLS with the server's reason (B-frames)", res.Mode, res.Fallback)
	}
	if res.Last != nil && !strings.Contains(res.Last.Search, "mode=hls") {
		t.Errorf("after the fallback the query string is %q; want mode=hls", res.Last.Search)
	}
}

// checkWatchConsole fails on a Content-Security-Policy violation in the
// browser console.
func checkWatchConsole(t *testing.T, res watchResult) {
	t.Helper()
	for _, c := range res.Console {
		if strings.Contains(c, "Content Security Policy") || strings.Contains(c, "Refused to") {
			t.Errorf("browser console: %s", c)
		}
	}
}
