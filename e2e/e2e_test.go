//go:build e2e

package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPublishAndPlay publishes H264+AAC with ffmpeg and reads it back with
// ffmpeg over HTTP-FLV and RTMP, decoding every frame.
func TestPublishAndPlay(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/test"))
	waitLive(t, s, "live/test", pub)

	results := make(chan decoded, 2)
	for _, u := range []string{s.flvURL("live/test"), s.rtmpURL("live/test")} {
		go func() { results <- decode(t, u, 3) }()
	}
	for range 2 {
		// 3 s at 30 fps is 90 frames; AAC at 44.1 kHz is ~43 frames/s.
		(<-results).check(t, 60, 60)
	}
	if pub.exited() {
		t.Errorf("publisher exited with status %d while being read; stderr:\n%s", pub.cmd.ProcessState.ExitCode(), pub.stderr.String())
	}
}

// TestTimestampsPast24Bits publishes with timestamps past 2^24 ms (the
// RTMP extended-timestamp range) and checks that the stream still plays
// after the publisher has run 10 s.
func TestTimestampsPast24Bits(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	// 20000 s = 2e7 ms > 0xFFFFFF ms: every RTMP message needs the
	// extended timestamp field.
	pub := startPublisher(t, s.rtmpURL("live/ts"), "-output_ts_offset", "20000")
	waitLive(t, s, "live/ts", pub)

	// The offset must really be on the wire, or this test proves nothing.
	r := openFLV(t, s.flvURL("live/ts"))
	tags := r.waitTags(t, 10*time.Second, "video frame", func(tags []flvTag) bool { return countVideo(tags) > 0 })
	for _, tg := range tags {
		if tg.typ == tagVideo && !tg.cfg && tg.ts <= 0xFFFFFF {
			t.Fatalf("first video tag has timestamp %d ms, want > %d (is -output_ts_offset applied?)", tg.ts, 0xFFFFFF)
		}
	}
	r.close()

	time.Sleep(time.Until(pub.started.Add(10 * time.Second)))
	if pub.exited() {
		t.Fatalf("publisher exited with status %d; stderr:\n%s", pub.cmd.ProcessState.ExitCode(), pub.stderr.String())
	}
	results := make(chan decoded, 2)
	for _, u := range []string{s.flvURL("live/ts"), s.rtmpURL("live/ts")} {
		go func() { results <- decode(t, u, 2) }()
	}
	for range 2 {
		(<-results).check(t, 40, 40)
	}
}

// TestFirstFrameIsKeyframeFast checks that a new reader's first picture is
// a keyframe and arrives within 300 ms, mid-GOP on a 2 s GOP, over HTTP-FLV
// and RTMP. Joins take a few ms; 300 ms leaves room for a loaded machine.
func TestFirstFrameIsKeyframeFast(t *testing.T) {
	t.Parallel()
	const bound = 300 * time.Millisecond
	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/test"))
	waitLive(t, s, "live/test", pub)
	time.Sleep(3 * time.Second) // about 1 s into the second GOP

	for i := range 3 {
		tag, sawConfig, flvTook := firstFLVFrame(t, s.flvURL("live/test"))
		if !sawConfig {
			t.Errorf("HTTP-FLV join %d: no AVC sequence header before the first picture", i)
		}
		if !tag.IsVideoKeyFrame() {
			t.Errorf("HTTP-FLV join %d: first picture is not a keyframe (frame type %d)", i, tag.Body[0]>>4)
		}
		if flvTook > bound {
			t.Errorf("HTTP-FLV join %d: first picture after %s, want <= %s", i, flvTook.Round(time.Millisecond), bound)
		}
		random, rtmpTook := firstRTMPFrame(t, s.rtmpURL("live/test"))
		if !random {
			t.Errorf("RTMP join %d: first access unit has no IDR", i)
		}
		if rtmpTook > bound {
			t.Errorf("RTMP join %d: first access unit after %s, want <= %s", i, rtmpTook.Round(time.Millisecond), bound)
		}
		t.Logf("join %d: HTTP-FLV and RTMP first keyframe in %s and %s", i, flvTook.Round(time.Millisecond), rtmpTook.Round(time.Millisecond))
		time.Sleep(400 * time.Millisecond) // another place in the GOP
	}
}

