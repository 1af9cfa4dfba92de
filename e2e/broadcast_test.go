//go:build e2e && unix

package e2e

// The broadcast page goes live from the browser: headless Chromium with
// fake media devices (e2e/browser/broadcast.mjs) creates a stream on the
// page, publishes the fake camera and microphone over WHIP, and the test
// reads the stream with ffmpeg over HTTP-FLV and LL-HLS, finds the session
// in the API and /metrics, and sees the page stop it cleanly.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// liveState is the go-live part of the broadcast page, as broadcast.mjs
// reads it.
type liveState struct {
	Phase    string `json:"phase"`
	Location string `json:"location"`
	Figures  struct {
		Kbps       int  `json:"kbps"`
		FramesSent int  `json:"framesSent"`
		Width      int  `json:"width"`
		Height     int  `json:"height"`
		Viewers    *int `json:"viewers"`
		Audio      bool `json:"audio"`
	} `json:"figures"`
	Events        []string `json:"events"`
	Status        string   `json:"status"`
	Error         string   `json:"error"`
	BitrateText   string   `json:"bitrateText"`
	ViewersText   string   `json:"viewersText"`
	ChatStatus    string   `json:"chatStatus"`
	ChatLines     []string `json:"chatLines"`
	PreviewLive   bool     `json:"previewLive"`
	PreviewTracks []string `json:"previewTracks"`
	PreviewWidth  int      `json:"previewWidth"`
	Path          string   `json:"path"`
	KeySet        bool     `json:"keySet"`
}

// broadcastResult is the JSON line printed by broadcast.mjs.
type broadcastResult struct {
	OK      bool `json:"ok"`
	Created struct {
		liveState
		OBSKey string `json:"obsKey"`
	} `json:"created"`
	Live struct {
		AfterMs    int        `json:"afterMs"`
		First      *liveState `json:"first"`
		Last       liveState  `json:"last"`
		MaxViewers int        `json:"maxViewers"`
		MaxKbps    int        `json:"maxKbps"`
	} `json:"live"`
	Busy    *liveState `json:"busy"`
	Stopped *liveState `json:"stopped"`
	Refused *liveState `json:"refused"`
	Kicked  *struct {
		liveState
		AfterMs int `json:"afterMs"`
	} `json:"kicked"`
	Errors  []string `json:"errors"`
	Console []string `json:"console"`
}

// probeStreams returns the streams ffprobe finds at url, by codec type.
func probeStreams(t *testing.T, url string) map[string]probedStream {
	t.Helper()
	return ffprobeStreams(t, url, false, "-rw_timeout", "10000000", "-show_entries", "stream=codec_type,codec_name,width,height", url)
}

