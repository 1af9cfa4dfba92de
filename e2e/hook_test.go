//go:build e2e

package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// The auth hook decides on real publishers and readers: it allows
// live/ok, denies live/deny and does not answer in time for live/slow
// (refused: the hook fails closed). It sees each request's protocol.
func TestAuthHook(t *testing.T) {
	var mu sync.Mutex
	var seen []map[string]string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]string
		json.NewDecoder(r.Body).Decode(&req) //nolint:errcheck
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
		switch req["path"] {
		case "live/deny":
			http.Error(w, "no", http.StatusForbidden)
		case "live/slow":
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
			}
		}
	}))
	defer hook.Close()
	s := startServer(t, "auth:\n  hookURL: "+hook.URL+"\n  hookTimeout: 500ms\n")

	pub := startPublisher(t, s.rtmpURL("live/ok"))
	waitLive(t, s, "live/ok", pub)
	decode(t, s.flvURL("live/ok"), 1).check(t, 10, 10)
	for _, p := range []string{"live/deny", "live/slow"} {
		if _, _, code := run(t, 20*time.Second, "ffmpeg", publisherArgs(s.rtmpURL(p), "-t", "2")...); code == 0 {
			t.Errorf("publishing %s succeeded, want refused by the hook", p)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	kinds := map[string]bool{}
	for _, r := range seen {
		kinds[r["action"]+" "+r["path"]+" "+r["protocol"]] = true
		if r["remote"] == "" {
			t.Errorf("the hook got no remote address: %v", r)
		}
	}
	for _, want := range []string{"publish live/ok rtmp", "read live/ok httpflv", "publish live/deny rtmp", "publish live/slow rtmp"} {
		if !kinds[want] {
			t.Errorf("the hook was not asked %q (asked: %v)", want, kinds)
		}
	}
}