// TestHTTPBehaviour checks methods, status codes and headers of /PATH.flv.
func TestHTTPBehaviour(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/test"))
	waitLive(t, s, "live/test", pub)
	base := "http://" + s.httpAddr

	t.Run("HEAD", func(t *testing.T) {
		resp, err := http.Head(base + "/live/test.flv")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %s, want 200", resp.Status)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "video/x-flv" {
			t.Errorf("Content-Type %q, want video/x-flv", ct)
		}
	})

	t.Run("OPTIONS", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodOptions, base+"/live/test.flv", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("status %s, want 204", resp.Status)
		}
		if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "*" {
			t.Errorf("Access-Control-Allow-Origin %q, want *", v)
		}
	})

	t.Run("POST", func(t *testing.T) {
		resp, err := http.Post(base+"/live/test.flv", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(resp.Header.Get("Allow"), "GET") {
			t.Errorf("status %s, Allow %q; want 405 and an Allow header with GET", resp.Status, resp.Header.Get("Allow"))
		}
	})

	t.Run("unknown path", func(t *testing.T) {
		resp, err := http.Get(base + "/live/nope.flv")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %s, want 404", resp.Status)
		}
		reason := strings.TrimSuffix(string(body), "\n")
		if reason == "" || strings.Contains(reason, "\n") || !strings.Contains(reason, "not found") {
			t.Errorf("body %q, want one line saying the stream is not found", body)
		}
	})

	t.Run("invalid path", func(t *testing.T) {
		// Sent raw: Go's client would not clean these, but be explicit.
		for _, target := range []string{"/live/../test.flv", "/live/te$t.flv", "/live/te%20st.flv", "/live//test.flv"} {
			resp, body := rawHTTP(t, s.httpAddr, http.MethodGet, target)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("GET %s: status %s, want 400 (body %q)", target, resp.Status, body)
				continue
			}
			if reason := strings.TrimSuffix(body, "\n"); !strings.Contains(reason, "invalid path") || strings.Contains(reason, "\n") {
				t.Errorf("GET %s: body %q, want one line naming the invalid path", target, body)
			}
		}
	})

	t.Run("GET stream", func(t *testing.T) {
		resp, err := http.Get(base + "/live/test.flv")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %s, want 200", resp.Status)
		}
		if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Errorf("Transfer-Encoding %q, want chunked", resp.TransferEncoding)
		}
		for k, want := range map[string]string{"Content-Type": "video/x-flv", "Access-Control-Allow-Origin": "*"} {
			if v := resp.Header.Get(k); v != want {
				t.Errorf("%s %q, want %q", k, v, want)
			}
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-cache") {
			t.Errorf("Cache-Control %q, want no-cache", cc)
		}
		fr, err := newFLVReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if !fr.HasVideo || !fr.HasAudio {
			t.Errorf("FLV header: video %v, audio %v; want both", fr.HasVideo, fr.HasAudio)
		}
		tag, err := fr.Read()
		if err != nil || tag.Type != tagScript {
			t.Errorf("first tag: type %d, err %v; want onMetaData (type %d)", tag.Type, err, tagScript)
		}
	})
}

