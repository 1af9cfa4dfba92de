package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthAndReady(t *testing.T) {
	o := &opsState{}
	h := o.routes(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	get := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code
	}
	if get("/healthz") != 200 || get("/readyz") != 503 {
		t.Errorf("before the listeners are up: healthz %d readyz %d, want 200 and 503", get("/healthz"), get("/readyz"))
	}
	o.ready.Store(true)
	if get("/readyz") != 200 {
		t.Errorf("ready: readyz %d, want 200", get("/readyz"))
	}
	if get("/live/x.flv") != http.StatusTeapot || get("/healthz/x") != http.StatusTeapot {
		t.Errorf("other paths are not passed on")
	}
}

func TestVersionLong(t *testing.T) {
	v := versionLong()
	first, rest, _ := strings.Cut(v, "\n")
	if first != versionString() {
		t.Errorf("first line %q, want %q", first, versionString())
	}
	// A test binary has build info with its dependencies.
	if !strings.Contains(rest, "\ndep\tgithub.com/fsnotify/fsnotify\tv1.10.1") || !strings.HasPrefix(rest, "go\tgo1.") {
		t.Errorf("version lacks the Go version or the module versions:\n%s", v)
	}
}
