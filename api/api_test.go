package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamhub/streamhub/auth"
	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/registry"
	"github.com/streamhub/streamhub/server"
)

type env struct {
	hub *server.Hub
	reg *registry.Bolt
	h   *Handler
	url string
}

func newEnv(t *testing.T, token string) *env {
	t.Helper()
	reg, err := registry.Open(filepath.Join(t.TempDir(), "s.db"), "live", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := server.NewHub(server.HubConfig{Logger: log, ResolvePublish: reg.Resolve})
	t.Cleanup(hub.Close)
	h := New(Config{AdminToken: token, RTMPAddr: ":1935", RTSPAddr: ":8554", SRTAddr: ":8890", HTTPAddr: ":8080", Version: "test"}, hub, reg, nil, log)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{hub: hub, reg: reg, h: h, url: srv.URL}
}

func (e *env) do(t *testing.T, method, path, bearer, body string, into any) int {
	t.Helper()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	req.Host = "stream.example:8080"
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") && !strings.HasSuffix(path, ".yaml") {
		t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// create → publish with the key → live with figures → wrong key refused →
// delete kicks the publisher.
func TestStreamLifecycle(t *testing.T) {
	const admin = "0123456789abcdef"
	e := newEnv(t, admin) // with a token, loopback is no admin: the key is what counts
	var c Created
	if code := e.do(t, "POST", "/api/v1/streams", admin, `{"name":"My show"}`, &c); code != 201 {
		t.Fatalf("create: %d", code)
	}
	if c.Name != "My show" || !strings.HasPrefix(c.Key, "sk_") || c.Path != "live/"+c.ID ||
		c.Publish.RTMPServer != "rtmp://stream.example:1935/live" || c.Publish.RTMPKey != c.Key ||
		c.Publish.SRT != "srt://stream.example:8890?streamid=publish:live/"+c.Key ||
		c.Play.FLV != "http://stream.example:8080/live/"+c.ID+".flv" || c.Play.Watch != "http://stream.example:8080/watch/live/"+c.ID ||
		c.Play.HLS != "http://stream.example:8080/live/"+c.ID+"/index.m3u8" {
		t.Fatalf("created %+v", c)
	}
	for _, u := range []string{c.Play.FLV, c.Play.HLS, c.Play.RTMP, c.Play.RTSP, c.Play.SRT, c.Play.Watch} {
		if strings.Contains(u, c.Key) {
			t.Fatalf("a viewer URL reveals the key: %s", u)
		}
	}
	var bad map[string]string
	if code := e.do(t, "POST", "/api/v1/streams", admin, `{"name":""}`, &bad); code != 400 || bad["error"] == "" {
		t.Fatalf("an empty name: %d %v", code, bad)
	}
	if code := e.do(t, "POST", "/api/v1/streams", admin, `{"nom":"x"}`, &bad); code != 400 {
		t.Fatalf("an unknown field: %d", code)
	}

	// Publish with the key as the stream name: the stream is live/<id>.
	var kicked atomic.Bool
	v := &media.Track{ID: 0, Codec: media.CodecH264, Width: 640, Height: 360, FPS: 30}
	pub, err := e.hub.PublishTrusted("live/"+c.Key, []*media.Track{v}, server.PublishOptions{Protocol: "rtmp", Remote: "1.2.3.4:5",
		OnKick: func() { kicked.Store(true) }})
	if err != nil {
		t.Fatal(err)
	}
	if pub.Stream().Path() != c.Path {
		t.Fatalf("published on %q, want %q", pub.Stream().Path(), c.Path)
	}
	for i := range 30 {
		d := time.Duration(i) * 33 * time.Millisecond
		pub.Write(&media.Unit{Track: v, PTS: d, DTS: d, KeyFrame: i == 0, Payload: [][]byte{make([]byte, 1000)}})
	}
	if _, err := e.hub.PublishTrusted(c.Path, []*media.Track{v}, server.PublishOptions{Key: "sk_wrong"}); err == nil {
		t.Fatal("a wrong key published")
	}
	var list struct{ Streams []StreamInfo }
	e.do(t, "GET", "/api/v1/streams", "", "", &list)
	if len(list.Streams) != 1 || !list.Streams[0].Live || list.Streams[0].Figures == nil {
		t.Fatalf("list %+v", list)
	}
	f := list.Streams[0].Figures
	if f.BytesIn != 30000 || f.UnitsIn != 30 || f.Publisher != "rtmp" || len(f.Tracks) != 1 || f.Tracks[0].Height != 360 ||
		f.Tracks[0].Codec != "H264" || f.BitrateIn <= 0 {
		t.Fatalf("figures %+v", f)
	}
	// The streamer's address is for the admin only.
	var one StreamInfo
	e.do(t, "GET", "/api/v1/streams/"+c.ID, admin, "", &one)
	if one.Figures == nil || one.Figures.Publisher != "rtmp 1.2.3.4:5" {
		t.Fatalf("admin view %+v", one.Figures)
	}
	raw := e.get(t, "/api/v1/streams")
	if strings.Contains(raw, "1.2.3.4") {
		t.Fatal("the public stream list shows the publisher's address")
	}
	if strings.Contains(raw, c.Key) || strings.Contains(raw, "keyHash") {
		t.Fatal("the stream list reveals the key or its hash")
	}

	// Wrong key: refused after a delay; the right one deletes and kicks.
	start := time.Now()
	if code := e.do(t, "DELETE", "/api/v1/streams/"+c.ID, "sk_wrong", "", &bad); code != 401 {
		t.Fatalf("delete with a wrong key: %d", code)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Fatal("a failed authorization was answered without a delay")
	}
	var del map[string]any
	if code := e.do(t, "DELETE", "/api/v1/streams/"+c.ID, c.Key, "", &del); code != 200 || del["kicked"] != true {
		t.Fatalf("delete: %d %v", code, del)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !kicked.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !kicked.Load() || pub.Stream().Publishing() {
		t.Fatal("delete did not kick the publisher")
	}
	if code := e.do(t, "GET", "/api/v1/streams/"+c.ID, "", "", &bad); code != 404 {
		t.Fatalf("get after delete: %d", code)
	}
}

func (e *env) get(t *testing.T, path string) string {
	resp, err := http.Get(e.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestRotateKey(t *testing.T) {
	const admin = "0123456789abcdef"
	e := newEnv(t, admin)
	var c, r Created
	e.do(t, "POST", "/api/v1/streams", admin, `{"name":"x"}`, &c)
	if code := e.do(t, "POST", "/api/v1/streams/"+c.ID+"/rotate-key", c.Key, "", &r); code != 200 || r.Key == c.Key || r.ID != c.ID {
		t.Fatalf("rotate: %d %+v", code, r)
	}
	if _, _, _, err := e.reg.Resolve("live/"+c.Key, ""); err == nil {
		t.Fatal("the old key still publishes")
	}
	var bad map[string]string
	if code := e.do(t, "POST", "/api/v1/streams/"+c.ID+"/rotate-key", c.Key, "", &bad); code != 401 {
		t.Fatalf("rotate with the old key: %d", code)
	}
}

// Admin endpoints: with a token they need it; without one, loopback only.
func TestAdmin(t *testing.T) {
	e := newEnv(t, "0123456789abcdef")
	var out map[string]any
	for _, p := range []struct{ method, path, body string }{
		{"POST", "/api/v1/streams", `{"name":"x"}`}, {"GET", "/api/v1/paths", ""}, {"GET", "/api/v1/info", ""},
	} {
		if code := e.do(t, p.method, p.path, "", p.body, &out); code != 401 || out["error"] == nil {
			t.Errorf("%s %s without the token: %d %v", p.method, p.path, code, out)
		}
		if code := e.do(t, p.method, p.path, "wrong-token-wrong", p.body, &out); code != 401 {
			t.Errorf("%s %s with a wrong token: %d", p.method, p.path, code)
		}
		if code := e.do(t, p.method, p.path, "0123456789abcdef", p.body, &out); code != 200 && code != 201 {
			t.Errorf("%s %s with the token: %d %v", p.method, p.path, code, out)
		}
	}
	if code := e.do(t, "GET", "/api/v1/nothing", "", "", &out); code != 404 || out["error"] == nil {
		t.Errorf("an unknown endpoint: %d %v", code, out)
	}
	if code := e.do(t, "PUT", "/api/v1/streams", "", "", &out); code != 405 || out["error"] == nil {
		t.Errorf("a known endpoint with another method: %d %v", code, out)
	}
	// No token configured: a request from elsewhere is refused.
	e2 := newEnv(t, "")
	req := httptest.NewRequest("GET", "/api/v1/info", nil)
	req.RemoteAddr = "203.0.113.9:4000"
	w := httptest.NewRecorder()
	e2.h.ServeHTTP(w, req)
	if w.Code != 403 || !strings.Contains(w.Body.String(), "adminToken") {
		t.Fatalf("from elsewhere without a token: %d %s", w.Code, w.Body)
	}
	if y := e.get(t, "/api/v1/openapi.yaml"); !strings.Contains(y, "openapi: 3") {
		t.Fatal("no OpenAPI document")
	}
}

// Signed play links: admin only, off without a secret, and the key they
// carry is a token the signer accepts for that path.
func TestSign(t *testing.T) {
	e := newEnv(t, "0123456789abcdef")
	var out map[string]any
	if code := e.do(t, "POST", "/api/v1/sign", "0123456789abcdef", `{"path":"live/a","ttl":"1h"}`, &out); code != 404 {
		t.Fatalf("sign without a secret: %d %v", code, out)
	}
	e.h.conf.Signer = auth.NewSigner("sign-secret-0123456789", false)
	if code := e.do(t, "POST", "/api/v1/sign", "", `{"path":"live/a","ttl":"1h"}`, &out); code != 401 {
		t.Fatalf("sign without the admin token: %d", code)
	}
	var s Signed
	if code := e.do(t, "POST", "/api/v1/sign", "0123456789abcdef", `{"path":"live/a","ttl":"1h"}`, &s); code != 200 {
		t.Fatalf("sign: %d", code)
	}
	if ok, err := e.h.conf.Signer.Check("live/a", s.Key); !ok || err != nil {
		t.Fatalf("the signed key does not check: %v", err)
	}
	if !strings.HasSuffix(s.Play.FLV, "/live/a.flv?key="+s.Key) || !strings.Contains(s.Play.SRT, "read:live/a?key="+s.Key) ||
		time.Until(s.Expires) < 59*time.Minute {
		t.Fatalf("signed %+v", s)
	}
	for _, body := range []string{`{"path":"../x","ttl":"1h"}`, `{"path":"live/a","ttl":"forever"}`, `{"path":"live/a"}`} {
		if code := e.do(t, "POST", "/api/v1/sign", "0123456789abcdef", body, &out); code != 400 {
			t.Errorf("sign %s: %d, want 400", body, code)
		}
	}
}

func TestSessionsAPI(t *testing.T) {
	const admin = "0123456789abcdef"
	e := newEnv(t, admin)
	v := &media.Track{ID: 0, Codec: media.CodecH264}
	pub, err := e.hub.PublishTrusted("live/s", []*media.Track{v}, server.PublishOptions{Protocol: "srt", Remote: "1.2.3.4:5"})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := e.hub.ReadTrusted(context.Background(), "live/s", server.ReadOptions{})
	defer r.Close()
	r.SetPeer(server.Peer{Protocol: "httpflv", Remote: "5.6.7.8:9"}, nil)
	var out struct{ Sessions []server.Session }
	if code := e.do(t, "GET", "/api/v1/sessions", "", "", nil); code != 401 {
		t.Fatalf("sessions without the token: %d", code)
	}
	e.do(t, "GET", "/api/v1/sessions", admin, "", &out)
	if len(out.Sessions) != 2 || out.Sessions[1].Protocol != "httpflv" {
		t.Fatalf("sessions %+v", out)
	}
	var paths struct{ Paths []Figures }
	e.do(t, "GET", "/api/v1/paths", admin, "", &paths)
	if len(paths.Paths) != 1 || paths.Paths[0].ReadersByProtocol["httpflv"] != 1 || paths.Paths[0].Publisher != "srt 1.2.3.4:5" {
		t.Fatalf("paths %+v", paths)
	}
	var res map[string]any
	if code := e.do(t, "DELETE", "/api/v1/sessions/"+out.Sessions[0].ID, admin, "", &res); code != 200 {
		t.Fatalf("kick: %d %v", code, res)
	}
	if pub.Stream().Publishing() {
		t.Fatal("the kicked publisher still publishes")
	}
	if code := e.do(t, "DELETE", "/api/v1/sessions/p0", admin, "", &res); code != 404 {
		t.Fatalf("kick of nothing: %d", code)
	}
}

// Without a token, admin is the server's own loopback to a loopback host
// name, not a page whose name was rebound to 127.0.0.1, not a proxy; and
// no page of another site may change anything.
func TestAdminLoopbackOnly(t *testing.T) {
	e := newEnv(t, "")
	try := func(host, origin, site, fwd string) int {
		req := httptest.NewRequest("POST", "/api/v1/streams", strings.NewReader(`{"name":"x"}`))
		req.RemoteAddr = "127.0.0.1:5000"
		req.Host = host
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if site != "" {
			req.Header.Set("Sec-Fetch-Site", site)
		}
		if fwd != "" {
			req.Header.Set("X-Forwarded-For", fwd)
		}
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		return w.Code
	}
	for _, tc := range []struct {
		host, origin, site, fwd string
		want                    int
	}{
		{"127.0.0.1:8080", "", "", "", 201},
		{"localhost:8080", "http://localhost:8080", "same-origin", "", 201},
		{"[::1]:8080", "", "", "", 201},
		{"evil.example:8080", "", "", "", 403},                 // DNS rebinding
		{"127.0.0.1:8080", "http://evil.example", "", "", 403}, // a script of another site
		{"127.0.0.1:8080", "", "cross-site", "", 403},          // a form of another site
		{"127.0.0.1:8080", "", "", "203.0.113.5", 403},         // through a local proxy
	} {
		if got := try(tc.host, tc.origin, tc.site, tc.fwd); got != tc.want {
			t.Errorf("host %q origin %q site %q fwd %q: %d, want %d", tc.host, tc.origin, tc.site, tc.fwd, got, tc.want)
		}
	}
}

// Wrong tokens spend the address's failure budget, shared with every
// protocol: past it even the right token is answered 429, and the address
// is refused by the hub too; another address is not affected.
func TestFailureBudget(t *testing.T) {
	reg, err := registry.Open(filepath.Join(t.TempDir(), "s.db"), "live", true)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	var logBuf testfixtures.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	hub := server.NewHub(server.HubConfig{Logger: log, AuthFailures: guard.NewBudget(3, time.Minute)})
	defer hub.Close()
	h := New(Config{AdminToken: "0123456789abcdef", Version: "test"}, hub, reg, nil, log)
	ask := func(remote, token string) int {
		req := httptest.NewRequest("GET", "/api/v1/info", nil)
		req.RemoteAddr = remote
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	start := time.Now()
	for i := range 3 {
		if code := ask("198.51.100.7:1000", "wrong"); code != 401 {
			t.Fatalf("wrong token %d: %d, want 401", i, code)
		}
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("3 refusals took %s: each should wait at least 100 ms", d)
	}
	if code := ask("198.51.100.7:1001", "0123456789abcdef"); code != 429 {
		t.Fatalf("the right token past the budget: %d, want 429", code)
	}
	if err := hub.Authorize(context.Background(), "live/x", server.ReadRequest{Key: "", Peer: server.Peer{Protocol: "rtsp", Remote: "198.51.100.7:2000"}}); !errors.Is(err, server.ErrTooManyFailures) {
		t.Fatalf("the hub let the throttled address try a read: %v", err)
	}
	if code := ask("198.51.100.8:1000", "0123456789abcdef"); code != 200 {
		t.Fatalf("another address with the right token: %d, want 200", code)
	}
	for range 8 {
		ask("198.51.100.7:1002", "wrong")
	}
	// Two kinds (401, 429), at most 5 lines each per window.
	if n := strings.Count(logBuf.String(), "api request refused"); n < 2 || n > 10 {
		t.Errorf("%d refusal lines for 12 refusals of two kinds from one address in one window, want 2 to 10:\n%s", n, logBuf.String())
	}
}

// The stream views show the recorder's state of the path when one is set.
func TestRecordingInStreamViews(t *testing.T) {
	const admin = "0123456789abcdef"
	e := newEnv(t, admin)
	var asked []string
	e.h.conf.Recording = func(path string) any {
		asked = append(asked, path)
		return map[string]any{"state": "recording", "bytes": 42}
	}
	var c Created
	if code := e.do(t, "POST", "/api/v1/streams", admin, `{"name":"rec"}`, &c); code != 201 {
		t.Fatalf("create: %d", code)
	}
	var got struct {
		Streams []struct {
			Path      string         `json:"path"`
			Recording map[string]any `json:"recording"`
		} `json:"streams"`
	}
	if code := e.do(t, "GET", "/api/v1/streams", "", "", &got); code != 200 || len(got.Streams) != 1 ||
		got.Streams[0].Recording["state"] != "recording" || got.Streams[0].Recording["bytes"] != 42.0 || asked[0] != c.Path {
		t.Fatalf("streams view: %d %+v (asked %v)", code, got, asked)
	}
}