// TestPublishRefused checks that a second publisher on a live path, a
// publisher on an invalid path and a publisher without the path's key are
// refused, and that the right key is accepted.
func TestPublishRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, "paths:\n  overrides:\n    - match: \"secure/*\"\n      publishKey: \"s3cret\"\n")
	first := startPublisher(t, s.rtmpURL("live/test"))
	waitLive(t, s, "live/test", first)

	// Each refused publisher would run 6 s and exit 0 if it were accepted.
	refused := map[string]*proc{
		"second publisher": startPublisher(t, s.rtmpURL("live/test"), "-t", "6"),
		"invalid path":     startPublisher(t, s.rtmpURL("live/te$t"), "-t", "6"),
		"missing key":      startPublisher(t, s.rtmpURL("secure/cam"), "-t", "6"),
		"wrong key":        startPublisher(t, s.rtmpURL("secure/cam2?key=nope"), "-t", "6"),
	}
	keyed := startPublisher(t, s.rtmpURL("secure/cam3?key=s3cret"))

	// The first publisher keeps streaming while the others are refused.
	s.waitLog(t, 15*time.Second, "path is busy")
	decode(t, s.flvURL("live/test"), 2).check(t, 40, 40)

	for name, p := range refused {
		code, ok := p.wait(20 * time.Second)
		switch {
		case !ok:
			t.Errorf("%s: still publishing after 20s, want refused", name)
		case code == 0:
			t.Errorf("%s: ffmpeg exited with status 0, want a failure (refused)", name)
		}
	}
	for _, want := range []string{"path is busy", "invalid path", "wrong or missing key"} {
		if !strings.Contains(s.stderr.String(), want) {
			t.Errorf("server log does not say %q", want)
		}
	}
	if first.exited() {
		t.Errorf("first publisher exited with status %d; stderr:\n%s", first.cmd.ProcessState.ExitCode(), first.stderr.String())
	}

	waitLive(t, s, "secure/cam3", keyed)
	for _, path := range []string{"secure/cam", "secure/cam2"} {
		resp, err := http.Head(s.flvURL(path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("HEAD %s after a refused publish: %s, want 404", path, resp.Status)
		}
	}
}

