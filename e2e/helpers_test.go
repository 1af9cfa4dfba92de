//go:build e2e

// Package e2e runs the real streamhub binary against real clients (ffmpeg,
// GStreamer, the Go HTTP client, gortmplib) on free ports. TestMain builds
// the binary once; every test writes its own config and starts its own
// server.
package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/testfixtures"
)

// binPath is the streamhub binary built by TestMain.
var binPath string

// stopTimeout is how long the server may take to exit after SIGTERM.
const stopTimeout = 3 * time.Second

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "streamhub-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "streamhub")
	if raceEnabled() && os.Getenv("GORACE") == "" {
		// The server runs under the race detector too (a race makes it exit
		// with status 66, which stop reports). The race runtime sleeps 1 s
		// at exit by default: that would count in the 3 s shutdown bound.
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	if err := testfixtures.Build("", binPath, raceEnabled()); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	return m.Run()
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// installHints says how to get each client program the e2e tests run.
var installHints = map[string]string{
	"ffmpeg":            "install it with scripts/test.sh (or: sudo apt-get install -y ffmpeg)",
	"ffprobe":           "install it with scripts/test.sh (or: sudo apt-get install -y ffmpeg)",
	"node":              "install node 20 and npm, then run scripts/test.sh (it installs Chromium and the npm packages of e2e/browser)",
	"gst-launch-1.0":    "install it with scripts/test.sh (or: " + gstInstall + ")",
	"gst-inspect-1.0":   "install it with scripts/test.sh (or: " + gstInstall + ")",
	"srt-live-transmit": "install it with scripts/test.sh (or: sudo apt-get install -y srt-tools)",
}

// gstInstall installs GStreamer with every element the RTSP tests use.
const gstInstall = "sudo apt-get install -y gstreamer1.0-tools gstreamer1.0-rtsp gstreamer1.0-plugins-good " +
	"gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav"

// requireTool fails the test (never skips) when a client program is missing.
func requireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found in PATH: the e2e tests need it; %s", name, installHints[name])
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// proc is a process started by a test, in its own process group. Cleanup
// kills the group if the process has not exited by then.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{} // closed once Wait returned
	started        time.Time
}

func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p, err := tryStartProc(t, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startProcIO is tryStartProc with the process's stdin and stdout given
// (nil keeps tryStartProc's: no stdin, stdout recorded). It may run on any
// goroutine.
func startProcIO(t testing.TB, stdin io.Reader, stdout io.Writer, name string, args ...string) (*proc, error) {
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if stdin != nil {
		p.cmd.Stdin = stdin
	}
	if stdout != nil {
		p.cmd.Stdout = stdout
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %v", name, err)
	}
	p.started = time.Now()
	go func() {
		p.cmd.Wait() //nolint:errcheck // the exit status is read from ProcessState
		close(p.done)
	}()
	t.Cleanup(p.kill)
	return p, nil
}

// tryStartProc is startProc for any goroutine: it returns the error.
func tryStartProc(t testing.TB, name string, args ...string) (*proc, error) {
	return startProcIO(t, nil, nil, name, args...)
}

// kill ends the process group (if the process still runs) and waits.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // it may just have exited
	<-p.done
}

// signal sends sig to the process (not its group).
func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(sig) //nolint:errcheck // it may just have exited
	}
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to exit and returns its exit code, or
// false if it still runs.
func (p *proc) wait(d time.Duration) (int, bool) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

// run runs a program to completion (killed after timeout) and returns its
// stdout, stderr and exit code.
func run(t testing.TB, timeout time.Duration, name string, args ...string) (string, string, int) {
	t.Helper()
	p := startProc(t, name, args...)
	code, ok := p.wait(timeout)
	if !ok {
		p.kill()
		t.Fatalf("%s %s did not finish within %s; stderr:\n%s", name, strings.Join(args, " "), timeout, tail(p.stderr.String(), 20))
	}
	return p.stdout.String(), p.stderr.String(), code
}
