package api

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamhub/streamhub/registry"
	"github.com/streamhub/streamhub/server"
)

// fakeReloader is a Reloader whose next outcome the test sets.
type fakeReloader struct {
	next, last ReloadStatus
	calls      int
}

func (f *fakeReloader) Reload(trigger string) ReloadStatus {
	f.calls++
	f.next.Trigger = trigger
	f.last = f.next
	return f.last
}

func (f *fakeReloader) LastReload() ReloadStatus { return f.last }

func TestConfigReload(t *testing.T) {
	const admin = "0123456789abcdef"
	reg, err := registry.Open(filepath.Join(t.TempDir(), "s.db"), "live", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := server.NewHub(server.HubConfig{Logger: log})
	t.Cleanup(hub.Close)
	fr := &fakeReloader{last: ReloadStatus{OK: true}}
	srv := httptest.NewServer(New(Config{AdminToken: admin, Reloader: fr}, hub, reg, nil, log))
	t.Cleanup(srv.Close)
	e := &env{hub: hub, reg: reg, url: srv.URL}

	if code := e.do(t, "POST", "/api/v1/config/reload", "", "", nil); code != 401 || fr.calls != 0 {
		t.Fatalf("reload without the admin token: %d, %d reloads", code, fr.calls)
	}
	if code := e.do(t, "GET", "/api/v1/config/reload", "wrong-token-0123456", "", nil); code != 401 {
		t.Fatalf("status with a wrong token: %d", code)
	}
	fr.next = ReloadStatus{OK: true, At: time.Now(), Applied: []string{"log.level"}, NeedsRestart: []string{"rtmp.address"}, Successes: 1}
	var st ReloadStatus
	if code := e.do(t, "POST", "/api/v1/config/reload", admin, "", &st); code != 200 || !st.OK || st.Trigger != "api" ||
		st.NeedsRestart[0] != "rtmp.address" {
		t.Fatalf("reload: %d %+v", code, st)
	}
	fr.next = ReloadStatus{OK: false, At: time.Now(), Error: "config: log.level: must be debug, info, warn or error", Successes: 1, Failures: 1}
	if code := e.do(t, "POST", "/api/v1/config/reload", admin, "", &st); code != 422 || st.OK || !strings.Contains(st.Error, "log.level") {
		t.Fatalf("refused reload: %d %+v", code, st)
	}
	st = ReloadStatus{}
	if code := e.do(t, "GET", "/api/v1/config/reload", admin, "", &st); code != 200 || st.OK || st.Failures != 1 || st.At.IsZero() {
		t.Fatalf("last reload: %d %+v", code, st)
	}
	if code := e.do(t, "PUT", "/api/v1/config/reload", admin, "", nil); code != 405 {
		t.Fatalf("PUT: %d, want 405", code)
	}

	// /metrics shows the refusal.
	m := httptest.NewServer(Metrics(hub, nil, nil, ReloadMetrics(fr)))
	t.Cleanup(m.Close)
	resp, err := m.Client().Get(m.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"streamhub_config_reload_success 0", `streamhub_config_reloads_total{result="error"} 1`,
		`streamhub_config_reloads_total{result="ok"} 1`, "streamhub_config_last_reload_timestamp_seconds 1."} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
