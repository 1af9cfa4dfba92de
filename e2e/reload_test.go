//go:build e2e

package e2e

// Hot reload (issue 19): readers on every protocol keep decoding across
// reloads, and a bad file is refused while the server runs on.

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// timedReader is an ffmpeg reader that decodes the video of url and
// prints each frame's timestamp (-f framemd5), to check for gaps.
type timedReader struct {
	*proc
	url string
}

// startTimedReader decodes seconds of url's video (input options first).
func startTimedReader(t *testing.T, url string, seconds int, inOpts ...string) timedReader {
	t.Helper()
	args := append([]string{"-hide_banner", "-nostdin", "-v", "error", "-xerror"}, inOpts...)
	args = append(args, "-i", url, "-map", "0:v", "-fps_mode", "passthrough", "-t", strconv.Itoa(seconds), "-f", "framemd5", "-")
	return timedReader{proc: startProc(t, "ffmpeg", args...), url: url}
}

// times returns the decoded frames' timestamps in seconds.
func (r timedReader) times() []float64 {
	tb := 1.0
	var out []float64
	for _, l := range strings.Split(r.stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(l, "#tb 0: "); ok {
			n, d, _ := strings.Cut(strings.TrimSpace(rest), "/")
			num, _ := strconv.ParseFloat(n, 64)
			den, _ := strconv.ParseFloat(d, 64)
			if den > 0 {
				tb = num / den
			}
			continue
		}
		f := strings.Split(l, ",")
		if len(f) < 6 || strings.HasPrefix(l, "#") {
			continue
		}
		if pts, err := strconv.ParseFloat(strings.TrimSpace(f[2]), 64); err == nil {
			out = append(out, pts*tb)
		}
	}
	return out
}

// checkNoGap waits for the reader's end and asserts it decoded cleanly
// for about seconds with no jump between two frames' timestamps over
// 250 ms (30 fps: 33 ms) and never backwards: the connection stayed and
// nothing was skipped.
func (r timedReader) checkNoGap(t *testing.T, seconds int) {
	t.Helper()
	code, ok := r.wait(time.Duration(seconds)*time.Second + 30*time.Second)
	if !ok {
		r.kill()
		t.Errorf("reader of %s did not finish", r.url)
		return
	}
	if errOut := strings.TrimSpace(r.stderr.String()); code != 0 || errOut != "" {
		t.Errorf("reader of %s: status %d, stderr:\n%s", r.url, code, tail(errOut, 10))
	}
	ts := r.times()
	if len(ts) < seconds*30*8/10 {
		t.Errorf("reader of %s decoded %d frames, want about %d", r.url, len(ts), seconds*30)
		return
	}
	worst, at := 0.0, 0.0
	for i := 1; i < len(ts); i++ {
		if d := ts[i] - ts[i-1]; math.Abs(d) > math.Abs(worst) {
			worst, at = d, ts[i-1]
		}
	}
	if worst > 0.25 || worst <= 0 {
		t.Errorf("reader of %s: timestamps jump by %.3f s at %.3f s (frames %d, %.2f..%.2f s)", r.url, worst, at, len(ts), ts[0], ts[len(ts)-1])
	}
	t.Logf("reader of %s: %d frames, %.2f..%.2f s, largest step %.3f s", r.url, len(ts), ts[0], ts[len(ts)-1], worst)
	if span := ts[len(ts)-1] - ts[0]; span < float64(seconds)-1.5 {
		t.Errorf("reader of %s: decoded %.2f s of %d s", r.url, span, seconds)
	}
}

// reloadStatus is GET /api/v1/config/reload.
type reloadStatus struct {
	Trigger               string
	At                    time.Time
	OK                    bool
	Error                 string
	Applied, NeedsRestart []string
	Successes, Failures   int
}

// lastReload returns the server's last reload status (admin from
// loopback: the test config sets no admin token).
func (s *streamhub) lastReload(t *testing.T) reloadStatus {
	t.Helper()
	var st reloadStatus
	if code := apiDo(t, "GET", "http://"+s.httpAddr+"/api/v1/config/reload", "", "", &st); code != 200 {
		t.Fatalf("GET /api/v1/config/reload: %d", code)
	}
	return st
}

// waitReload waits until the server has done reload number n (successes
// plus failures) and returns its status.
func (s *streamhub) waitReload(t *testing.T, n int, what string) reloadStatus {
	t.Helper()
	var st reloadStatus
	waitUntil(t, 10*time.Second, what+": reload number "+strconv.Itoa(n), func() bool {
		st = s.lastReload(t)
		return st.Successes+st.Failures >= n
	})
	return st
}

