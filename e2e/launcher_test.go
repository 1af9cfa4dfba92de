//go:build e2e

package e2e

// The streamhub server of a test: its config, start on free ports (port 0:
// it binds what is free and logs the addresses), stop, restart and URLs.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/testfixtures"
)

// streamhub is a running server.
type streamhub struct {
	*proc
	addrs              serverAddrs
	conf               string // the config file it runs with
	extra              string // the YAML appended to the addresses' (restart rewrites the file)
	rtmpAddr, httpAddr string
	rtspAddr           string
	srtAddr            string // UDP HOST:PORT
	stopped            bool
}

// serverAddrs are the listen addresses of one test server.
type serverAddrs = testfixtures.Addrs

// freeAddrs picks free addresses for a server.
func freeAddrs(t testing.TB) serverAddrs {
	t.Helper()
	a, err := testfixtures.FreeAddrs()
	if err != nil {
		t.Fatal(err)
	}
	a.Database = filepath.Join(t.TempDir(), "streams.db")
	return a
}

// writeConfigFor writes a config with a's addresses and the given extra YAML
// (e.g. a paths: section) and returns the file.
func writeConfigFor(t testing.TB, a serverAddrs, extra string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "streamhub-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(a.YAML("debug") + extra); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// writeConfig writes a config with free ports and the given extra YAML
// (e.g. a paths: section) and returns the file and the RTMP and HTTP
// addresses.
func writeConfig(t testing.TB, extra string) (file, rtmpAddr, httpAddr string) {
	t.Helper()
	a := freeAddrs(t)
	return writeConfigFor(t, a, extra), a.RTMP, a.HTTP
}

// startServer runs streamhub with a fresh config (extra YAML appended) and
// waits until its RTMP, HTTP and RTSP ports accept. Cleanup stops it with
// SIGTERM and checks that it exits in time with status 0; on failure the
// server log is shown.
func startServer(t *testing.T, extra string) *streamhub {
	t.Helper()
	// Port 0: the server binds what is free and logs it (no race for a port).
	a := freeAddrs(t).Dynamic()
	s, err := launchServer(t, writeConfigFor(t, a, extra), a)
	if err != nil {
		t.Fatalf("server did not start: %v\nlog:\n%s", err, tail(s.stderr.String(), 40))
	}
	s.extra = extra
	return s
}

// restart starts a new server on s's config file and addresses, once s has
// been stopped (s.stop), and waits until it is ready.
func (s *streamhub) restart(t *testing.T) *streamhub {
	t.Helper()
	if !s.stopped {
		t.Fatal("restart: the server still runs: stop it first")
	}
	conf := s.conf
	if s.extra != "" || strings.Contains(mustRead(t, conf), "127.0.0.1:0") {
		// The same addresses as before: the ones it bound.
		conf = writeConfigFor(t, s.addrs, s.extra)
	}
	n, err := launchServer(t, conf, s.addrs)
	if err != nil {
		t.Fatalf("server did not restart on %s: %v\nlog:\n%s", s.conf, err, tail(n.stderr.String(), 40))
	}
	n.extra = s.extra
	return n
}

// launchServer starts streamhub with a config file whose addresses are a and
// waits until it is ready. On error the process is gone and the returned
// server has its log.
func launchServer(t *testing.T, file string, a serverAddrs) (*streamhub, error) {
	return launchServerUnder(t, file, a)
}

// launchServerUnder is launchServer with the binary run by a wrapper
// command (e.g. prlimit --nofile=150:150); none runs it directly.
func launchServerUnder(t *testing.T, file string, a serverAddrs, wrapper ...string) (*streamhub, error) {
	t.Helper()
	argv := append(append([]string(nil), wrapper...), binPath, "--config", file)
	s := &streamhub{proc: startProc(t, argv[0], argv[1:]...), addrs: a, conf: file,
		rtmpAddr: a.RTMP, httpAddr: a.HTTP, rtspAddr: a.RTSP, srtAddr: a.SRT}
	if err := s.waitReady(15 * time.Second); err != nil {
		s.kill()
		return s, err
	}
	s.rtmpAddr, s.httpAddr, s.rtspAddr, s.srtAddr = s.addrs.RTMP, s.addrs.HTTP, s.addrs.RTSP, s.addrs.SRT
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("log of the server on %s:\n%s", s.rtspAddr, tail(s.stderr.String(), 60))
		}
	})
	return s, nil
}

// waitReady waits until the server has logged the addresses it bound
// (s.addrs takes them) and its TCP listeners accept.
func (s *streamhub) waitReady(timeout time.Duration) error {
	a, err := testfixtures.WaitReady(context.Background(), s.stderr.String, s.addrs, timeout, func() error {
		if s.exited() {
			return fmt.Errorf("exited with status %d", s.cmd.ProcessState.ExitCode())
		}
		return nil
	})
	s.addrs = a
	return err
}

// mustRead returns the text of a file.
func mustRead(t testing.TB, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stop sends SIGTERM and asserts that the server exits within stopTimeout
// with status 0 and logged no data race or panic. It returns how long the
// exit took.
func (s *streamhub) stop(t testing.TB) time.Duration {
	t.Helper()
	if s.stopped {
		return 0
	}
	s.stopped = true
	start := time.Now()
	s.signal(syscall.SIGTERM)
	code, ok := s.wait(stopTimeout)
	took := time.Since(start)
	if !ok {
		s.kill()
		t.Errorf("server still running %s after SIGTERM (must exit within %s)", took.Round(time.Millisecond), stopTimeout)
		return took
	}
	if code != 0 {
		t.Errorf("server exited with status %d after SIGTERM, want 0", code)
	}
	log := s.stderr.String()
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
		if i := strings.Index(log, bad); i >= 0 {
			// The report itself, not the log's tail: a race report is
			// often hundreds of lines before the end.
			t.Errorf("server log contains %q:\n%s", bad, head(log[i:], 250))
		}
	}
	return took
}

// head returns the first n lines of s.
func head(s string, n int) string {
	lines := strings.SplitAfterN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "")
}

func (s *streamhub) flvURL(path string) string  { return "http://" + s.httpAddr + "/" + path + ".flv" }
func (s *streamhub) rtmpURL(path string) string { return "rtmp://" + s.rtmpAddr + "/" + path }
func (s *streamhub) rtspURL(path string) string { return "rtsp://" + s.rtspAddr + "/" + path }

// srtURL is the SRT URL of the server with a stream ID as given (any form:
// "publish:live/a", "#!::r=live/a,m=request", "%23!::..."); further URL
// options go after it as "&name=value".
func (s *streamhub) srtURL(streamid string) string {
	return "srt://" + s.srtAddr + "?streamid=" + streamid
}

// srtKeys is extra YAML for startServer setting keys of the srt: section
// (e.g. "latency: 300ms"): serverAddrs.YAML ends with that section, so
// indented lines at the start of extra continue it. A paths: section may
// follow.
func srtKeys(keys ...string) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString("  " + k + "\n")
	}
	return b.String()
}
