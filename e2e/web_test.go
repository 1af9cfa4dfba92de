//go:build e2e && unix

package e2e

// TestWebBrowser drives streamhub's own web pages (web/) in headless
// Chromium (e2e/browser/web.mjs through playwright-core): the home page
// picks up a stream that goes live, the watch page plays it in HLS and in
// HTTP-FLV mode and switches rung, two pages chat and a message with a
// script tag stays text, and the broadcast page shows what a (faked)
// stream API answers.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// webSample is a sample of the watch page's <video>.
type webSample struct {
	Frames  int     `json:"frames"`
	CT      float64 `json:"ct"`
	W       int     `json:"w"`
	H       int     `json:"h"`
	Latency string  `json:"latency"`
	Search  string  `json:"search"`
}

// webPlay is web.mjs's playing(): the video started, then two samples.
type webPlay struct {
	Started   bool       `json:"started"`
	StartupMs int        `json:"startupMs"`
	First     webSample  `json:"first"`
	Last      *webSample `json:"last"`
}

// webSwitch is web.mjs's waitHeight(): the picture reached a height.
type webSwitch struct {
	Reached bool       `json:"reached"`
	First   *webSample `json:"first"`
	Last    *webSample `json:"last"`
}

type webChatPage struct {
	Lines   []string `json:"lines"`
	Names   []string `json:"names"`
	Scripts int      `json:"scripts"`
	Pwned   string   `json:"pwned"`
}

type webBroadcast struct {
	ResultShown bool    `json:"resultShown"`
	Error       string  `json:"error"`
	Server      string  `json:"server"`
	Key         string  `json:"key"`
	RTMPURL     string  `json:"rtmpURL"`
	SRT         string  `json:"srt"`
	WatchHref   *string `json:"watchHref"`
	WatchText   string  `json:"watchText"`
	Pwned       string  `json:"pwned"`
}

// webResult is the JSON line printed by web.mjs.
type webResult struct {
	OK   bool `json:"ok"`
	Home struct {
		EmptyShown      bool   `json:"emptyShown"`
		Listed          bool   `json:"listed"`
		ListedAfterMs   int    `json:"listedAfterMs"`
		Href            string `json:"href"`
		Text            string `json:"text"`
		EmptyShownAfter bool   `json:"emptyShownAfter"`
	} `json:"home"`
	HLS struct {
		DefaultMode string   `json:"defaultMode"`
		Play        webPlay  `json:"play"`
		HLSLatency  *float64 `json:"hlsLatency"`
		Options     []struct {
			Value string `json:"value"`
			Text  string `json:"text"`
		} `json:"options"`
		Switch *webSwitch `json:"switch"`
	} `json:"hls"`
	FLV struct {
		Rung    webPlay   `json:"rung"`
		Mode    string    `json:"mode"`
		Options []string  `json:"options"`
		Source  webSwitch `json:"source"`
	} `json:"flv"`
	Chat struct {
		Connected []bool      `json:"connected"`
		BGotA     bool        `json:"bGotA"`
		AGotEvil  bool        `json:"aGotEvil"`
		A         webChatPage `json:"a"`
		B         webChatPage `json:"b"`
	} `json:"chat"`
	HomeAfter struct {
		Paths []string `json:"paths"`
		Text  string   `json:"text"`
	} `json:"homeAfter"`
	Broadcast struct {
		Created         webBroadcast `json:"created"`
		Refused         webBroadcast `json:"refused"`
		BadLink         webBroadcast `json:"badLink"`
		Real            webBroadcast `json:"real"`
		PwnedAfterClick string       `json:"pwnedAfterClick"`
		Requests        []struct {
			Method string `json:"method"`
			Auth   string `json:"auth"`
			Body   string `json:"body"`
		} `json:"requests"`
	} `json:"broadcast"`
	Errors  []string `json:"errors"`
	Console []string `json:"console"`
}

// advanced reports whether frames and time moved between a play's samples.
func (p webPlay) advanced() bool {
	return p.Started && p.Last != nil && p.Last.Frames > p.First.Frames && p.Last.CT > p.First.CT
}

func (s webSwitch) advanced() bool {
	return s.Reached && s.First != nil && s.Last != nil && s.Last.Frames > s.First.Frames && s.Last.CT > s.First.CT
}

