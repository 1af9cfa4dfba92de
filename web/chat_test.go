package web

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// frame is any server frame.
type frame struct {
	Type     string     `json:"type"`
	Name     string     `json:"name"`
	Text     string     `json:"text"`
	Time     int64      `json:"time"`
	Error    string     `json:"error"`
	Messages []chatLine `json:"messages"`
}

// chatServer starts a web handler with conf and returns it and its base
// ws:// URL.
func chatServer(t *testing.T, conf Config) (*Handler, *httptest.Server, string) {
	t.Helper()
	hub := server.NewHub(server.HubConfig{Logger: quietLog})
	// A room is for a live stream: publish the paths the tests chat on.
	for _, p := range []string{"live/a", "live/b", "live/x"} {
		if _, err := hub.PublishTrusted(p, []*media.Track{{Codec: media.CodecH264}}, server.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	h, srv := newTestServer(t, hub, conf)
	return h, srv, "ws" + strings.TrimPrefix(srv.URL, "http")
}

// dial joins the room of path and reads its history frame.
func dial(t *testing.T, base, path string) (*websocket.Conn, []chatLine) {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(base+"/chat/"+path, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", path, err, resp)
	}
	t.Cleanup(func() { c.Close() })
	f := read(t, c)
	if f.Type != "history" {
		t.Fatalf("first frame %+v, want the history", f)
	}
	return c, f.Messages
}

func read(t *testing.T, c *websocket.Conn) frame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var f frame
	if err := c.ReadJSON(&f); err != nil {
		t.Fatalf("read: %v", err)
	}
	return f
}

func send(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	if err := c.WriteJSON(v); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// named sets c's name and reads the answer.
func named(t *testing.T, c *websocket.Conn, name string) {
	t.Helper()
	send(t, c, map[string]string{"type": "name", "name": name})
	if f := read(t, c); f.Type != "name" || f.Name != strings.TrimSpace(name) {
		t.Fatalf("name answer %+v", f)
	}
}

func say(t *testing.T, c *websocket.Conn, text string) {
	t.Helper()
	send(t, c, map[string]string{"type": "say", "text": text})
}

func TestChatRoomsAndHistory(t *testing.T) {
	conf := DefaultConfig()
	conf.ChatHistory = 3
	h, _, base := chatServer(t, conf)
	a, hist := dial(t, base, "live/a")
	if len(hist) != 0 {
		t.Fatalf("a new room has history %+v", hist)
	}
	b, _ := dial(t, base, "live/a")
	other, _ := dial(t, base, "live/b")
	named(t, a, "  alice ")
	named(t, b, "bob")
	named(t, other, "eve")

	say(t, a, `<script>window.__pwned=1</script>`)
	for _, c := range []*websocket.Conn{a, b} {
		f := read(t, c)
		if f.Type != "msg" || f.Name != "alice" || f.Text != `<script>window.__pwned=1</script>` || f.Time == 0 {
			t.Fatalf("got %+v, want alice's message", f)
		}
	}
	// Rooms are apart: eve's own message is the first thing she gets.
	say(t, other, "only in b")
	if f := read(t, other); f.Text != "only in b" {
		t.Fatalf("room live/b got %+v", f)
	}

	for _, s := range []string{"2", "3", "4"} {
		say(t, b, s)
		read(t, a)
		read(t, b)
	}
	_, hist = dial(t, base, "live/a")
	var texts []string
	for _, l := range hist {
		texts = append(texts, l.Name+":"+l.Text)
	}
	if strings.Join(texts, ",") != "bob:2,bob:3,bob:4" {
		t.Errorf("history %v, want the last 3 messages in order", texts)
	}

	// A room is removed with its last member, and its history with it.
	for _, c := range []*websocket.Conn{a, b, other} {
		c.Close()
	}
	waitFor(t, "rooms removed", func() bool {
		h.chat.mu.Lock()
		defer h.chat.mu.Unlock()
		return len(h.chat.rooms) == 1 // the history dial's connection is still there
	})
}

func TestChatLimits(t *testing.T) {
	conf := DefaultConfig()
	conf.ChatRate = 3
	conf.ChatRateWindow = time.Minute
	conf.ChatMaxBytes = 10
	_, _, base := chatServer(t, conf)
	c, _ := dial(t, base, "live/x")

	say(t, c, "hi")
	if f := read(t, c); f.Type != "error" || !strings.Contains(f.Error, "choose a name first") {
		t.Fatalf("say before name: %+v", f)
	}
	named(t, c, "n")
	say(t, c, strings.Repeat("x", 11))
	if f := read(t, c); f.Type != "error" || !strings.Contains(f.Error, "at most 10") {
		t.Fatalf("11 bytes: %+v, want a size error", f)
	}
	say(t, c, "é"+strings.Repeat("x", 8)) // 10 bytes
	if f := read(t, c); f.Type != "msg" {
		t.Fatalf("10 bytes: %+v, want the message", f)
	}
	for i := 0; i < 2; i++ {
		say(t, c, "ok")
		if f := read(t, c); f.Type != "msg" {
			t.Fatalf("message %d: %+v", i+2, f)
		}
	}
	say(t, c, "fourth")
	if f := read(t, c); f.Type != "error" || !strings.Contains(f.Error, "at most 3 messages per 1m0s") {
		t.Fatalf("4th message within the window: %+v, want a rate error", f)
	}
	// Still connected: a name change is answered.
	named(t, c, "m")
	// Malformed frames are answered too.
	for _, bad := range []string{`nope`, `{"type":"shout","text":"x"}`, `{"type":"name","name":""}`, `{"type":"say","text":"a"} {}`} {
		c.WriteMessage(websocket.TextMessage, []byte(bad))
		if f := read(t, c); f.Type != "error" {
			t.Errorf("%s: %+v, want an error frame", bad, f)
		}
	}
	// A frame beyond the read limit ends the connection (1009).
	c.WriteMessage(websocket.TextMessage, []byte(`{"type":"say","text":"`+strings.Repeat("x", int(readLimit(10)))+`"}`))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := c.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Errorf("after a huge frame: %v, want close 1009", err)
	}
}

func TestChatOrigin(t *testing.T) {
	_, srv, base := chatServer(t, DefaultConfig())
	host := strings.TrimPrefix(srv.URL, "http://")
	for origin, ok := range map[string]bool{
		"http://" + host:              true,
		"http://evil.example":         false,
		"http://" + host + ".evil.io": false,
		"null":                        false,
	} {
		c, resp, err := websocket.DefaultDialer.Dial(base+"/chat/live/x", http.Header{"Origin": {origin}})
		if ok && err != nil {
			t.Errorf("origin %s refused: %v", origin, err)
		}
		if !ok && (err == nil || resp == nil || resp.StatusCode != http.StatusForbidden) {
			t.Errorf("origin %s: %v, want 403", origin, err)
		}
		if c != nil {
			c.Close()
		}
	}
	if _, resp, err := websocket.DefaultDialer.Dial(base+"/chat/a%20b", nil); err == nil || resp == nil || resp.StatusCode != 404 {
		t.Errorf("bad path: %v, want 404", err)
	}
}

func TestChatCloseEndsConnections(t *testing.T) {
	h, _, base := chatServer(t, DefaultConfig())
	a, _ := dial(t, base, "live/a")
	b, _ := dial(t, base, "live/b")
	done := make(chan struct{})
	go func() {
		h.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, c := range []*websocket.Conn{a, b} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
			t.Errorf("after Close: %v, want close 1001", err)
		}
	}
	h.chat.mu.Lock()
	conns, rooms := len(h.chat.conns), len(h.chat.rooms)
	h.chat.mu.Unlock()
	if conns != 0 || rooms != 0 {
		t.Errorf("after Close: %d connections, %d rooms left", conns, rooms)
	}
	if _, resp, err := websocket.DefaultDialer.Dial(base+"/chat/live/a", nil); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after Close: %v, want 503", err)
	}
}

