package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestHTTPErrorLog: a failed TLS handshake (one per peer connection) is a
// debug line; anything else net/http says stays a warning.
func TestHTTPErrorLog(t *testing.T) {
	var buf bytes.Buffer
	l := httpErrorLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Printf("http: TLS handshake error from 192.0.2.1:5: EOF")
	l.Printf("http: superfluous response.WriteHeader call")
	out := buf.String()
	if !strings.Contains(out, `level=DEBUG msg="http: TLS handshake error`) || !strings.Contains(out, `level=WARN msg="http: superfluous`) {
		t.Errorf("levels:\n%s", out)
	}
}
