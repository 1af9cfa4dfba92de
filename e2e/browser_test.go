//go:build unix

package e2e

// TestBrowserHTTPFLVPlayback is the browser end-to-end test: ffmpeg publishes
// over RTMP to a streamhub binary built from this checkout, and mpegts.js in
// headless Chromium (e2e/browser/play.mjs, through playwright-core) plays the
// HTTP-FLV URL; video frames and currentTime must advance with no mpegts.js
// or page errors.
//
// Everything here is self-contained and prefixed br so that it does not
// clash with the other files of package e2e.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// brPlayResult is the JSON line printed by play.mjs.
type brPlayResult struct {
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

const brNpmHint = "run scripts/test.sh, which runs npm ci in e2e/browser"

func TestBrowserHTTPFLVPlayback(t *testing.T) {
	root := brModuleRoot(t)
	browserDir := filepath.Join(root, "e2e", "browser")
	brRequirements(t, browserDir)
	bin := brBuild(t, root)

	rtmpAddr, httpAddr := brFreeAddr(t), brFreeAddr(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "streamhub.yml")
	yml := fmt.Sprintf("log: {level: debug}\nrtmp: {address: %q}\nhttp: {address: %q}\n", rtmpAddr, httpAddr)
	if err := os.WriteFile(conf, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := brStart(t, "streamhub", exec.Command(bin, "--config", conf))
	brWaitListening(t, srv, rtmpAddr, httpAddr)

	ff := brStart(t, "ffmpeg", exec.Command("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
		"-re", "-f", "lavfi", "-i", "sine",
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30",
		"-c:a", "aac", "-f", "flv", "rtmp://"+rtmpAddr+"/live/test"))
	flvURL := "http://" + httpAddr + "/live/test.flv"
	brWaitStream(t, flvURL, srv, ff)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	node := exec.CommandContext(ctx, "node", filepath.Join(browserDir, "play.mjs"), flvURL, "--sample", "4", "--timeout", "30")
	node.Dir = browserDir
	var stdout, stderr bytes.Buffer
	node.Stdout, node.Stderr = &stdout, &stderr
	brProcessGroup(node)
	runErr := node.Run()
	t.Logf("play.mjs ran %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(stdout.String()))
	if stderr.Len() > 0 {
		t.Logf("play.mjs stderr:\n%s", brTail(stderr.String(), 4000))
	}

	res, perr := brParseResult(stdout.String())
	if perr != nil {
		t.Fatalf("play.mjs (exit: %v): %v\nstdout:\n%s\nstderr:\n%s", runErr, perr, brTail(stdout.String(), 4000), brTail(stderr.String(), 4000))
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
	if runErr != nil {
		t.Errorf("play.mjs: %v (want exit 0)", runErr)
	}
	if t.Failed() {
		t.Logf("streamhub log:\n%s", brTail(srv.output(), 8000))
		t.Logf("ffmpeg log:\n%s", brTail(ff.output(), 4000))
	}
}

// brModuleRoot returns the repository root (the parent of e2e/).
func brModuleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found above the e2e directory: %v", err)
	}
	return root
}

// brRequirements fails (never skips) when a tool the test needs is missing.
func brRequirements(t *testing.T, browserDir string) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "node"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found in PATH: run scripts/test.sh, which installs ffmpeg and Chromium (node 20 and npm must be installed)", tool)
		}
	}
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
			t.Fatalf("e2e/browser/%s is missing: %s", f, brNpmHint)
		}
	}
}

var (
	brBuildOnce sync.Once
	brBinary    string
	brBuildErr  error
)

// brBuild builds the streamhub binary once per test process. It goes to a
// directory under os.TempDir named after the checkout, so repeated runs
// reuse one directory instead of leaving a new one each time; the build
// writes a temporary file and renames it into place, so concurrent test
// processes do not see a half-written binary.
func brBuild(t *testing.T, root string) string {
	t.Helper()
	brBuildOnce.Do(func() {
		sum := sha256.Sum256([]byte(root))
		dir := filepath.Join(os.TempDir(), "streamhub-e2e-browser-"+hex.EncodeToString(sum[:6]))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			brBuildErr = err
			return
		}
		f, err := os.CreateTemp(dir, "streamhub-*.tmp")
		if err != nil {
			brBuildErr = err
			return
		}
		tmp := f.Name()
		f.Close()
		cmd := exec.Command("go", "build", "-o", tmp, ".")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			os.Remove(tmp)
			brBuildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		bin := filepath.Join(dir, "streamhub")
		if err := os.Rename(tmp, bin); err != nil {
			os.Remove(tmp)
			brBuildErr = err
			return
		}
		brBinary = bin
	})
	if brBuildErr != nil {
		t.Fatal(brBuildErr)
	}
	return brBinary
}

// brFreeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func brFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// brProc is a started process in its own process group.
type brProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // valid after done

	mu  sync.Mutex
	buf bytes.Buffer // stdout+stderr, the first 1 MiB
}

func (p *brProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.buf.Len() < 1<<20 {
		p.buf.Write(b)
	}
	return len(b), nil
}

func (p *brProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

func (p *brProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func brProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// With CommandContext: on cancel, SIGTERM the group (play.mjs then closes
	// Chromium, which playwright runs in a process group of its own), and
	// SIGKILL the group if it is still there after WaitDelay.
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	cmd.WaitDelay = 10 * time.Second
}

// brStart starts cmd in its own process group and stops the whole group
// (SIGTERM, then SIGKILL after 5 s) when the test ends.
func brStart(t *testing.T, name string, cmd *exec.Cmd) *brProc {
	t.Helper()
	p := &brProc{name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p, p
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Logf("%s did not exit within 5 s of SIGTERM; killing its process group", name)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
		// Anything left in the group (children) goes too.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
	return p
}

// brWaitListening waits until the server accepts TCP connections on both addresses.
func brWaitListening(t *testing.T, srv *brProc, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range addrs {
		for {
			if srv.exited() {
				t.Fatalf("streamhub exited (%v) before listening on %s:\n%s", srv.err, a, brTail(srv.output(), 4000))
			}
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("streamhub not listening on %s after 15 s: %v\n%s", a, err, brTail(srv.output(), 4000))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// brWaitStream waits until the FLV URL answers HEAD with 200 (the publisher is on).
func brWaitStream(t *testing.T, url string, srv, ff *brProc) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		if ff.exited() {
			t.Fatalf("ffmpeg exited (%v) before the stream was up:\n%s", ff.err, brTail(ff.output(), 4000))
		}
		if srv.exited() {
			t.Fatalf("streamhub exited (%v):\n%s", srv.err, brTail(srv.output(), 4000))
		}
		resp, err := client.Head(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s not up after 20 s (last: %s)\nstreamhub:\n%s\nffmpeg:\n%s", url, last, brTail(srv.output(), 4000), brTail(ff.output(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// brParseResult decodes the last JSON line of play.mjs's stdout.
func brParseResult(stdout string) (brPlayResult, error) {
	var res brPlayResult
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

func brTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
