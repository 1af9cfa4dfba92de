//go:build e2e && unix

package e2e

// TestBrowserHTTPFLVPlayback is the browser end-to-end test: ffmpeg publishes
// over RTMP to the streamhub binary built by TestMain, and mpegts.js in
// headless Chromium (e2e/browser/play.mjs, through playwright-core) plays the
// HTTP-FLV URL; video frames and currentTime must advance with no mpegts.js
// or page errors.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// playResult is the JSON line printed by play.mjs.
type playResult struct {
	OK               bool     `json:"ok"`
	FramesStart      int      `json:"framesStart"`
	FramesEnd        int      `json:"framesEnd"`
	CurrentTimeStart float64  `json:"currentTimeStart"`
	CurrentTimeEnd   float64  `json:"currentTimeEnd"`
	DroppedFrames    int      `json:"droppedFrames"`
	Stalls           int      `json:"stalls"`
	StartupMs        int      `json:"startupMs"`
	VideoWidth       int      `json:"videoWidth"`
	VideoHeight      int      `json:"videoHeight"`
	Errors           []string `json:"errors"`
	Console          []string `json:"console"`
}

const npmHint = "run scripts/test.sh, which runs npm ci in e2e/browser"

func TestBrowserHTTPFLVPlayback(t *testing.T) {
	browserDir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	requireBrowser(t, browserDir)

	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/test"))
	waitLive(t, s, "live/test", pub)
	defer func() {
		if log := pub.stderr.String(); t.Failed() && log != "" {
			t.Logf("ffmpeg log:\n%s", tail(log, 40))
		}
	}()

	browserPlays(t, browserDir, s.flvURL("live/test"))
}

// TestBrowserWSFLVPlayback plays WebSocket-FLV (ws://HOST/<path>.flv) with
// mpegts.js in Chromium, through the guarded door (the path has a read
// key), the same checks as HTTP-FLV: frames decoded and time advancing.
func TestBrowserWSFLVPlayback(t *testing.T) {
	browserDir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	requireBrowser(t, browserDir)

	s := startServer(t, "paths:\n  overrides:\n    - match: live/ws\n      readKey: ws-read-key\n")
	pub := startPublisher(t, s.rtmpURL("live/ws"))
	waitLiveURL(t, s.flvURL("live/ws")+"?key=ws-read-key", "live/ws", pub)
	defer func() {
		if log := pub.stderr.String(); t.Failed() && log != "" {
			t.Logf("ffmpeg log:\n%s", tail(log, 40))
		}
	}()
	ws := "ws://" + s.httpAddr + "/live/ws.flv?key=ws-read-key"
	browserPlays(t, browserDir, ws)
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+s.httpAddr+"/live/ws.flv", nil)
	if err == nil {
		c.Close()
		t.Error("WebSocket-FLV without the read key: upgraded")
	} else if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("WebSocket-FLV without the read key: %v, want 401", err)
	}
	if !strings.Contains(s.stderr.String(), "transport=websocket") {
		t.Error("the server logged no WebSocket session")
	}
}

// browserPlays plays url with mpegts.js (type flv, live) in Chromium and
// fails unless video frames and currentTime advanced at 320x240 without
// player errors.
func browserPlays(t *testing.T, browserDir, url string) {
	t.Helper()
	start := time.Now()
	node := startProc(t, "node", filepath.Join(browserDir, "play.mjs"), url, "--sample", "4", "--timeout", "30")
	code, ok := node.wait(60 * time.Second)
	if !ok {
		// SIGTERM the group first: play.mjs then closes Chromium, which
		// playwright runs in a process group of its own (the SIGKILL of
		// node's group in kill would leave it behind).
		syscall.Kill(-node.cmd.Process.Pid, syscall.SIGTERM) //nolint:errcheck // it may just have exited
		if code, ok = node.wait(10 * time.Second); !ok {
			node.kill()
			code = node.cmd.ProcessState.ExitCode()
		}
	}
	stdout, stderr := node.stdout.String(), node.stderr.String()
	t.Logf("play.mjs ran %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(stdout))
	if stderr != "" {
		t.Logf("play.mjs stderr:\n%s", tail(stderr, 40))
	}

	res, perr := parsePlayResult(stdout)
	if perr != nil {
		t.Fatalf("play.mjs (exit status %d): %v\nstdout:\n%s\nstderr:\n%s", code, perr, tail(stdout, 40), tail(stderr, 40))
	}
	if len(res.Errors) > 0 {
		t.Errorf("player errors (mpegts.js ERROR events / page errors): %q", res.Errors)
	}
	if res.FramesEnd <= res.FramesStart {
		t.Errorf("video frames did not advance: totalVideoFrames %d -> %d", res.FramesStart, res.FramesEnd)
	}
	if res.CurrentTimeEnd <= res.CurrentTimeStart {
		t.Errorf("video.currentTime did not advance: %.3f -> %.3f", res.CurrentTimeStart, res.CurrentTimeEnd)
	}
	if res.VideoWidth != 320 || res.VideoHeight != 240 {
		t.Errorf("video size %dx%d, want 320x240", res.VideoWidth, res.VideoHeight)
	}
	if code != 0 {
		t.Errorf("play.mjs: exit status %d (want exit 0)", code)
	}
}

// requireBrowser fails (never skips) when something the browser test needs
// is missing: ffmpeg, node, Chromium or the npm packages of e2e/browser.
func requireBrowser(t *testing.T, browserDir string) {
	t.Helper()
	requireTool(t, "ffmpeg")
	requireTool(t, "node")
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("Chromium not found at %s (set $CHROMIUM to override): run scripts/test.sh, which installs it", chromium)
	}
	for _, f := range []string{
		"node_modules/playwright-core/package.json",
		"node_modules/mpegts.js/dist/mpegts.js",
	} {
		if _, err := os.Stat(filepath.Join(browserDir, f)); err != nil {
			t.Fatalf("e2e/browser/%s is missing: %s", f, npmHint)
		}
	}
}

// parsePlayResult decodes the last JSON line of play.mjs's stdout.
func parsePlayResult(stdout string) (playResult, error) {
	var res playResult
	var line string
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "{") {
			line = l
		}
	}
	if line == "" {
		return res, errors.New("no JSON result line on stdout")
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return res, fmt.Errorf("bad JSON result %q: %v", line, err)
	}
	return res, nil
}