func TestChatMaxConns(t *testing.T) {
	conf := DefaultConfig()
	conf.ChatMaxConns = 1
	_, _, base := chatServer(t, conf)
	dial(t, base, "live/a")
	if _, resp, err := websocket.DefaultDialer.Dial(base+"/chat/live/a", nil); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("second connection: %v, want 503", err)
	}
}

func TestRateLimiter(t *testing.T) {
	l := rateLimiter{n: 2, window: 5 * time.Second}
	t0 := time.Unix(1000, 0)
	for i, c := range []struct {
		at   time.Duration
		wait time.Duration
	}{{0, 0}, {time.Second, 0}, {2 * time.Second, 3 * time.Second}, {5 * time.Second, 0}, {5500 * time.Millisecond, 500 * time.Millisecond}, {6 * time.Second, 0}} {
		if got := l.allow(t0.Add(c.at)); got != c.wait {
			t.Errorf("event %d at %v: wait %v, want %v", i, c.at, got, c.wait)
		}
	}
}

func TestParseClientMessage(t *testing.T) {
	for _, c := range []struct {
		in   string
		want clientMessage
		err  error
	}{
		{`{"type":"name","name":"  Ann "}`, clientMessage{Type: "name", Name: "Ann"}, nil},
		{`{"type":"name","name":"` + strings.Repeat("é", 32) + `"}`, clientMessage{Type: "name", Name: strings.Repeat("é", 32)}, nil},
		{`{"type":"name","name":"` + strings.Repeat("é", 33) + `"}`, clientMessage{}, errBadName},
		{`{"type":"name","name":"   "}`, clientMessage{}, errBadName},
		{`{"type":"name","name":"a\u0000b"}`, clientMessage{}, errBadName},
		{`{"type":"name","name":"a\u202eb"}`, clientMessage{}, errBadName},
		{`{"type":"say","text":" <b>hi</b>\n "}`, clientMessage{Type: "say", Text: "<b>hi</b>"}, nil},
		{`{"type":"say","text":"two\nlines"}`, clientMessage{Type: "say", Text: "two\nlines"}, nil},
		{`{"type":"say","text":"bell\u0007"}`, clientMessage{}, errControl},
		{`{"type":"say","text":""}`, clientMessage{}, errEmptyText},
		{`{"type":"say"}`, clientMessage{}, errEmptyText},
		{`{"type":"say","text":"x","extra":1}`, clientMessage{}, errBadJSON},
		{`{"type":"say","text":"x"}x`, clientMessage{}, errBadJSON},
		{`[]`, clientMessage{}, errBadJSON},
		{`null`, clientMessage{}, errUnknownType},
		{`{"type":"kick"}`, clientMessage{}, errUnknownType},
	} {
		got, err := parseClientMessage([]byte(c.in), 20)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("%s: got %+v, %v; want %+v, %v", c.in, got, err, c.want, c.err)
		}
	}
	var tooLong *tooLongError
	if _, err := parseClientMessage([]byte(`{"type":"say","text":"`+strings.Repeat("x", 21)+`"}`), 20); !errors.As(err, &tooLong) {
		t.Errorf("21 bytes: %v, want a tooLongError", err)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The chat of a stream is for its viewers: a read key or play token is
// asked like for the media, an offline path has no room, and one address
// gets at most maxChatPerHost connections.
func TestChatAccess(t *testing.T) {
	pc := server.DefaultPathConfig()
	pc.ReadKey = "readkey-123"
	hub := server.NewHub(server.HubConfig{Logger: quietLog, PathConfig: func(p string) server.PathConfig {
		if p == "live/private" {
			return pc
		}
		return server.DefaultPathConfig()
	}})
	for _, p := range []string{"live/private", "live/open"} {
		if _, err := hub.PublishTrusted(p, []*media.Track{{Codec: media.CodecH264}}, server.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	_, srv := newTestServer(t, hub, DefaultConfig())
	base := "ws" + strings.TrimPrefix(srv.URL, "http")
	for _, tc := range []struct {
		path string
		code int
	}{{"live/private", 403}, {"live/private?key=wrong", 403}, {"live/nothing", 404}} {
		_, resp, err := websocket.DefaultDialer.Dial(base+"/chat/"+tc.path, nil)
		if err == nil || resp == nil || resp.StatusCode != tc.code {
			t.Errorf("chat %s: %v, want %d", tc.path, err, tc.code)
		}
	}
	c, _ := dial(t, base, "live/private?key=readkey-123")
	c.Close()
	var conns []*websocket.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range maxChatPerHost {
		c, _ := dial(t, base, "live/open")
		conns = append(conns, c)
	}
	_, resp, err := websocket.DefaultDialer.Dial(base+"/chat/live/open", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("one address past %d connections: %v", maxChatPerHost, err)
	}
}
