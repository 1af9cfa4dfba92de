//go:build e2e && unix

package e2e

// WebRTC end to end: ffmpeg publishes over RTMP to the streamhub binary,
// and headless Chromium plays the stream over WHEP (e2e/browser/whep.mjs,
// a bare RTCPeerConnection); video frames must advance and audio samples
// (AAC made Opus by the transcode audio job) arrive.

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// whepResult is the JSON line printed by whep.mjs.
type whepResult struct {
	OK                bool     `json:"ok"`
	FramesStart       int      `json:"framesStart"`
	FramesEnd         int      `json:"framesEnd"`
	AudioSamplesStart int      `json:"audioSamplesStart"`
	AudioSamplesEnd   int      `json:"audioSamplesEnd"`
	FirstFrameMs      int      `json:"firstFrameMs"`
	VideoWidth        int      `json:"videoWidth"`
	VideoHeight       int      `json:"videoHeight"`
	JitterBufferMs    int      `json:"jitterBufferMs"`
	Errors            []string `json:"errors"`
	Console           []string `json:"console"`
}

// runBrowserScript runs a node script of e2e/browser and returns its last
// JSON line decoded into res, and its exit status.
func runBrowserScript(t *testing.T, res any, script string, args ...string) int {
	t.Helper()
	browserDir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	requireBrowser(t, browserDir)
	start := time.Now()
	node := startProc(t, "node", append([]string{filepath.Join(browserDir, script)}, args...)...)
	code, ok := node.wait(60 * time.Second)
	if !ok {
		syscall.Kill(-node.cmd.Process.Pid, syscall.SIGTERM) //nolint:errcheck // it may just have exited
		if code, ok = node.wait(10 * time.Second); !ok {
			node.kill()
			code = node.cmd.ProcessState.ExitCode()
		}
	}
	stdout, stderr := strings.TrimSpace(node.stdout.String()), node.stderr.String()
	t.Logf("%s ran %v: %s", script, time.Since(start).Round(time.Millisecond), stdout)
	if stderr != "" {
		t.Logf("%s stderr:\n%s", script, tail(stderr, 40))
	}
	lines := strings.Split(stdout, "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), res); err != nil {
		t.Fatalf("%s (exit status %d): no result line: %v", script, code, err)
	}
	return code
}

func TestWHEPBrowserPlaysRTMP(t *testing.T) {
	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/rtc"))
	waitLive(t, s, "live/rtc", pub)
	var res whepResult
	code := runBrowserScript(t, &res, "whep.mjs", "http://"+s.httpAddr+"/live/rtc/whep", "--sample", "3", "--timeout", "30")
	if len(res.Errors) > 0 {
		t.Errorf("player errors: %q", res.Errors)
	}
	if res.FramesEnd <= res.FramesStart {
		t.Errorf("video frames did not advance: %d -> %d", res.FramesStart, res.FramesEnd)
	}
	// The source's audio is AAC: the transcode audio job makes Opus.
	if res.AudioSamplesEnd <= res.AudioSamplesStart {
		t.Errorf("no audio samples arriving (getStats totalSamplesReceived %d -> %d)", res.AudioSamplesStart, res.AudioSamplesEnd)
	}
	if res.VideoWidth != 320 || res.VideoHeight != 240 {
		t.Errorf("video size %dx%d, want 320x240", res.VideoWidth, res.VideoHeight)
	}
	if code != 0 {
		t.Errorf("whep.mjs: exit status %d", code)
	}
	t.Logf("first presented frame %d ms after the WHEP POST; jitter buffer %d ms; audio samples %d -> %d",
		res.FirstFrameMs, res.JitterBufferMs, res.AudioSamplesStart, res.AudioSamplesEnd)
}