// saveLikeAnEditor replaces file by a new one renamed over it, as editors
// save.
func saveLikeAnEditor(t *testing.T, file, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(file), "."+filepath.Base(file)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Head(url)
	if err != nil {
		t.Fatalf("HEAD %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Readers over HTTP-FLV, RTMP, RTSP, SRT and HLS keep decoding with no gap
// while the config is reloaded four times (the file saved, SIGHUP, the
// API): a path added, a path setting changed, the ladder changed, the log
// level changed, plus a restart-only key that is reported and not applied.
// Then the file is replaced by garbage, by a half-written file and deleted:
// each is refused and the server runs on with the last good config.
func TestHotReloadKeepsReaders(t *testing.T) {
	requireTool(t, "ffmpeg")
	const base = `transcode:
  ladder:
    - {name: 180p, height: 180, videoBitrate: 300k, audioBitrate: 64k}
paths:
  default:
    gracePeriod: 2s
`
	s := startServer(t, base)
	file := s.conf
	head := strings.TrimSuffix(mustRead(t, file), base) // the addresses
	pub := startPublisher(t, s.rtmpURL("live/a"))
	waitLive(t, s, "live/a", pub)

	const secs = 14
	const readKey = "rk-0123456789"
	readers := []timedReader{
		startTimedReader(t, s.flvURL("live/a")+"?key="+readKey, secs),
		startTimedReader(t, s.rtmpURL("live/a")+"?key="+readKey, secs),
		startTimedReader(t, s.rtspURL("live/a")+"?key="+readKey, secs, "-rtsp_transport", "tcp"),
		startTimedReader(t, s.srtURL("read:live/a"), secs, srtInOpts...),
		startTimedReader(t, s.hlsURL("live/a", "stream.m3u8")+"?key="+readKey, secs),
	}
	for _, r := range readers {
		waitUntil(t, 15*time.Second, "the reader of "+r.url+" decodes", func() bool { return len(r.times()) > 10 || r.exited() })
	}
	n := 0

	// 1. A path added (the file saved by rename): live/b needs a key.
	cfg := head + base + `  overrides:
    - {match: live/b, publishKey: bkey-0123456789}
`
	saveLikeAnEditor(t, file, cfg)
	n++
	if st := s.waitReload(t, n, "path added"); !st.OK || st.Trigger != "file" || !strings.Contains(strings.Join(st.Applied, " "), "paths.overrides[0].publishKey") {
		t.Fatalf("reload 1: %+v", st)
	}
	refused := startProc(t, "ffmpeg", publisherArgs(s.rtmpURL("live/b"), "-t", "3")...)
	if code, ok := refused.wait(20 * time.Second); !ok || code == 0 {
		t.Errorf("a publisher without live/b's new key: status %d (finished %v), want refused", code, ok)
	}

	// 2. A path setting changed (SIGHUP): readers of every path need a key.
	cfg = strings.Replace(cfg, "    gracePeriod: 2s\n", "    gracePeriod: 2s\n    readKey: "+readKey+"\n", 1)
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGHUP)
	n++
	if st := s.waitReload(t, n, "readKey"); !st.OK {
		t.Fatalf("reload 2: %+v", st)
	}
	if code := httpStatus(t, s.flvURL("live/a")); code != http.StatusUnauthorized {
		t.Errorf("a new reader without the new readKey: %d, want 401", code)
	}
	if code := httpStatus(t, s.flvURL("live/a")+"?key="+readKey); code != http.StatusOK {
		t.Errorf("a new reader with the new readKey: %d, want 200", code)
	}

	// 3. The ladder changed (the API): the watch page offers the new rung.
	watch := "http://" + s.httpAddr + "/watch/live/a?key=" + readKey
	if _, page := httpGet(t, watch); !strings.Contains(string(page), `"180p"`) {
		t.Errorf("the watch page before the ladder change lacks the 180p rung")
	}
	cfg = strings.Replace(cfg, "{name: 180p, height: 180,", "{name: 120p, height: 120,", 1)
	os.WriteFile(file, []byte(cfg), 0o600) //nolint:errcheck // checked by the reload
	var st reloadStatus
	if code := apiDo(t, "POST", "http://"+s.httpAddr+"/api/v1/config/reload", "", "", &st); code != 200 || !st.OK || st.Trigger != "api" {
		t.Fatalf("POST /api/v1/config/reload: %d %+v", code, st)
	}
	n = st.Successes + st.Failures
	// The reloads so far, each logged at info. The watcher may have
	// applied this file too, between its write and the API's call (the
	// debounce of reload 2's write ending then): that one counts here.
	infoReloads := st.Successes
	if _, page := httpGet(t, watch); !strings.Contains(string(page), `"120p"`) || strings.Contains(string(page), `"180p"`) {
		t.Errorf("the watch page after the ladder change does not offer 120p instead of 180p")
	}

	// 4. The log level raised to warn, and a restart-only key changed: it
	// is reported and not applied (the RTMP listener stays).
	cfg = strings.Replace(cfg, "level: debug", "level: warn", 1)
	cfg = strings.Replace(cfg, "rtmp:\n  address: ", "rtmp:\n  handshakeTimeout: 7s\n  address: ", 1)
	saveLikeAnEditor(t, file, cfg)
	n++
	st = s.waitReload(t, n, "log level")
	if !st.OK || strings.Join(st.Applied, ",") != "log.level" || strings.Join(st.NeedsRestart, ",") != "rtmp.handshakeTimeout" {
		t.Errorf("reload 4: %+v, want log.level applied and rtmp.handshakeTimeout needing a restart", st)
	}
	good := cfg

	// Bad files: garbage, a half-written file, the file deleted.
	for _, bad := range []struct {
		name  string
		write func()
	}{
		{"garbage", func() { os.WriteFile(file, []byte("\x00\xff{{{ not yaml: ["), 0o600) }},           //nolint:errcheck
		{"half-written", func() { os.WriteFile(file, []byte(good[:len(good)*2/3]+"\n  wat"), 0o600) }}, //nolint:errcheck
		{"deleted", func() { os.Remove(file) }},                                                        //nolint:errcheck
	} {
		bad.write()
		n++
		st = s.waitReload(t, n, bad.name)
		if st.OK || st.Error == "" {
			t.Errorf("%s: %+v, want refused with an error", bad.name, st)
		}
	}
	for _, r := range readers {
		if r.exited() {
			t.Errorf("the reader of %s ended before the last reload: the test proves nothing for it (make secs longer)", r.url)
		}
	}
	_, metrics := httpGet(t, "http://"+s.httpAddr+"/metrics")
	for _, want := range []string{"streamhub_config_reload_success 0", `streamhub_config_reloads_total{result="error"} 3`,
		fmt.Sprintf(`streamhub_config_reloads_total{result="ok"} %d`, infoReloads+1)} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The last good config runs: the readKey is still asked.
	if code := httpStatus(t, s.flvURL("live/a")); code != http.StatusUnauthorized {
		t.Errorf("after the bad files, a reader without the readKey: %d, want 401", code)
	}

	for _, r := range readers {
		r.checkNoGap(t, secs)
	}
	if pub.exited() {
		t.Errorf("the publisher exited: %s", tail(pub.stderr.String(), 10))
	}

	// The file back: applied again.
	saveLikeAnEditor(t, file, strings.Replace(good, "gracePeriod: 2s", "gracePeriod: 3s", 1))
	n++
	if st = s.waitReload(t, n, "the file back"); !st.OK {
		t.Errorf("the good file back: %+v", st)
	}
	log := s.stderr.String()
	if c := strings.Count(log, "config reloaded"); c != infoReloads {
		// Reloads 1-3 log at info; from reload 4 the level is warn.
		t.Errorf("%d 'config reloaded' lines at info, want %d (the level warn applies from the 4th reload)", c, infoReloads)
	}
	for _, want := range []string{"needs restart: rtmp.handshakeTimeout", "config reload refused"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}

// auth.hookURL set by a reload: the next reader is asked about and refused
// by the hook; removed again, the next reader is let in without a call.
func TestHotReloadHook(t *testing.T) {
	requireTool(t, "ffmpeg")
	var calls atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer hook.Close()
	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/h"))
	waitLive(t, s, "live/h", pub)
	base := mustRead(t, s.conf)

	saveLikeAnEditor(t, s.conf, base+"auth:\n  hookURL: "+hook.URL+"\n")
	if st := s.waitReload(t, 1, "hook set"); !st.OK || strings.Join(st.Applied, ",") != "auth.hookURL" {
		t.Fatalf("reload: %+v", st)
	}
	if code := httpStatus(t, s.flvURL("live/h")); code != http.StatusUnauthorized || calls.Load() == 0 {
		t.Errorf("a reader with the hook set: %d after %d hook calls, want 401 from the hook", code, calls.Load())
	}
	saveLikeAnEditor(t, s.conf, base)
	if st := s.waitReload(t, 2, "hook removed"); !st.OK {
		t.Fatalf("reload: %+v", st)
	}
	n := calls.Load()
	if code := httpStatus(t, s.flvURL("live/h")); code != http.StatusOK || calls.Load() != n {
		t.Errorf("a reader with the hook removed: %d, %d hook calls, want 200 and none", code, calls.Load()-n)
	}
}
