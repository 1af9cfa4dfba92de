package main

import (
	"context"
	stdlog "log"
	"log/slog"
	"strings"

	"github.com/streamhub/streamhub/internal/guard"
)

// httpErrorLog is net/http's error log: a warning per line, except the
// line it writes for every failed TLS handshake (a scanner, a client that
// distrusts the certificate, a name ACME has no certificate for yet, which
// tlscert logs once), which goes to debug: one peer could fill the log
// with them.
func httpErrorLog(log *slog.Logger) *stdlog.Logger {
	return stdlog.New(httpLogWriter{log}, "", 0)
}

type httpLogWriter struct{ log *slog.Logger }

func (w httpLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	lvl := slog.LevelWarn
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		lvl = slog.LevelDebug
	}
	w.log.Log(context.Background(), lvl, guard.Truncate(msg))
	return len(p), nil
}
