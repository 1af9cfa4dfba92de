// Package httpflv serves hub streams as HTTP-FLV (GET/HEAD /<path>.flv) for
// mpegts.js, flv.js, ffmpeg and VLC, and as WebSocket-FLV (a WebSocket
// upgrade of the same URL, ws.go) for mpegts.js.
//
//	hub Reader ──NextBatch──▶ flv.Muxer ──shared tag bytes──▶ one writev per wake-up
//
// The tag of each unit is built once per stream (media.Unit.Memo) and the
// same bytes go to every FLV and RTMP reader. A reader that wakes up writes
// everything queued for it in one writev on the hijacked connection, in HTTP
// chunked framing.
package httpflv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/internal/connset"
	"github.com/streamhub/streamhub/protocols/internal/fanout"
	"github.com/streamhub/streamhub/protocols/internal/flv"
	"github.com/streamhub/streamhub/protocols/internal/httperr"
	"github.com/streamhub/streamhub/server"
)

// Config configures a Handler.
type Config struct {
	// WriteTimeout closes a reader whose socket accepts nothing for this long.
	WriteTimeout time.Duration
}

// maxBatch bounds the units written in one writev.
const maxBatch = 512

// Handler serves /<path>.flv. Mount it for paths ending in ".flv".
type Handler struct {
	conf Config
	hub  *server.Hub
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	conns  connset.Set
	passes fanout.Passes // the readers of hijacked TCP connections
}

// New returns a handler reading from hub.
func New(c Config, hub *server.Hub, log *slog.Logger) *Handler {
	ctx, cancel := context.WithCancel(context.Background())
	h := &Handler{conf: c, hub: hub, log: log.With("proto", "httpflv"), ctx: ctx, cancel: cancel}
	h.passes.Log = h.log
	return h
}

// Close ends every FLV session (their connections are hijacked, so
// http.Server.Shutdown does not see them) and waits for them.
func (h *Handler) Close() {
	h.cancel()
	h.conns.CloseAll()
	h.wg.Wait()
}

// PathOf returns the stream path of an FLV URL path ("/live/x.flv" → "live/x").
func PathOf(urlPath string) (string, bool) {
	p, ok := strings.CutSuffix(strings.TrimPrefix(urlPath, "/"), ".flv")
	return p, ok
}

func setCORS(hd http.Header) {
	hd.Set("Access-Control-Allow-Origin", "*")
	hd.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
	hd.Set("Access-Control-Allow-Headers", "*")
}

// ServeHTTP serves one FLV request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	setCORS(w.Header())
	switch req.Method {
	case http.MethodOptions:
		w.Header().Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodGet, http.MethodHead:
	default:
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed: use GET or HEAD", http.StatusMethodNotAllowed)
		return
	}
	path, ok := PathOf(req.URL.Path)
	if !ok {
		http.Error(w, "not an FLV URL: use /<path>.flv", http.StatusNotFound)
		return
	}
	if req.Method == http.MethodGet && IsWebSocket(req) {
		h.serveWS(w, req, path)
		return
	}
	r, err := h.hub.Read(req.Context(), path, server.ReadRequest{Key: req.URL.Query().Get("key"), Wait: true,
		Peer: server.Peer{Protocol: "httpflv", Remote: req.RemoteAddr, Query: req.URL.RawQuery}})
	if err != nil {
		httperr.Refuse(w, path, err)
		return
	}
	w.Header().Set("Content-Type", "video/x-flv")
	w.Header().Set("Cache-Control", "no-cache, no-store")
	if req.Method == http.MethodHead {
		r.Close()
		w.WriteHeader(http.StatusOK)
		return
	}

	h.wg.Add(1)
	start := time.Now()
	remote := req.RemoteAddr
	h.log.Info("session opened", "path", path, "remote", remote)
	mux := flv.NewMuxer(r.Tracks())
	end := func(n int64, err error) {
		if merr := mux.Err(); merr != nil {
			err = fmt.Errorf("%w (a track was dropped: %v)", err, merr)
		}
		h.log.Info("session closed", "path", path, "remote", remote, "bytes", n,
			"duration", time.Since(start).Round(time.Millisecond), "drops", r.Stats().Drops, "cause", err.Error())
		r.Close()
		h.wg.Done()
	}
	n, err := h.serve(w, req, r, mux, end)
	if !errors.Is(err, errDetached) {
		end(n, err)
	}
}

