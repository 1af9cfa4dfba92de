//go:build e2e

// Package e2e runs the real streamhub binary against real clients (ffmpeg,
// GStreamer, the Go HTTP client, gortmplib) on free ports. TestMain builds
// the binary once; every test writes its own config and starts its own
// server.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/protocols/httpflv"
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
	args := []string{"build", "-o", binPath}
	if raceEnabled() {
		// The server runs under the race detector too: a race makes it exit
		// with status 66, which stopServer reports.
		args = append(args, "-race")
		// The race runtime sleeps 1 s at exit by default; that would be
		// counted in the 3 s shutdown bound and slow every test down.
		if os.Getenv("GORACE") == "" {
			os.Setenv("GORACE", "atexit_sleep_ms=0")
		}
	}
	args = append(args, "github.com/streamhub/streamhub")
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go %s: %v\n", strings.Join(args, " "), err)
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

// streamhub is a running server.
type streamhub struct {
	*proc
	addrs              serverAddrs
	conf               string // the config file it runs with
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
	for attempt := 1; ; attempt++ {
		a := freeAddrs(t)
		s, err := launchServer(t, writeConfigFor(t, a, extra), a)
		if err == nil {
			return s
		}
		// Another process may have taken a port between picking it and the
		// server's listen: try again with new ports.
		if attempt < 3 && strings.Contains(s.stderr.String(), "address already in use") {
			continue
		}
		t.Fatalf("server did not start: %v\nlog:\n%s", err, tail(s.stderr.String(), 40))
	}
}

// restart starts a new server on s's config file and addresses, once s has
// been stopped (s.stop), and waits until it is ready.
func (s *streamhub) restart(t *testing.T) *streamhub {
	t.Helper()
	if !s.stopped {
		t.Fatal("restart: the server still runs: stop it first")
	}
	n, err := launchServer(t, s.conf, s.addrs)
	if err != nil {
		t.Fatalf("server did not restart on %s: %v\nlog:\n%s", s.conf, err, tail(n.stderr.String(), 40))
	}
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
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("log of the server on %s:\n%s", s.rtspAddr, tail(s.stderr.String(), 60))
		}
	})
	return s, nil
}

func (s *streamhub) waitReady(timeout time.Duration) error {
	return testfixtures.WaitListening(context.Background(), []string{s.rtmpAddr, s.httpAddr, s.rtspAddr}, timeout, func() error {
		if s.exited() {
			return fmt.Errorf("exited with status %d", s.cmd.ProcessState.ExitCode())
		}
		return nil
	})
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
		if strings.Contains(log, bad) {
			t.Errorf("server log contains %q", bad)
		}
	}
	return took
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

// publisherArgs is an ffmpeg publish of a 320x240 30 fps test picture with
// a sine tone, H264 (2 s GOP, fixed) and AAC, in real time. extra goes
// right before the output (output options such as -t or -output_ts_offset).
func publisherArgs(url string, extra ...string) []string {
	return append(encoderArgs(extra...), "-f", "flv", url)
}

