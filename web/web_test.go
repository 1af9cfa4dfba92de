package web

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// quietLog discards the handler's logs.
var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTestHub returns a hub with live/test (640x360 H264 and AAC) and its
// ladder rung live/test/240p published.
func newTestHub(t *testing.T) *server.Hub {
	t.Helper()
	hub := server.NewHub(server.HubConfig{Logger: quietLog})
	t.Cleanup(hub.Close)
	video := &media.Track{ID: 0, Codec: media.CodecH264, Width: 640, Height: 360}
	audio := &media.Track{ID: 1, Codec: media.CodecAAC, SampleRate: 44100, Channels: 2}
	p, err := hub.PublishTrusted("live/test", []*media.Track{video, audio}, server.PublishOptions{Protocol: "rtmp", Remote: "<b>1.2.3.4</b>"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	rung := &media.Track{ID: 0, Codec: media.CodecH264, Width: 426, Height: 240}
	r, err := hub.PublishTrusted("live/test/240p", []*media.Track{rung}, server.PublishOptions{Derived: true, Protocol: "transcode"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return hub
}

// get GETs url and returns the status and the body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func newTestServer(t *testing.T, hub *server.Hub, conf Config) (*Handler, *httptest.Server) {
	t.Helper()
	h := NewWithConfig(hub, conf, quietLog)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return h, srv
}

func TestHomeListsLiveStreams(t *testing.T) {
	_, srv := newTestServer(t, newTestHub(t), DefaultConfig())
	code, page := get(t, srv.URL+"/")
	if code != 200 {
		t.Fatalf("GET /: status %d", code)
	}
	for _, want := range []string{`href="/watch/live/test"`, "640×360", "watching", `src="/static/home.js?v=`} {
		if !strings.Contains(page, want) {
			t.Errorf("home page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "live/test/240p") {
		t.Errorf("home page lists the ladder rung live/test/240p:\n%s", page)
	}
	if strings.Contains(page, "<b>1.2.3.4</b>") {
		t.Error("home page shows the publisher address unescaped")
	}

	code, body := get(t, srv.URL+"/streams.json")
	var list struct {
		Streams []streamInfo `json:"streams"`
	}
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil {
		t.Fatalf("GET /streams.json: status %d, %v: %s", code, err, body)
	}
	want := streamInfo{Path: "live/test", Watch: "/watch/live/test", Live: true, Width: 640, Height: 360,
		Codecs: []string{media.CodecH264.String(), media.CodecAAC.String()}}
	if len(list.Streams) != 1 {
		t.Fatalf("streams.json lists %d streams, want 1 (no rung): %s", len(list.Streams), body)
	}
	got := list.Streams[0]
	got.UptimeSeconds = 0
	if got.Path != want.Path || got.Watch != want.Watch || !got.Live || got.Width != 640 || got.Height != 360 || !slices.Equal(got.Codecs, want.Codecs) {
		t.Errorf("streams.json: got %+v, want %+v", got, want)
	}
}

// TestTemplatesEscape renders every page with "<script>" in each string it
// shows, and asks the server for URLs with it.
func TestTemplatesEscape(t *testing.T) {
	const evil = `<script>alert(1)</script>`
	h := NewWithConfig(server.NewHub(server.HubConfig{Logger: quietLog}), DefaultConfig(), quietLog)
	defer h.Close()
	conf := watchConf{Path: "a" + evil, Mode: "flv", Rung: evil, Rungs: []string{evil}, HLS: evil, FLV: evil, Chat: evil,
		Libs: map[string]string{"hls": evil}, Missing: evil}
	for page, data := range map[string]any{
		"home.html":  homePage{Streams: []streamInfo{{Path: evil, Watch: evil, Width: 1, Height: 1}}, Host: evil},
		"watch.html": watchPage{Path: evil, Conf: conf, Missing: []string{evil}, Hint: evil},
		"error.html": errorPage{Title: evil, Message: evil},
		"broadcast.html": broadcastPage{API: evil, Conf: broadcastConf{API: evil, WebRTC: true, Chat: evil,
			ICEServers: []ICEServer{{URLs: []string{evil}, Username: evil, Credential: evil}}}},
	} {
		w := httptest.NewRecorder()
		h.render(w, 200, page, data)
		body := w.Body.String()
		if w.Code != 200 || strings.Contains(body, evil) || strings.Contains(body, "<script>alert") {
			t.Errorf("%s: status %d; %q appears unescaped:\n%s", page, w.Code, evil, body)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q does not restrict scripts", page, csp)
		}
	}
	// The watch page's settings survive the trip through the JSON script.
	w := httptest.NewRecorder()
	h.render(w, 200, "watch.html", watchPage{Path: "x", Conf: conf})
	m := regexp.MustCompile(`(?s)<script type="application/json" id="watch-conf">(.*?)</script>`).FindStringSubmatch(w.Body.String())
	var back watchConf
	if m == nil || json.Unmarshal([]byte(m[1]), &back) != nil || back.Rung != evil || back.Path != conf.Path {
		t.Errorf("watch-conf does not decode to the settings: %v\n%s", m, w.Body.String())
	}

	_, srv := newTestServer(t, server.NewHub(server.HubConfig{Logger: quietLog}), DefaultConfig())
	for _, u := range []string{"/watch/%3Cscript%3Ealert(1)%3C/script%3E", "/%3Cscript%3Ealert(1)%3C/script%3E"} {
		code, body := get(t, srv.URL+u)
		if code != 404 || strings.Contains(body, "<script>alert") {
			t.Errorf("GET %s: status %d (want 404), page:\n%s", u, code, body)
		}
	}
}

func TestWatchPage(t *testing.T) {
	conf := DefaultConfig()
	conf.Renditions = func(path string) []string {
		if path == "live/test" {
			return []string{"240p", "bad/rung", "160p"}
		}
		return nil
	}
	_, srv := newTestServer(t, newTestHub(t), conf)
	watchConfOf := func(url string) watchConf {
		t.Helper()
		code, page := get(t, srv.URL+url)
		if code != 200 {
			t.Fatalf("GET %s: status %d:\n%s", url, code, page)
		}
		m := regexp.MustCompile(`(?s)id="watch-conf">(.*?)</script>`).FindStringSubmatch(page)
		var c watchConf
		if m == nil || json.Unmarshal([]byte(m[1]), &c) != nil {
			t.Fatalf("GET %s: no watch-conf JSON:\n%s", url, page)
		}
		return c
	}
	c := watchConfOf("/watch/live/test")
	if c.Path != "live/test" || c.Mode != "hls" || c.Rung != "" || c.HLS != "/live/test/index.m3u8" || c.FLV != "/live/test.flv" ||
		c.Chat != "/chat/live/test" || !slices.Equal(c.Rungs, []string{"240p", "160p"}) {
		t.Errorf("watch page settings: %+v", c)
	}
	c = watchConfOf("/watch/live/test?mode=flv&rung=120p")
	if c.Mode != "flv" || c.Rung != "120p" || !slices.Equal(c.Rungs, []string{"240p", "160p", "120p"}) {
		t.Errorf("?mode=flv&rung=120p: %+v", c)
	}
	if c.Rewind != "" || c.Recordings != "" {
		t.Errorf("rewind offered without a recorder: %+v", c)
	}
	conf.Rewind = func(string) time.Duration { return 30 * time.Minute }
	_, srv = newTestServer(t, newTestHub(t), conf)
	c = watchConfOf("/watch/live/test?key=k%26x")
	if c.Rewind != "/api/v1/recordings/rewind.m3u8?key=k%26x&path=live%2Ftest" || c.RewindSeconds != 1800 ||
		c.Recordings != "/api/v1/recordings?key=k%26x&path=live%2Ftest" {
		t.Errorf("rewind settings: %+v", c)
	}
	c = watchConfOf("/watch/live/test?mode=nope&rung=..")
	if c.Mode != "hls" || c.Rung != "" {
		t.Errorf("?mode=nope&rung=..: %+v, want mode hls and the source", c)
	}
	if c.WHEP != "" || len(c.ICEServers) != 0 {
		t.Errorf("without WebRTC the page has a WHEP URL %q or ICE servers %v", c.WHEP, c.ICEServers)
	}
	if c = watchConfOf("/watch/live/test?mode=webrtc"); c.Mode != "hls" {
		t.Errorf("?mode=webrtc without WebRTC: mode %q, want hls", c.Mode)
	}
	// A rung of a live stream has a page too (it may start on demand).
	if c = watchConfOf("/watch/live/test/160p"); c.Path != "live/test/160p" {
		t.Errorf("rung page: %+v", c)
	}
	for _, u := range []string{"/watch/live/nobody", "/watch/live/test/999p", "/watch/", "/watch/a/../b"} {
		if code, page := get(t, srv.URL+u); code != 404 || !strings.Contains(page, "<h1>") {
			t.Errorf("GET %s: status %d, want a 404 page:\n%s", u, code, page)
		}
	}
}

func TestBroadcastPage(t *testing.T) {
	_, srv := newTestServer(t, server.NewHub(server.HubConfig{Logger: quietLog}), DefaultConfig())
	code, page := get(t, srv.URL+"/broadcast")
	for _, want := range []string{`data-api="/api/v1/streams"`, `id="name"`, `id="token" name="token" type="password"`,
		`id="obs-server"`, `id="obs-key"`, `id="srt-url"`, `id="watch-link"`, `src="/static/broadcast.js?v=`} {
		if code != 200 || !strings.Contains(page, want) {
			t.Errorf("broadcast page (status %d) lacks %q", code, want)
		}
	}
	if strings.Contains(page, `id="live-form"`) || !strings.Contains(page, `id="golive-off"`) || strings.Contains(page, "golive.js") {
		t.Errorf("broadcast page without WebRTC offers to go live from the browser:\n%s", page)
	}
	// Until the API is there, its URLs answer JSON errors the page shows.
	resp, err := http.Post(srv.URL+"/api/v1/streams", "application/json", strings.NewReader(`{"name":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&e) //nolint:errcheck // checked below
	resp.Body.Close()
	if resp.StatusCode != 404 || e.Error == "" {
		t.Errorf("POST /api/v1/streams without an API: status %d, error %q", resp.StatusCode, e.Error)
	}
}

func TestStaticFiles(t *testing.T) {
	a := newAssets(fstest.MapFS{
		"static/style.css":     {Data: []byte("body{}")},
		"static/vendor/README": {Data: []byte("x")},
	})
	if !slices.Equal(a.missingVendor(), []string{"web/static/vendor/hls.min.js", "web/static/vendor/mpegts.js"}) {
		t.Errorf("missing vendor files: %v", a.missingVendor())
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	resp, err := http.Get(srv.URL + a.url("style.css"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
		t.Errorf("versioned style.css: status %d, headers %v", resp.StatusCode, resp.Header)
	}
	code, body := get(t, srv.URL+"/static/vendor/hls.min.js")
	if code != 404 || !strings.Contains(body, "npm ci") || !strings.Contains(body, "scripts/run.sh") {
		t.Errorf("missing vendor file: status %d: %s", code, body)
	}
	if code, _ := get(t, srv.URL+"/static/vendor/"); code != 404 {
		t.Errorf("directory listing: status %d, want 404", code)
	}

	// The watch page says what to run when a library is missing.
	h := NewWithConfig(newTestHub(t), DefaultConfig(), quietLog)
	defer h.Close()
	h.assets = a
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/watch/live/test", nil))
	if !strings.Contains(w.Body.String(), `id="missing"`) || !strings.Contains(w.Body.String(), "npm ci") {
		t.Errorf("the watch page does not say how to install the missing player libraries:\n%s", w.Body.String())
	}
}

func TestViewersHook(t *testing.T) {
	conf := DefaultConfig()
	conf.Viewers = func(path string) int { return len(path) }
	_, srv := newTestServer(t, newTestHub(t), conf)
	_, body := get(t, srv.URL+"/streams.json")
	if !strings.Contains(body, `"viewers":9`) {
		t.Errorf("streams.json with Config.Viewers: %s; want viewers 9 for live/test", body)
	}
}

// The home page and /streams.json are public: a stream with a read key,
// or any stream when every reader needs a signed link, is not listed.
func TestHomeHidesProtectedStreams(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hc     server.HubConfig
		listed []string
	}{
		{"read key", server.HubConfig{PathConfig: func(p string) server.PathConfig {
			pc := server.DefaultPathConfig()
			if p == "live/private" {
				pc.ReadKey = "secret"
			}
			return pc
		}}, []string{"live/public"}},
		{"signed links only", server.HubConfig{ReadToken: func(path, key string) (bool, error) {
			return false, errors.New("a signed link is required")
		}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.hc.Logger = quietLog
			hub := server.NewHub(tc.hc)
			t.Cleanup(hub.Close)
			for _, p := range []string{"live/public", "live/private"} {
				pub, err := hub.PublishTrusted(p, []*media.Track{{ID: 0, Codec: media.CodecH264, Width: 320, Height: 240}}, server.PublishOptions{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(pub.Close)
			}
			_, srv := newTestServer(t, hub, DefaultConfig())
			_, body := get(t, srv.URL+"/streams.json")
			_, page := get(t, srv.URL+"/")
			for _, p := range []string{"live/public", "live/private"} {
				want := slices.Contains(tc.listed, p)
				if strings.Contains(body, `"`+p+`"`) != want || strings.Contains(page, "/watch/"+p+`"`) != want {
					t.Errorf("%s listed: %v, want %v\n%s", p, strings.Contains(body, p), want, body)
				}
			}
		})
	}
}

// With WebRTC on, the broadcast page has the go-live part (preview, path,
// key, Go live, Stop, figures, chat) and its settings: the API, the ICE
// servers for RTCPeerConnection, the chat's limit.
func TestBroadcastPageGoLive(t *testing.T) {
	conf := DefaultConfig()
	conf.WebRTC = true
	conf.ICEServers = []ICEServer{{URLs: []string{"stun:stun.example.com:3478"}},
		{URLs: []string{"turn:turn.example.com:3478?transport=udp"}, Username: "u", Credential: "c"}}
	_, srv := newTestServer(t, server.NewHub(server.HubConfig{Logger: quietLog}), conf)
	code, page := get(t, srv.URL+"/broadcast")
	for _, want := range []string{`id="preview"`, `id="source"`, `value="screen"`, `id="live-path"`,
		`id="live-key" name="key" type="password"`, `id="live-button"`, `id="stop-button"`, `id="live-bitrate"`,
		`id="live-viewers"`, `id="chat-log"`, `src="/static/golive.js?v=`, `src="/static/chat.js?v=`, `data-api="/api/v1/streams"`} {
		if code != 200 || !strings.Contains(page, want) {
			t.Errorf("broadcast page (status %d) lacks %q", code, want)
		}
	}
	m := regexp.MustCompile(`(?s)<script type="application/json" id="broadcast-conf">(.*?)</script>`).FindStringSubmatch(page)
	var c struct {
		API        string `json:"api"`
		WebRTC     bool   `json:"webrtc"`
		ICEServers []struct {
			URLs       []string `json:"urls"`
			Username   string   `json:"username"`
			Credential string   `json:"credential"`
		} `json:"iceServers"`
		Chat         *string `json:"chat"`
		ChatMaxBytes int     `json:"chatMaxBytes"`
	}
	if m == nil || json.Unmarshal([]byte(m[1]), &c) != nil {
		t.Fatalf("no broadcast-conf JSON:\n%s", page)
	}
	if c.API != "/api/v1/streams" || !c.WebRTC || c.ChatMaxBytes != 500 || c.Chat == nil || *c.Chat != "" || len(c.ICEServers) != 2 ||
		c.ICEServers[0].URLs[0] != "stun:stun.example.com:3478" || c.ICEServers[0].Username != "" ||
		c.ICEServers[1].Username != "u" || c.ICEServers[1].Credential != "c" {
		t.Errorf("broadcast-conf %+v", c)
	}
	// No ICE server: an empty list (RTCPeerConnection takes [] but not null).
	conf.ICEServers = nil
	_, srv = newTestServer(t, server.NewHub(server.HubConfig{Logger: quietLog}), conf)
	if _, page = get(t, srv.URL+"/broadcast"); !strings.Contains(page, `"iceServers":[]`) {
		t.Errorf("no ICE servers: want \"iceServers\":[] in the page:\n%s", page)
	}
	code, js := get(t, srv.URL+"/static/golive.js")
	if code != 200 || !strings.Contains(js, "/whip") {
		t.Errorf("golive.js: status %d", code)
	}
}

// With WebRTC on, the watch page plays over WHEP by default when the
// stream's video can go to a browser (H.264, AV1), with the ICE servers
// and the key; ?mode= still picks the others.
func TestWatchPageWebRTC(t *testing.T) {
	hub := newTestHub(t)
	hevc, err := hub.PublishTrusted("live/hevc", []*media.Track{{ID: 0, Codec: media.CodecH265, Width: 640, Height: 360}},
		server.PublishOptions{Protocol: "rtmp"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hevc.Close)
	conf := DefaultConfig()
	conf.WebRTC = true
	conf.ICEServers = []ICEServer{{URLs: []string{"stun:stun.example.com:3478"}}}
	conf.Renditions = func(string) []string { return []string{"240p"} }
	_, srv := newTestServer(t, hub, conf)
	watchConfOf := func(url string) (watchConf, string) {
		t.Helper()
		code, page := get(t, srv.URL+url)
		m := regexp.MustCompile(`(?s)id="watch-conf">(.*?)</script>`).FindStringSubmatch(page)
		var c watchConf
		if code != 200 || m == nil || json.Unmarshal([]byte(m[1]), &c) != nil {
			t.Fatalf("GET %s: status %d, no watch-conf JSON:\n%s", url, code, page)
		}
		return c, page
	}
	c, page := watchConfOf("/watch/live/test")
	if c.Mode != "webrtc" || c.WHEP != "/live/test/whep" || len(c.ICEServers) != 1 || c.ICEServers[0].URLs[0] != "stun:stun.example.com:3478" {
		t.Errorf("default: %+v; want mode webrtc, WHEP /live/test/whep and the ICE server", c)
	}
	if !strings.Contains(page, `<option value="webrtc">`) || !strings.Contains(page, `id="fallback"`) {
		t.Errorf("the page lacks the WebRTC mode or the fallback line:\n%s", page)
	}
	for url, want := range map[string]string{
		"/watch/live/test?mode=hls":    "hls",
		"/watch/live/test?mode=flv":    "flv",
		"/watch/live/test?mode=webrtc": "webrtc",
		"/watch/live/test?mode=nope":   "hls", // asked for something else: the long-standing default
		"/watch/live/test/240p":        "webrtc",
		"/watch/live/hevc":             "hls", // H.265: few browsers take it over WebRTC
		"/watch/live/hevc?mode=webrtc": "webrtc",
	} {
		if c, _ := watchConfOf(url); c.Mode != want {
			t.Errorf("GET %s: mode %q, want %q", url, c.Mode, want)
		}
	}
	if c, _ := watchConfOf("/watch/live/test?key=a%20b&rung=240p"); c.WHEP != "/live/test/whep?key=a+b" || c.KeyQuery != "?key=a+b" || c.Rung != "240p" {
		t.Errorf("with a key: %+v; want the key on the WHEP URL", c)
	}
}
