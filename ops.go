package main

import (
	"io"
	"net/http"
	"runtime/debug"
	"sync/atomic"

	"github.com/streamhub/streamhub/protocols/hls"
)

// opsState is what the operations endpoints and the reload share with
// runServe.
type opsState struct {
	reload *reloader
	// ready is true once every listener is up, false again at shutdown
	// (/readyz).
	ready atomic.Bool
	// hls is the HLS handler once the HTTP listener built it, for the
	// reload of its muxer settings.
	hls atomic.Pointer[hls.Handler]
}

// routes serves /healthz (200 while the process serves HTTP: alive) and
// /readyz (200 once every listener is up, 503 before and while shutting
// down), and passes everything else to next. Neither needs a token: they
// say nothing but ok.
func (o *opsState) routes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.Header().Set("Cache-Control", "no-store")
			io.WriteString(w, "ok\n") //nolint:errcheck // client gone
		case "/readyz":
			w.Header().Set("Cache-Control", "no-store")
			if !o.ready.Load() {
				http.Error(w, "not ready: listeners starting or shutting down", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ready\n") //nolint:errcheck // client gone
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// versionLong is what `streamhub version` prints: the version line, then
// the build as `go version -m` shows it: the Go version, the main module,
// every dependency module with its version and sum, and the build settings
// (VCS revision, CGO_ENABLED, ...).
func versionLong() string {
	v := versionString() + "\n"
	if bi, ok := debug.ReadBuildInfo(); ok {
		v += bi.String()
	}
	return v
}