// encoderArgs is publisherArgs up to the output format: the inputs, the
// encoders and extra.
func encoderArgs(extra ...string) []string {
	args := []string{"-hide_banner", "-nostdin", "-v", "error",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
		"-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-threads", "1",
		"-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "64k"}
	return append(args, extra...)
}

// startPublisher runs an ffmpeg publisher on the server's path.
func startPublisher(t testing.TB, url string, extra ...string) *proc {
	t.Helper()
	requireTool(t, "ffmpeg")
	return startProc(t, "ffmpeg", publisherArgs(url, extra...)...)
}

// waitLive waits until path is published (HEAD on its FLV URL gives 200).
// The publisher must keep running meanwhile.
func waitLive(t testing.TB, s *streamhub, path string, pub *proc) {
	t.Helper()
	waitLiveURL(t, s.flvURL(path), path, pub)
}

// waitLiveURL is waitLive for an FLV URL as given (e.g. with ?key=).
func waitLiveURL(t testing.TB, flvURL, path string, pub *proc) {
	t.Helper()
	if err := liveErr(flvURL, path, pub, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// liveErr is waitLiveURL returning why the stream is not live instead of
// failing the test.
func liveErr(flvURL, path string, pub *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Head(flvURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if pub != nil && pub.exited() {
			return fmt.Errorf("publisher on %s exited with status %d before the stream was live; stderr:\n%s",
				path, pub.cmd.ProcessState.ExitCode(), tail(pub.stderr.String(), 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not live after %s (last HEAD: %v)", path, timeout, errOrStatus(resp, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func errOrStatus(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}

// decoded is what an ffmpeg reader decoded.
type decoded struct {
	url          string
	video, audio int    // decoded frames per kind
	code         int    // exit status
	stderr       string // with -v error: empty unless something went wrong
}

// decode reads url with ffmpeg for seconds of media, decoding every frame
// (-f framemd5), with errors fatal (-xerror) and logged (-v error). It may
// run on any goroutine; problems show in the result, for check.
func decode(t testing.TB, url string, seconds int) decoded {
	return decodeWith(t, url, seconds, nil, nil)
}

// decodeWith is decode with input options (before -i, e.g. -rtsp_transport)
// and output options (before -t, e.g. filters).
func decodeWith(t testing.TB, url string, seconds int, inOpts, outOpts []string) decoded {
	d := decoded{url: url, code: -1}
	if len(inOpts) > 0 {
		d.url += " (" + strings.Join(inOpts, " ") + ")"
	}
	args := append([]string{"-hide_banner", "-nostdin", "-v", "error", "-xerror"}, inOpts...)
	args = append(append(args, "-i", url), outOpts...)
	args = append(args, "-t", strconv.Itoa(seconds), "-f", "framemd5", "-")
	p, err := tryStartProc(t, "ffmpeg", args...)
	if err != nil {
		d.stderr = err.Error() + " (install ffmpeg with scripts/test.sh)"
		return d
	}
	timeout := time.Duration(seconds)*time.Second + 30*time.Second
	code, ok := p.wait(timeout)
	if !ok {
		p.kill()
		d.stderr = fmt.Sprintf("killed: did not finish within %s\n%s", timeout, p.stderr.String())
		return d
	}
	d.code, d.stderr = code, strings.TrimSpace(p.stderr.String())
	d.video, d.audio = countFramemd5(p.stdout.String())
	return d
}

// countFramemd5 counts the video and audio frames in ffmpeg's -f framemd5
// output.
func countFramemd5(out string) (video, audio int) {
	kinds := map[string]string{} // stream index → video/audio
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "#media_type "); ok {
			if idx, kind, ok := strings.Cut(rest, ": "); ok {
				kinds[idx] = strings.TrimSpace(kind)
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		idx, _, _ := strings.Cut(line, ",")
		switch kinds[strings.TrimSpace(idx)] {
		case "video":
			video++
		case "audio":
			audio++
		}
	}
	return video, audio
}

// check asserts a clean decode of at least minVideo video and minAudio
// audio frames.
func (d decoded) check(t testing.TB, minVideo, minAudio int) {
	t.Helper()
	if d.code != 0 || d.stderr != "" {
		t.Errorf("ffmpeg reading %s: exit status %d, stderr:\n%s", d.url, d.code, tail(d.stderr, 20))
	}
	if d.video < minVideo {
		t.Errorf("ffmpeg reading %s decoded %d video frames, want >= %d", d.url, d.video, minVideo)
	}
	if d.audio < minAudio {
		t.Errorf("ffmpeg reading %s decoded %d audio frames, want >= %d", d.url, d.audio, minAudio)
	}
}

// flvTag is a tag as seen by flvReader, with its arrival time.
type flvTag struct {
	typ      byte
	ts       uint32
	key, cfg bool
	at       time.Time
}

// flvReader reads an HTTP-FLV stream in the background with the project's
// FLV parser and records every tag.
type flvReader struct {
	resp *http.Response
	mu   sync.Mutex
	tags []flvTag
	err  error // why reading stopped
	done chan struct{}
}

// openFLV sends a GET for url and starts reading tags; Cleanup closes it.
func openFLV(t testing.TB, url string) *flvReader {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	r := &flvReader{resp: resp, done: make(chan struct{})}
	t.Cleanup(r.close)
	go r.loop()
	return r
}

func (r *flvReader) loop() {
	defer close(r.done)
	fr, err := newFLVReader(r.resp.Body)
	if err != nil {
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
		return
	}
	for {
		tag, err := fr.Read()
		r.mu.Lock()
		if err != nil {
			r.err = err
			r.mu.Unlock()
			return
		}
		r.tags = append(r.tags, flvTag{typ: tag.Type, ts: tag.Timestamp, key: tag.IsVideoKeyFrame(), cfg: tag.IsConfig(), at: time.Now()})
		r.mu.Unlock()
	}
}

func (r *flvReader) close() {
	r.resp.Body.Close()
	<-r.done
}

// snapshot returns the tags so far and the read error, if reading stopped.
func (r *flvReader) snapshot() ([]flvTag, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]flvTag(nil), r.tags...), r.err
}

// waitTags waits until cond holds for the tags read so far; it fails the
// test if reading stops or timeout passes first.
func (r *flvReader) waitTags(t testing.TB, timeout time.Duration, what string, cond func([]flvTag) bool) []flvTag {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		tags, err := r.snapshot()
		if cond(tags) {
			return tags
		}
		if err != nil {
			t.Fatalf("HTTP-FLV reader stopped before %s: %v (after %d tags)", what, err, len(tags))
		}
		if time.Now().After(deadline) {
			t.Fatalf("HTTP-FLV reader: no %s within %s (%d tags read)", what, timeout, len(tags))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countVideo counts video tags with picture data (not sequence headers).
func countVideo(tags []flvTag) int {
	n := 0
	for _, tg := range tags {
		if tg.typ == tagVideo && !tg.cfg {
			n++
		}
	}
	return n
}

// firstFLVFrame opens url from Go, reads the FLV with the project's parser
// up to the first video tag that is not a sequence header, and returns that
// tag, whether a video sequence header came before it, and the wall time
// from sending the request to having the whole tag.
func firstFLVFrame(t testing.TB, url string) (flvTagData, bool, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	fr, err := newFLVReader(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	sawConfig := false
	for {
		tag, err := fr.Read()
		if err != nil {
			t.Fatalf("GET %s: reading tags: %v", url, err)
		}
		if tag.Type != tagVideo {
			continue
		}
		if tag.IsConfig() {
			sawConfig = true
			continue
		}
		took := time.Since(start)
		tag.Body = append([]byte(nil), tag.Body...)
		return tag, sawConfig, took
	}
}

// timedConn records when the first H264 picture message (not a sequence
// header) arrives, before gortmplib.Reader buffers it for track analysis.
type timedConn struct {
	gortmplib.Conn
	firstAU time.Time
}

func (c *timedConn) Read() (message.Message, error) {
	msg, err := c.Conn.Read()
	if v, ok := msg.(*message.Video); ok && err == nil && c.firstAU.IsZero() && v.Type == message.VideoTypeAU {
		c.firstAU = time.Now()
	}
	return msg, err
}

// firstRTMPFrame plays url with the gortmplib client and returns whether
// the first H264 access unit with picture data is a random access point (has
// an IDR NALU), and the wall time from starting the connection to that
// access unit's arrival.
func firstRTMPFrame(t testing.TB, rawURL string) (bool, time.Duration) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c := &gortmplib.Client{URL: u, Publish: false}
	if err := c.Initialize(ctx); err != nil {
		t.Fatalf("RTMP play %s: %v", rawURL, err)
	}
	defer c.Close()
	c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	tc := &timedConn{Conn: c}
	r := &gortmplib.Reader{Conn: tc}
	if err := r.Initialize(); err != nil {
		t.Fatalf("RTMP play %s: reading tracks: %v", rawURL, err)
	}
	var vt *gortmplib.Track
	for _, tr := range r.Tracks() {
		if _, ok := tr.Codec.(*codecs.H264); ok {
			vt = tr
		}
	}
	if vt == nil {
		t.Fatalf("RTMP play %s: no H264 track in %v", rawURL, r.Tracks())
	}
	got, random := false, false
	r.OnDataH264(vt, func(_, _ time.Duration, au [][]byte) {
		if got || !hasPicture(au) {
			return // the sequence header comes as an AU of SPS and PPS
		}
		got, random = true, h264.IsRandomAccess(au)
	})
	for !got {
		if err := r.Read(); err != nil {
			t.Fatalf("RTMP play %s: %v", rawURL, err)
		}
	}
	if tc.firstAU.IsZero() {
		t.Fatalf("RTMP play %s: got an access unit but saw no video message", rawURL)
	}
	return random, tc.firstAU.Sub(start)
}

// hasPicture reports whether an H264 access unit has a coded slice.
func hasPicture(au [][]byte) bool {
	for _, n := range au {
		if len(n) > 0 {
			if typ := h264.NALUType(n[0] & 0x1F); typ >= h264.NALUTypeNonIDR && typ <= h264.NALUTypeIDR {
				return true
			}
		}
	}
	return false
}

// rawHTTP sends one request line to addr as-is (no client-side cleaning of
// the path) and returns the response with its body read.
func rawHTTP(t testing.TB, addr, method, target string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", method, target, addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, target, err)
	}
	return resp, string(body)
}

// The FLV reader is the project's own (fuzzed) parser, exported for
// clients by protocols/httpflv.

// FLV tag types.
const (
	tagAudio  = httpflv.TagAudio
	tagVideo  = httpflv.TagVideo
	tagScript = httpflv.TagScript
)

// flvTagData is one FLV tag.
type flvTagData = httpflv.Tag

func newFLVReader(r io.Reader) (*httpflv.Reader, error) { return httpflv.NewReader(r) }