// errDetached is serve's answer when the session goes on in a goroutine
// of its own, which calls end.
var errDetached = errors.New("detached")

// serve streams until the reader or the connection ends; it always returns
// a non-nil error saying why.
func (h *Handler) serve(w http.ResponseWriter, req *http.Request, r *server.Reader, mux *flv.Muxer, end func(int64, error)) (int64, error) {
	hj, ok := w.(http.Hijacker)
	if !ok { // HTTP/2: no hijacking; write through the ResponseWriter
		return h.serveWriter(w, req, r, mux)
	}
	nc, _, err := hj.Hijack()
	if err != nil {
		return 0, fmt.Errorf("hijack: %w", err)
	}
	if !h.conns.Add(nc) {
		nc.Close()
		return 0, errors.New("shutting down")
	}

	chunked := req.ProtoAtLeast(1, 1)
	head := "HTTP/1.1 200 OK\r\n"
	for k, v := range w.Header() {
		head += k + ": " + strings.Join(v, ", ") + "\r\n"
	}
	if chunked {
		head += "Transfer-Encoding: chunked\r\n"
	}
	head += "Connection: close\r\n\r\n"

	tags := [][]byte{[]byte(head), nil, flv.FileHeader(mux.HasVideo(), mux.HasAudio()), mux.MetadataTag()}
	payloadStart := 2 // tags[1] is the chunk-size line, filled below
	if !chunked {
		tags = append(tags[:1], tags[2:]...)
		payloadStart = 1
	}
	if _, ok := nc.(syscall.Conn); ok {
		// The session goes on in a goroutine of its own, so that this one
		// returns and net/http lets go of the connection's buffers and the
		// handler's stack (4 KiB + 4 KiB + a deep stack per reader).
		go func() {
			var n int64
			err := errors.New("panic")
			defer func() { end(n, err) }()
			defer h.conns.Remove(nc)
			defer nc.Close()
			defer guard.Recover(h.log, "httpflv session", "remote", req.RemoteAddr)
			n, err = h.servePass(nc, r, mux, chunked, tags)
		}()
		return 0, errDetached
	}
	defer nc.Close()
	defer h.conns.Remove(nc)
	var sizeLine [20]byte
	var deadlineSet time.Time
	batch := make([]*media.Unit, 0, maxBatch)
	var total int64
	for {
		size := 0
		for _, t := range tags[payloadStart:] {
			size += len(t)
		}
		if size > 0 {
			if chunked {
				tags[payloadStart-1] = append(strconv.AppendInt(sizeLine[:0], int64(size), 16), '\r', '\n')
				tags = append(tags, crlf)
			}
			// Moving a deadline costs a timer update; refresh it only when a
			// quarter of it has passed, so a write always has at least
			// three quarters of WriteTimeout.
			if now := time.Now(); now.Sub(deadlineSet) > h.conf.WriteTimeout/4 {
				nc.SetWriteDeadline(now.Add(h.conf.WriteTimeout))
				deadlineSet = now
			}
			bufs := net.Buffers(tags)
			n, err := fanout.WriteBuffers(nc, &bufs) // one writev; a few writes for TLS
			total += n
			r.AddBytesOut(int(n))
			if err != nil {
				return total, fmt.Errorf("write: %w", err)
			}
		}
		clear(tags)
		tags = tags[:0]
		if chunked {
			tags = append(tags, nil)
			payloadStart = 1
		} else {
			payloadStart = 0
		}

		var err error
		batch, err = r.NextBatch(h.ctx, batch[:0])
		if err != nil {
			if chunked && errors.Is(err, server.ErrStreamClosed) {
				nc.SetWriteDeadline(time.Now().Add(h.conf.WriteTimeout))
				nc.Write([]byte("0\r\n\r\n")) //nolint:errcheck // the stream is over either way
			}
			return total, err
		}
		for _, u := range batch {
			tags = mux.Append(tags, u)
		}
		clear(batch)
	}
}

var crlf = []byte("\r\n")