func TestWebBrowser(t *testing.T) {
	browserDir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	requireBrowser(t, browserDir)
	for _, f := range []string{"hls.min.js", "mpegts.js"} {
		if _, err := os.Stat(filepath.Join("..", "web", "static", "vendor", f)); err != nil {
			t.Fatalf("web/static/vendor/%s is missing, so the binary has no player library: run web/vendor.sh (scripts/test.sh and scripts/run.sh do), then the test again", f)
		}
	}
	// Not parallel: Chromium and the ladder's FFmpeg need the CPU.
	// The HLS muxers must not idle out in this test: one started again
	// numbers its segments from 0 again, behind the other variants, and
	// hls.js cannot switch to it (a 400 "more than two segments ahead").
	conf := strings.Replace(ladderConfig("always"), "hls:\n  idleTimeout: 2s", "hls:\n  idleTimeout: 120s", 1)
	if conf == ladderConfig("always") {
		t.Fatal("ladderConfig has no hls idleTimeout to replace")
	}
	s := startServer(t, conf)

	// The binary embeds the player libraries: no CDN.
	for _, f := range []string{"hls.min.js", "mpegts.js"} {
		code, body := httpGet(t, "http://"+s.httpAddr+"/static/vendor/"+f)
		if code != 200 || len(body) < 100_000 {
			t.Fatalf("GET /static/vendor/%s: status %d, %d bytes; want the embedded library", f, code, len(body))
		}
	}

	start := time.Now()
	node := startProc(t, "node", filepath.Join(browserDir, "web.mjs"), "http://"+s.httpAddr,
		"--path", "live/test", "--rung", "240p", "--timeout", "150")
	stopNode := func() {
		// SIGTERM the group first: web.mjs then closes Chromium, which
		// playwright runs in a process group of its own.
		syscall.Kill(-node.cmd.Process.Pid, syscall.SIGTERM) //nolint:errcheck // it may just have exited
		if _, ok := node.wait(10 * time.Second); !ok {
			node.kill()
		}
	}
	// Publish only once the home page is open: it must pick the stream up.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(node.stdout.String(), `"event":"home"`) {
		if node.exited() || time.Now().After(deadline) {
			stopNode()
			t.Fatalf("web.mjs did not open the home page within 30 s; stdout:\n%s\nstderr:\n%s",
				tail(node.stdout.String(), 10), tail(node.stderr.String(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	pub := startLadderPublisher(t, s, "live/test")
	waitLive(t, s, "live/test", pub)
	// Start the three variants' HLS muxers together, so that their segment
	// numbers line up, before the page plays.
	for _, v := range []string{"live/test", "live/test/240p", "live/test/160p"} {
		waitLive(t, s, v, pub)
		httpGet(t, s.hlsURL(v, "stream.m3u8"))
	}
	defer func() {
		if t.Failed() {
			t.Logf("publisher log:\n%s", tail(pub.stderr.String(), 20))
		}
	}()

	code, ok := node.wait(170 * time.Second)
	if !ok {
		stopNode()
		code = node.cmd.ProcessState.ExitCode()
	}
	stdout, stderr := node.stdout.String(), node.stderr.String()
	t.Logf("web.mjs ran %s, exit status %d", time.Since(start).Round(time.Millisecond), code)
	if stderr != "" {
		t.Logf("web.mjs stderr:\n%s", tail(stderr, 30))
	}
	out := strings.TrimSpace(stdout)
	var res webResult
	if err := json.Unmarshal([]byte(out[strings.LastIndexByte(out, '\n')+1:]), &res); err != nil {
		t.Fatalf("web.mjs (exit status %d): %v\nstdout:\n%s", code, err, tail(stdout, 20))
	}
	t.Logf("result: %s", out[strings.LastIndexByte(out, '\n')+1:])
	if !res.OK || code != 0 || len(res.Errors) > 0 {
		t.Errorf("web.mjs: ok %v, exit status %d, errors %q", res.OK, code, res.Errors)
	}
	for _, c := range res.Console {
		if strings.Contains(c, "Content Security Policy") || strings.Contains(c, "Refused to") {
			t.Errorf("browser console: %s", c)
		}
	}

	// Home page.
	h := res.Home
	if !h.EmptyShown || !h.Listed || h.EmptyShownAfter || h.Href != "/watch/live/test" || !strings.Contains(h.Text, "640×360") {
		t.Errorf("home page: %+v; want the empty note at first, then live/test listed (by the refresh) with 640×360 and a watch link", h)
	}
	for _, p := range res.HomeAfter.Paths {
		if p != "live/test" {
			t.Errorf("home page lists %q; want live/test only (rungs are left out)", p)
		}
	}

	// HLS mode, from the picker: the server's default for this H.264
	// stream is WebRTC (TestWatchPageWebRTC plays it).
	hl := res.HLS
	if hl.DefaultMode != "webrtc" {
		t.Errorf("watch page's default mode %q; want webrtc (the server has WebRTC, the stream is H.264)", hl.DefaultMode)
	}
	if !hl.Play.advanced() || hl.Play.Last.H != 360 {
		t.Errorf("HLS mode: %+v; want frames and time advancing at 640x360", hl.Play)
	}
	if hl.Play.Last != nil && (hl.HLSLatency == nil || !strings.HasPrefix(hl.Play.Last.Latency, "latency ") || strings.Contains(hl.Play.Last.Latency, "–")) {
		t.Errorf("HLS latency readout %q (hls.latency %v); want a figure", hl.Play.Last.Latency, hl.HLSLatency)
	}
	var opts []string
	for _, o := range hl.Options {
		opts = append(opts, o.Text)
	}
	if len(hl.Options) != 4 || hl.Options[0].Text != "Auto" {
		t.Errorf("HLS rendition picker %q; want Auto, the source, 240p and 160p", opts)
	}
	if hl.Switch == nil || !hl.Switch.advanced() {
		t.Errorf("HLS picker to 240p: %+v; want 240-line pictures with frames advancing", hl.Switch)
	} else if !strings.Contains(hl.Switch.Last.Search, "rung=240p") {
		t.Errorf("after picking 240p the query string is %q; want rung=240p", hl.Switch.Last.Search)
	}

	// FLV mode.
	f := res.FLV
	if f.Mode != "flv" || !f.Rung.advanced() || f.Rung.Last.H != 240 {
		t.Errorf("?mode=flv&rung=240p: mode %q, %+v; want the 240p rung playing", f.Mode, f.Rung)
	}
	if f.Rung.Last != nil && strings.Contains(f.Rung.Last.Latency, "–") {
		t.Errorf("FLV latency readout %q; want a figure", f.Rung.Last.Latency)
	}
	// The server lists the ladder's rungs (web.Config.Renditions, wired in
	// main): the source, 240p and 160p.
	if strings.Join(f.Options, ",") != ",240p,160p" {
		t.Errorf("FLV rendition picker %q; want the source, 240p and 160p", f.Options)
	}
	if !f.Source.advanced() || f.Source.Last.H != 360 || strings.Contains(f.Source.Last.Search, "rung=") {
		t.Errorf("FLV picker to the source: %+v; want 360-line pictures advancing and no rung in the query", f.Source)
	}

	// Chat.
	c := res.Chat
	if len(c.Connected) != 2 || !c.Connected[0] || !c.Connected[1] || !c.BGotA || !c.AGotEvil {
		t.Errorf("chat: connected %v, B got A's message %v, A got B's %v", c.Connected, c.BGotA, c.AGotEvil)
	}
	const evil = "<script>window.__pwned=1</script>"
	for name, p := range map[string]webChatPage{"A": c.A, "B": c.B} {
		if p.Pwned != "undefined" || p.Scripts != 0 || !strings.Contains(strings.Join(p.Lines, "\n"), evil) {
			t.Errorf("chat page %s: %+v; want the script message as text, no script element, window.__pwned undefined", name, p)
		}
		if strings.Join(p.Names, ",") != "alice,bob" {
			t.Errorf("chat page %s shows names %q, want alice,bob", name, p.Names)
		}
	}

	// Broadcast page.
	b := res.Broadcast
	if cr := b.Created; !cr.ResultShown || cr.Server != "rtmp://h/live" || cr.Key != "sk_secret" ||
		cr.SRT != "srt://h:8890?streamid=publish:live/sk_secret" || cr.WatchHref == nil || *cr.WatchHref != "http://h:8080/watch/live/pub123" {
		t.Errorf("broadcast page after a 201: %+v", cr)
	}
	if rf := b.Refused; rf.ResultShown || !strings.Contains(rf.Error, "HTTP 401") || !strings.Contains(rf.Error, "admin token required (api.adminToken)") {
		t.Errorf("broadcast page after a 401: %+v; want the API's error shown", rf)
	}
	if bl := b.BadLink; bl.WatchHref != nil || bl.Server != "<b>x</b>" || b.PwnedAfterClick != "undefined" {
		t.Errorf("broadcast page with a javascript: watch link: %+v, window.__pwned %s; want no href and text as given", bl, b.PwnedAfterClick)
	}
	if len(b.Requests) != 3 || b.Requests[0].Method != "POST" || b.Requests[0].Auth != "Bearer admin-secret" ||
		b.Requests[0].Body != `{"name":"my show"}` || b.Requests[1].Auth != "" {
		t.Errorf("requests to /api/v1/streams: %+v; want POST {\"name\":...} with the token as Bearer only when given", b.Requests)
	}

	// The broadcast page against the real API: ffmpeg publishes with the
	// key it shows, and the stream is live at the watch link's path.
	real := b.Real
	if !real.ResultShown || !strings.HasPrefix(real.Key, "sk_") || real.RTMPURL != "rtmp://"+s.rtmpAddr+"/live/"+real.Key ||
		real.WatchHref == nil || !strings.Contains(*real.WatchHref, "/watch/live/") {
		t.Fatalf("broadcast page with the real API: %+v", real)
	}
	path := (*real.WatchHref)[strings.Index(*real.WatchHref, "/watch/")+len("/watch/"):]
	pub2 := startPublisher(t, real.RTMPURL)
	waitLive(t, s, path, pub2)
}
