package auth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamhub/streamhub/server"
)

// hookServer answers with status after delay and records the requests.
func hookServer(t *testing.T, status int, delay time.Duration) (*httptest.Server, *atomic.Int64, chan server.AuthRequest) {
	var n atomic.Int64
	got := make(chan server.AuthRequest, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		var req server.AuthRequest
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&req) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got <- req
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, &n, got
}

func newHub(t *testing.T, c server.HubConfig) *server.Hub {
	c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h := server.NewHub(c)
	t.Cleanup(h.Close)
	return h
}

// The hook allows (2xx), denies (anything else) and fails closed when it
// does not answer in time; the hub refuses with ErrUnauthorized.
func TestHook(t *testing.T) {
	from := server.Peer{Protocol: "rtmp", Remote: "198.51.100.7:4321", Query: "token=abc&key=sk_secret"}

	srv, _, got := hookServer(t, http.StatusNoContent, 0)
	hub := newHub(t, server.HubConfig{Authorize: NewHook(srv.URL, time.Second).Authorize})
	p, err := publishCheck(hub, "live/a", from)
	if err != nil || p != "live/a" {
		t.Fatalf("allowed publish: %q %v", p, err)
	}
	if r := <-got; r != (server.AuthRequest{Action: "publish", Path: "live/a", Protocol: "rtmp", Remote: "198.51.100.7:4321", Query: "token=abc"}) {
		t.Fatalf("the hook got %+v (the key must not leave the server)", r)
	}
	if err := hub.Authorize(context.Background(), "live/a", server.ReadRequest{Key: "", Peer: from}); err != nil {
		t.Fatalf("allowed read: %v", err)
	}

	srv, _, _ = hookServer(t, http.StatusForbidden, 0)
	hub = newHub(t, server.HubConfig{Authorize: NewHook(srv.URL, time.Second).Authorize})
	if _, err := publishCheck(hub, "live/a", from); !errors.Is(err, server.ErrUnauthorized) || !strings.Contains(err.Error(), "403") {
		t.Fatalf("denied publish: %v", err)
	}
	if err := hub.Authorize(context.Background(), "live/a", server.ReadRequest{Key: "", Peer: from}); !errors.Is(err, server.ErrUnauthorized) {
		t.Fatalf("denied read: %v", err)
	}

	srv, _, _ = hookServer(t, http.StatusOK, 5*time.Second)
	hub = newHub(t, server.HubConfig{Authorize: NewHook(srv.URL, 300*time.Millisecond).Authorize})
	start := time.Now()
	err = hub.Authorize(context.Background(), "live/a", server.ReadRequest{Key: "", Peer: from})
	if !errors.Is(err, server.ErrUnauthorized) || !strings.Contains(err.Error(), "hookTimeout") {
		t.Fatalf("a hook that does not answer: %v, want a refusal", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the refusal took %v", took)
	}

	hub = newHub(t, server.HubConfig{Authorize: NewHook("http://127.0.0.1:1/none", time.Second).Authorize})
	if err := hub.Authorize(context.Background(), "live/a", server.ReadRequest{Key: "", Peer: from}); !errors.Is(err, server.ErrUnauthorized) {
		t.Fatalf("a hook that cannot be reached: %v, want a refusal", err)
	}
}

// An allowed read is remembered per address, so an HLS player's requests
// do not each cost a hook call; publishes are always asked.
func TestHookCache(t *testing.T) {
	srv, n, _ := hookServer(t, http.StatusOK, 0)
	h := NewHook(srv.URL, time.Second)
	hub := newHub(t, server.HubConfig{Authorize: h.Authorize})
	for i := range 5 {
		from := server.Peer{Protocol: "hls", Remote: "198.51.100.7:" + string(rune('1'+i)) + "000"}
		if err := hub.Authorize(context.Background(), "live/a", server.ReadRequest{Key: "", Peer: from}); err != nil {
			t.Fatal(err)
		}
	}
	if n.Load() != 1 {
		t.Fatalf("5 reads from one address: %d hook calls, want 1", n.Load())
	}
	hub.Authorize(context.Background(), "live/a", server.ReadRequest{Key: "", Peer: server.Peer{Protocol: "hls", Remote: "198.51.100.8:1"}}) //nolint:errcheck
	publishCheck(hub, "live/b", server.Peer{Protocol: "rtmp", Remote: "198.51.100.7:1"})                                                     //nolint:errcheck
	publishCheck(hub, "live/b", server.Peer{Protocol: "rtmp", Remote: "198.51.100.7:1"})                                                     //nolint:errcheck
	if n.Load() != 4 {
		t.Fatalf("%d hook calls, want 4 (another address, and each publish)", n.Load())
	}
}

func TestSigner(t *testing.T) {
	s := NewSigner("0123456789abcdef-secret", false)
	tok := s.Sign("live/a", time.Now().Add(time.Hour))
	if !strings.HasPrefix(tok, "s1.") {
		t.Fatalf("token %q", tok)
	}
	for _, tc := range []struct {
		path, key string
		ok        bool
		err       error
	}{
		{"live/a", tok, true, nil},
		{"live/b", tok, false, ErrTokenInvalid},
		{"live/a", forge(tok), false, ErrTokenInvalid},
		{"live/a", s.Sign("live/a", time.Now().Add(-time.Second)), false, ErrTokenExpired},
		{"live/a", NewSigner("another-secret-0123", false).Sign("live/a", time.Now().Add(time.Hour)), false, ErrTokenInvalid},
		{"live/a", "s1.notanumber.abc", false, ErrTokenInvalid},
		{"live/a", "", false, nil},
		{"live/a", "plainkey", false, nil},
	} {
		ok, err := s.Check(tc.path, tc.key)
		if ok != tc.ok || !errors.Is(err, tc.err) {
			t.Errorf("Check(%q, %q) = %v %v, want %v %v", tc.path, tc.key, ok, err, tc.ok, tc.err)
		}
	}
	req := NewSigner("0123456789abcdef-secret", true)
	if _, err := req.Check("live/a", ""); !errors.Is(err, ErrTokenRequired) {
		t.Fatalf("required, none given: %v", err)
	}

	// In the hub: a token instead of the read key, and the source's token
	// plays its ladder rungs.
	conf := func(p string) server.PathConfig {
		pc := server.DefaultPathConfig()
		pc.ReadKey = "readkey-0123"
		if p == "live/a/240p" {
			pc.RungOf = "live/a"
		}
		return pc
	}
	hub := newHub(t, server.HubConfig{PathConfig: conf, ReadToken: s.Check})
	for _, tc := range []struct {
		path, key string
		ok        bool
	}{
		{"live/a", tok, true}, {"live/a", "readkey-0123", true}, {"live/a", "", false}, {"live/b", tok, false},
		{"live/a/240p", tok, true}, {"live/a/240p", s.Sign("live/a/240p", time.Now().Add(time.Hour)), true},
	} {
		if err := hub.Authorize(context.Background(), tc.path, server.ReadRequest{Key: tc.key, Peer: server.Peer{}}); (err == nil) != tc.ok {
			t.Errorf("read %s with %q: %v, want ok %v", tc.path, tc.key, err, tc.ok)
		}
	}
}

// forge changes the last character of a token's signature.
func forge(tok string) string {
	last := "0"
	if strings.HasSuffix(tok, "0") {
		last = "1"
	}
	return tok[:len(tok)-1] + last
}

// publishCheck asks the hub whether from may publish on path (and gives
// the path back), as a protocol does.
func publishCheck(hub *server.Hub, path string, from server.Peer) (string, error) {
	c, err := hub.Publish(context.Background(), path, server.PublishRequest{Peer: from})
	if err != nil {
		return "", err
	}
	c.Release()
	return c.Path(), nil
}