// waitLog waits until the server log contains s.
func (s *streamhub) waitLog(t testing.TB, timeout time.Duration, want string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.stderr.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("server log does not say %q after %s", want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRepublishWithinGrace keeps an HTTP-FLV reader connected while the
// publisher stops and a new one starts within the grace period.
func TestRepublishWithinGrace(t *testing.T) {
	t.Parallel()
	s := startServer(t, "paths:\n  default:\n    gracePeriod: 8s\n")
	pub1 := startPublisher(t, s.rtmpURL("live/test"))
	waitLive(t, s, "live/test", pub1)

	r := openFLV(t, s.flvURL("live/test"))
	r.waitTags(t, 10*time.Second, "30 video frames", func(tags []flvTag) bool { return countVideo(tags) >= 30 })
	pub1.signal(syscall.SIGINT)
	if _, ok := pub1.wait(5 * time.Second); !ok {
		t.Fatal("first publisher did not stop on SIGINT")
	}
	s.waitLog(t, 5*time.Second, "stream waiting for a publisher")
	time.Sleep(500 * time.Millisecond)
	before, err := r.snapshot()
	if err != nil {
		t.Fatalf("reader disconnected when the publisher left: %v", err)
	}

	restart := time.Now()
	pub2 := startPublisher(t, s.rtmpURL("live/test"))
	tags := r.waitTags(t, 20*time.Second, "60 video frames after the republish", func(tags []flvTag) bool {
		return countVideo(tags[len(before):]) >= 60
	})
	if pub2.exited() {
		t.Fatalf("second publisher exited with status %d; stderr:\n%s", pub2.cmd.ProcessState.ExitCode(), pub2.stderr.String())
	}

	// Timestamps never go backwards, per track, across the republish.
	last := map[byte]uint32{}
	for i, tg := range tags {
		if prev, ok := last[tg.typ]; ok && tg.ts < prev {
			t.Errorf("tag %d (type %d, %s after the restart): timestamp %d ms after %d ms", i, tg.typ, tg.at.Sub(restart).Round(time.Millisecond), tg.ts, prev)
		}
		last[tg.typ] = tg.ts
	}
	// The first picture from the new publisher is a keyframe.
	for _, tg := range tags[len(before):] {
		if tg.typ == tagVideo && !tg.cfg {
			if !tg.key {
				t.Errorf("first picture after the republish (ts %d) is not a keyframe", tg.ts)
			}
			break
		}
	}
	t.Logf("%d tags before the republish (last ts %d), %d after (first ts %d)", len(before), before[len(before)-1].ts, len(tags)-len(before), tags[len(before)].ts)
}

// TestShutdownWithClients sends SIGTERM with a publisher and readers
// attached: the server must exit within 3 s with status 0 and end the
// readers' connections.
func TestShutdownWithClients(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/test"))
	waitLive(t, s, "live/test", pub)
	r := openFLV(t, s.flvURL("live/test"))
	player := startProc(t, "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", s.rtmpURL("live/test"), "-f", "null", "-")
	r.waitTags(t, 10*time.Second, "video frames", func(tags []flvTag) bool { return countVideo(tags) >= 10 })
	s.waitLog(t, 10*time.Second, "mode=play")
	if player.exited() {
		t.Fatalf("RTMP player exited early: %s", player.stderr.String())
	}

	took := s.stop(t)
	t.Logf("exited %s after SIGTERM", took.Round(time.Millisecond))
	select {
	case <-r.done:
	case <-time.After(2 * time.Second):
		t.Error("HTTP-FLV reader still connected 2s after the server exited")
	}
	if _, ok := player.wait(5 * time.Second); !ok {
		t.Error("RTMP player still running 5s after the server exited")
	}
}

// TestCLI checks config check, config default and version.
func TestCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}

	t.Run("bad value", func(t *testing.T) {
		f := write("bad.yml", "paths:\n  default:\n    join: sometimes\n")
		out, errOut, code := run(t, 10*time.Second, binPath, "config", "check", f)
		if code != 1 || !strings.Contains(out+errOut, "paths.default.join") {
			t.Errorf("config check: status %d, output %q; want 1 naming paths.default.join", code, out+errOut)
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		f := write("unknown.yml", "log:\n  level: info\n  colour: blue\n")
		out, errOut, code := run(t, 10*time.Second, binPath, "config", "check", f)
		if code != 1 || !strings.Contains(out+errOut, "line 3") || !strings.Contains(out+errOut, "colour") {
			t.Errorf("config check: status %d, output %q; want 1 naming line 3 and colour", code, out+errOut)
		}
	})
	t.Run("good", func(t *testing.T) {
		f, _, _ := writeConfig(t, "paths:\n  overrides:\n    - match: \"secure/*\"\n      publishKey: \"s3cret\"\n")
		out, errOut, code := run(t, 10*time.Second, binPath, "config", "check", f)
		if code != 0 || !strings.Contains(out, "OK") {
			t.Errorf("config check: status %d, stdout %q, stderr %q; want 0 and OK", code, out, errOut)
		}
	})
	t.Run("default", func(t *testing.T) {
		want, err := os.ReadFile("../config.yml")
		if err != nil {
			t.Fatal(err)
		}
		out, _, code := run(t, 10*time.Second, binPath, "config", "default")
		if code != 0 || !bytes.Equal([]byte(out), want) {
			t.Errorf("config default: status %d, %d bytes; want 0 and config.yml (%d bytes)", code, len(out), len(want))
		}
		// What it prints is a valid config.
		f := write("default.yml", out)
		if _, errOut, code := run(t, 10*time.Second, binPath, "config", "check", f); code != 0 {
			t.Errorf("config check of config default: status %d: %s", code, errOut)
		}
	})
	t.Run("version", func(t *testing.T) {
		out, _, code := run(t, 10*time.Second, binPath, "version")
		if code != 0 || !strings.HasPrefix(out, "streamhub") {
			t.Errorf("version: status %d, output %q; want 0 and streamhub ...", code, out)
		}
	})
}