// sharedFLV and sharedChunked encode a batch once for every reader the
// pass finds in step with the stream (flv.Muxer.Plain): each unit's own
// tag, in an HTTP chunk for sharedChunked.
var (
	sharedFLV = &fanout.Shared{Encode: func(dst [][]byte, batch []*media.Unit) [][]byte {
		return encodeBatch(dst, batch, nil, false, nil)
	}}
	sharedChunked = &fanout.Shared{Encode: func(dst [][]byte, batch []*media.Unit) [][]byte {
		return encodeBatch(dst, batch, nil, true, nil)
	}}
)

// encodeBatch appends the tags of batch to dst, through mux (nil: each
// unit's own tag), as one HTTP chunk when chunked; the chunk-size line is
// made in sizeLine's memory.
func encodeBatch(dst [][]byte, batch []*media.Unit, mux *flv.Muxer, chunked bool, sizeLine []byte) [][]byte {
	if chunked {
		dst = append(dst, nil)
	}
	i := len(dst)
	for _, u := range batch {
		if mux != nil {
			dst = mux.Append(dst, u)
		} else {
			dst = flv.AppendUnit(dst, u)
		}
	}
	if !chunked {
		return dst
	}
	size := 0
	for _, t := range dst[i:] {
		size += len(t)
	}
	if size == 0 {
		return dst[:i-1]
	}
	dst[i-1] = append(strconv.AppendInt(sizeLine, int64(size), 16), '\r', '\n')
	return append(dst, crlf)
}

// servePass hands the reader to its stream's pass (fanout): one goroutine
// per stream writes every due reader in turn without blocking; this one
// only writes what its socket could not take at once. tags are the HTTP
// head and the FLV header and metadata (framed as tags[1] says when
// chunked).
func (h *Handler) servePass(nc net.Conn, r *server.Reader, mux *flv.Muxer, chunked bool, tags [][]byte) (int64, error) {
	first := tags
	if chunked {
		size := 0
		for _, t := range tags[2:] {
			size += len(t)
		}
		first[1] = append(strconv.AppendInt(nil, int64(size), 16), '\r', '\n')
		first = append(first, crlf)
	}
	var sizeLine [20]byte
	encode := func(dst [][]byte, batch []*media.Unit) [][]byte {
		return encodeBatch(dst, batch, mux, chunked, sizeLine[:0])
	}
	shared := sharedFLV
	if chunked {
		shared = sharedChunked
	}
	n, err := h.passes.Serve(h.ctx, &fanout.Sink{Reader: r, Conn: nc, Encode: encode, Shared: shared, Plain: mux.Plain, SoleWriter: true,
		WriteTimeout: h.conf.WriteTimeout, WatchClose: true}, first)
	if chunked && errors.Is(err, server.ErrStreamClosed) {
		nc.SetWriteDeadline(time.Now().Add(h.conf.WriteTimeout))
		nc.Write([]byte("0\r\n\r\n")) //nolint:errcheck // the stream is over either way
	}
	return n, err
}

// serveWriter is serve for connections that cannot be hijacked (HTTP/2).
func (h *Handler) serveWriter(w http.ResponseWriter, req *http.Request, r *server.Reader, mux *flv.Muxer) (int64, error) {
	rc := http.NewResponseController(w)
	// End with the request or with the handler (shutdown), whichever first.
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel)
	defer stop()
	w.WriteHeader(http.StatusOK)
	tags := [][]byte{flv.FileHeader(mux.HasVideo(), mux.HasAudio()), mux.MetadataTag()}
	batch := make([]*media.Unit, 0, maxBatch)
	var total int64
	for {
		rc.SetWriteDeadline(time.Now().Add(h.conf.WriteTimeout)) //nolint:errcheck // best effort on HTTP/2
		for _, t := range tags {
			n, err := w.Write(t)
			total += int64(n)
			r.AddBytesOut(n)
			if err != nil {
				return total, fmt.Errorf("write: %w", err)
			}
		}
		if err := rc.Flush(); err != nil {
			return total, fmt.Errorf("flush: %w", err)
		}
		clear(tags)
		tags = tags[:0]
		var err error
		batch, err = r.NextBatch(ctx, batch[:0])
		if err != nil {
			return total, err
		}
		for _, u := range batch {
			tags = mux.Append(tags, u)
		}
		clear(batch)
	}
}