func TestBroadcastPageGoesLive(t *testing.T) {
	browserDir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	requireBrowser(t, browserDir)
	requireTool(t, "ffprobe")
	s := startServer(t, "")
	stopFile := filepath.Join(t.TempDir(), "stop")

	start := time.Now()
	node := startProc(t, "node", filepath.Join(browserDir, "broadcast.mjs"), "http://"+s.httpAddr,
		"--stop-file", stopFile, "--size", "320x240", "--hold", "60", "--timeout", "110")
	stopNode := func() {
		syscall.Kill(-node.cmd.Process.Pid, syscall.SIGTERM) //nolint:errcheck // it may just have exited
		if _, ok := node.wait(10 * time.Second); !ok {
			node.kill()
		}
	}
	// event waits for broadcast.mjs's {"event":name,...} line.
	event := func(name string, timeout time.Duration) map[string]string {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			for _, l := range strings.Split(node.stdout.String(), "\n") {
				var ev map[string]string
				if json.Unmarshal([]byte(l), &ev) == nil && ev["event"] == name {
					return ev
				}
			}
			if node.exited() || time.Now().After(deadline) {
				stopNode()
				t.Fatalf("broadcast.mjs: no %q event within %s; stdout:\n%s\nstderr:\n%s", name, timeout,
					tail(node.stdout.String(), 10), tail(node.stderr.String(), 20))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	live := event("live", 45*time.Second)
	path := live["path"]
	if !strings.HasPrefix(path, "live/") || !strings.HasPrefix(live["location"], "/"+path+"/whip/") {
		stopNode()
		t.Fatalf("live event %v: want a path live/<id> and a session under /<path>/whip/", live)
	}
	t.Logf("the page went live on %s after %s", path, time.Since(start).Round(time.Millisecond))
	// The page is live once its connection is up; the hub has the stream
	// once every track sent a packet.
	waitLive(t, s, path, nil)

	// (a) ffmpeg decodes the stream over HTTP-FLV and LL-HLS (together,
	// while the page publishes). A WHIP publisher's audio is Opus; FLV and
	// HLS players get it as AAC, made by the Opus→AAC job.
	flvAudio := flvAudioCodec(t, s.flvURL(path))
	hlsStreams := probeStreams(t, s.hlsURL(path, "index.m3u8"))
	results := make(chan decoded, 2)
	go func() { results <- decode(t, s.flvURL(path), 4) }()
	go func() { results <- decode(t, s.hlsURL(path, "index.m3u8"), 4) }()
	dec := map[string]decoded{}
	for range 2 {
		d := <-results
		dec[strings.Fields(d.url)[0]] = d
	}

	// (b) The session in the API and in /metrics, with protocol webrtc.
	var sessions struct {
		Sessions []struct {
			Kind, Path, Protocol string
			Bytes                uint64
		}
	}
	code, body := httpGet(t, "http://"+s.httpAddr+"/api/v1/sessions")
	if err := json.Unmarshal(body, &sessions); code != 200 || err != nil {
		t.Errorf("GET /api/v1/sessions: status %d, %v:\n%s", code, err, body)
	}
	found := false
	for _, ss := range sessions.Sessions {
		if ss.Kind == "publisher" && ss.Path == path {
			found = true
			if ss.Protocol != "webrtc" || ss.Bytes == 0 {
				t.Errorf("publisher session of %s: %+v; want protocol webrtc with bytes in", path, ss)
			}
		}
	}
	if !found {
		t.Errorf("GET /api/v1/sessions lists no publisher on %s:\n%s", path, body)
	}
	code, body = httpGet(t, "http://"+s.httpAddr+"/metrics")
	up := fmt.Sprintf(`streamhub_stream_publisher_up{path=%q,protocol="webrtc"} 1`, path)
	if code != 200 || !strings.Contains(string(body), up) {
		t.Errorf("/metrics (status %d) lacks %s; publisher lines:\n%s", code, up, grepLines(string(body), "streamhub_stream_publisher_up"))
	}
	if l := grepLines(string(body), fmt.Sprintf(`streamhub_stream_bytes_in_total{path=%q}`, path)); l == "" || strings.HasSuffix(l, " 0") {
		t.Errorf("/metrics: bytes in of %s: %q; want more than 0", path, l)
	}

	// The page's figures had time to count the readers: stop it now.
	if err := os.WriteFile(stopFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	event("stopped", 30*time.Second)
	// Stop ended the session (DELETE) at once: no publisher left.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body = httpGet(t, "http://"+s.httpAddr+"/api/v1/sessions")
		if !strings.Contains(string(body), `"path":"`+path+`"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("5 s after Stop the session is still listed:\n%s", body)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.waitLog(t, 5*time.Second, "ended by the client (DELETE)")

	// Live again: kicked on the server, the page must say so.
	event("live2", 45*time.Second)
	kickPublisher(t, s, path)

	code, ok := node.wait(60 * time.Second)
	if !ok {
		stopNode()
		code = node.cmd.ProcessState.ExitCode()
	}
	out := strings.TrimSpace(node.stdout.String())
	last := out[strings.LastIndexByte(out, '\n')+1:]
	t.Logf("broadcast.mjs ran %s, exit status %d: %s", time.Since(start).Round(time.Millisecond), code, last)
	if e := node.stderr.String(); e != "" {
		t.Logf("broadcast.mjs stderr:\n%s", tail(e, 30))
	}
	var res broadcastResult
	if err := json.Unmarshal([]byte(last), &res); err != nil {
		t.Fatalf("broadcast.mjs (exit status %d): no result line: %v", code, err)
	}
	if !res.OK || code != 0 || len(res.Errors) > 0 {
		t.Errorf("broadcast.mjs: ok %v, exit status %d, errors %q", res.OK, code, res.Errors)
	}
	for _, c := range res.Console {
		if strings.Contains(c, "Content Security Policy") || strings.Contains(c, "Refused to") {
			t.Errorf("browser console: %s", c)
		}
	}

	// The decodes: video frames and AAC audio over both.
	flvD, hlsD := dec[s.flvURL(path)], dec[s.hlsURL(path, "index.m3u8")]
	if v := hlsStreams["video"]; v.CodecName != "h264" || v.Width != 320 || v.Height != 240 {
		t.Errorf("LL-HLS video stream %+v; want h264 320x240 (the page's size)", v)
	}
	const minAudio = 50 // 20 ms Opus or 21 ms AAC frames: 4 s make about 190
	if flvAudio != "aac" {
		t.Errorf("the FLV's audio is %q; want aac (the page captured the fake microphone's Opus)", flvAudio)
	}
	if a := hlsStreams["audio"]; a.CodecName != "aac" {
		t.Errorf("LL-HLS's audio is %+v; want aac", a)
	}
	flvD.check(t, 40, minAudio)
	hlsD.check(t, 40, minAudio)
	t.Logf("decoded: FLV (audio %q) %d video, %d audio frames; LL-HLS (audio %q) %d video, %d audio frames",
		flvAudio, flvD.video, flvD.audio, hlsStreams["audio"].CodecName, hlsD.video, hlsD.audio)

	// The page: created stream in the form, live with figures, the chat.
	if !strings.HasPrefix(res.Created.OBSKey, "sk_") || res.Created.Path != path || !res.Created.KeySet {
		t.Errorf("after Create the form has path %q (key set %v); want %s and the key", res.Created.Path, res.Created.KeySet, path)
	}
	if f := res.Live.First; f == nil {
		t.Errorf("the page never showed a bitrate with the chat connected: %+v", res.Live.Last)
	} else if !f.PreviewLive || f.PreviewWidth != 320 || !f.Figures.Audio || !strings.HasPrefix(f.BitrateText, "sending ") {
		t.Errorf("live page: %+v; want the 320-wide preview, audio captured, the bitrate shown", *f)
	}
	l := res.Live.Last
	if l.Phase != "live" || l.Figures.Width != 320 || l.Figures.Height != 240 || l.Figures.FramesSent < 40 || res.Live.MaxKbps <= 0 {
		t.Errorf("live page at the end: %+v (max %d kb/s); want 320x240 frames sent and a bitrate", l, res.Live.MaxKbps)
	}
	if res.Live.MaxViewers < 1 {
		t.Errorf("the page counted at most %d viewers while ffmpeg read the stream (shown: %q)", res.Live.MaxViewers, l.ViewersText)
	}
	if !strings.Contains(strings.Join(l.ChatLines, "\n"), "hello from the broadcast page") {
		t.Errorf("chat beside the video: status %q, lines %q; want the streamer's message", l.ChatStatus, l.ChatLines)
	}
	if b := res.Busy; b == nil || b.Phase == "live" || !strings.Contains(b.Error, "HTTP 409") || !strings.Contains(b.Error, "busy") {
		t.Errorf("second page on the same path: %+v; want the server's 409 shown", b)
	} else if !b.PreviewLive || !strings.Contains(strings.Join(b.PreviewTracks, ","), "video screen") {
		t.Errorf("second page's capture: tracks %q; want the (fake) screen", b.PreviewTracks)
	}
	if st := res.Stopped; st == nil || st.Location != "" || st.PreviewLive || !strings.Contains(strings.Join(st.Events, "\n"), "DELETE 200") {
		t.Errorf("after Stop: %+v; want DELETE 200, no session, the capture ended", st)
	}
	if r := res.Refused; r == nil || r.Phase == "live" || !strings.Contains(r.Error, "HTTP 401") || !strings.Contains(r.Error, "key") {
		t.Errorf("a wrong key: %+v; want the server's 401 and its reason shown", r)
	}
	if k := res.Kicked; k == nil || !strings.Contains(k.Error, "server ended the session") || k.PreviewLive {
		t.Errorf("kicked on the server: %+v; want the page to stop and say so", k)
	} else {
		t.Logf("the page saw the kick after %d ms", k.AfterMs)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// flvAudioCodec reads url's FLV with the project's parser until its first
// audio tag and returns the audio codec: "aac" (sound format 10), the
// FourCC of an Enhanced FLV audio tag ("Opus"), "format N" for another, or
// "" when 90 video tags came without audio.
func flvAudioCodec(t *testing.T, url string) string {
	t.Helper()
	fr, done := getFLV(t, url, 15*time.Second)
	defer done()
	for video := 0; video < 90; {
		tag, err := fr.Read()
		if err != nil {
			t.Fatalf("%s: reading tags: %v", url, err)
		}
		switch {
		case tag.Type == tagVideo:
			video++
		case tag.Type == tagAudio && len(tag.Body) > 0:
			switch f := tag.Body[0] >> 4; {
			case f == 10:
				return "aac"
			case f == 9 && len(tag.Body) >= 5: // Enhanced RTMP: ExHeader, then the FourCC
				return string(tag.Body[1:5])
			default:
				return fmt.Sprintf("format %d", f)
			}
		}
	}
	return ""
}

// kickPublisher waits for path's publisher in /api/v1/sessions and kicks
// it (DELETE /api/v1/sessions/<id>).
func kickPublisher(t *testing.T, s *streamhub, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var list struct {
			Sessions []struct{ ID, Kind, Path string }
		}
		_, body := httpGet(t, "http://"+s.httpAddr+"/api/v1/sessions")
		json.Unmarshal(body, &list) //nolint:errcheck // an empty list is retried
		for _, ss := range list.Sessions {
			if ss.Kind == "publisher" && ss.Path == path {
				req, _ := http.NewRequest(http.MethodDelete, "http://"+s.httpAddr+"/api/v1/sessions/"+ss.ID, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("DELETE /api/v1/sessions/%s: %v", ss.ID, err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("DELETE /api/v1/sessions/%s: %s", ss.ID, resp.Status)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no publisher on %s in /api/v1/sessions after 10 s:\n%s", path, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
