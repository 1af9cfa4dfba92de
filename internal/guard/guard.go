// Package guard keeps one peer from taking the server down or locking
// others out: a panic ends one session, not the process (Recover); a
// listener never vanishes on EMFILE and caps connections per address
// (Listen); nothing a peer sends reaches the log unbounded (Truncate), and
// repeated refusals from one address become one line per window (Summary);
// an address that keeps failing authentication is throttled (Budget).
//
// Every protocol, the API, the web pages and the ladder use it; it imports
// nothing of streamhub's, so any package may.
package guard

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync/atomic"
	"unicode/utf8"
)

var panics atomic.Uint64

// Panics returns how many panics Recover has caught since the process
// started (streamhub_panics_total).
func Panics() uint64 { return panics.Load() }

// ErrPanic is set by RecoverErr when the call it guards panicked.
var ErrPanic = errors.New("internal error (a panic, logged with its stack): the session was ended")

// Recover, deferred directly at the top of a goroutine or callback that
// serves one peer, turns a panic into one error line with the stack and a
// count in Panics, so that only this peer's session ends. attrs name the
// session (path, remote) for the log.
//
//	defer guard.Recover(log, "rtmp connection", "remote", addr)
func Recover(log *slog.Logger, what string, attrs ...any) {
	if v := recover(); v != nil {
		logPanic(log, what, v, attrs)
	}
}

// RecoverErr is Recover for a function with a named error result: it sets
// *err to ErrPanic, so the caller (often a library's session loop) ends
// the session the usual way.
//
//	func (h *handler) OnPlay(...) (res *base.Response, err error) {
//		defer guard.RecoverErr(log, "rtsp play", &err)
func RecoverErr(log *slog.Logger, what string, err *error, attrs ...any) {
	if v := recover(); v != nil {
		logPanic(log, what, v, attrs)
		if err != nil {
			*err = ErrPanic
		}
	}
}

// Report logs and counts a panic value that the caller recovered itself
// (when the deferred function must do more than Recover does, such as
// answer the peer or close its session).
//
//	defer func() {
//		if v := recover(); v != nil {
//			guard.Report(log, "rtsp play loop", v)
//			session.Close()
//		}
//	}()
func Report(log *slog.Logger, what string, v any, attrs ...any) { logPanic(log, what, v, attrs) }

func logPanic(log *slog.Logger, what string, v any, attrs []any) {
	panics.Add(1)
	if log == nil {
		log = slog.Default()
	}
	args := append([]any{"in", what, "panic", Truncate(fmt.Sprint(v))}, attrs...)
	args = append(args, "stack", string(debug.Stack()))
	log.Error("panic: session ended, server goes on", args...)
}

// Go runs f in a new goroutine under Recover.
func Go(log *slog.Logger, what string, f func(), attrs ...any) {
	go func() {
		defer Recover(log, what, attrs...)
		f()
	}()
}

// MaxLogValue is how many bytes of a peer-supplied value a log line keeps.
const MaxLogValue = 256

// Truncate returns s cut to MaxLogValue bytes (on a rune boundary) with
// how long it was, for logging a value a peer chose.
func Truncate(s string) string {
	if len(s) <= MaxLogValue {
		return s
	}
	cut := MaxLogValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:cut], len(s))
}

// HTTPHandler wraps h so that a panic in a request is logged and counted
// as Recover does, then aborts that one connection (http.ErrAbortHandler,
// which net/http does not log again). net/http already keeps the process
// alive; this makes the panic visible in Panics and with its request.
func HTTPHandler(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v != http.ErrAbortHandler { //nolint:errorlint // net/http compares it the same way
				logPanic(log, "http request", v, []any{"method", r.Method, "uri", Truncate(r.RequestURI), "remote", r.RemoteAddr})
			}
			panic(http.ErrAbortHandler)
		}()
		h.ServeHTTP(w, r)
	})
}
