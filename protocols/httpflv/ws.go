package httpflv

// WebSocket-FLV: ws(s)://HOST/<path>.flv, what mpegts.js plays with
// {type: 'flv', isLive: true, url: 'ws://...'}. The same FLV stream as
// HTTP-FLV, each write one binary WebSocket message:
//
//	hub Reader ──pass (fanout)──▶ [frame header][shared FLV tags…] ──one writev──▶ socket
//	peer ──frames──▶ gorilla/websocket reader (close, ping: ignored, data: ignored) ──▶ Done
//
// gorilla/websocket answers the upgrade and reads what the peer sends; the
// media frames are written by the stream's pass like HTTP-FLV's chunks, a
// server frame being a few bytes of header (server frames are not masked)
// before the shared tags. A TLS connection (wss://) cannot be written
// without blocking by the pass: its own goroutine writes it.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/internal/fanout"
	"github.com/streamhub/streamhub/protocols/internal/flv"
	"github.com/streamhub/streamhub/protocols/internal/httperr"
	"github.com/streamhub/streamhub/server"
)

// wsReadLimit bounds one message a WebSocket-FLV viewer may send (it has
// nothing to say; a close frame is 125 bytes at most).
const wsReadLimit = 4 << 10

// wsHandshakeTimeout bounds writing the 101 answer.
const wsHandshakeTimeout = 10 * time.Second

var upgrader = websocket.Upgrader{
	HandshakeTimeout: wsHandshakeTimeout,
	// The media goes out through our own frames; gorilla only reads.
	ReadBufferSize:  1024,
	WriteBufferSize: 256,
	// A player on any site may play, as HTTP-FLV's CORS header allows;
	// the keys and signed links guard the streams.
	CheckOrigin: func(*http.Request) bool { return true },
}

// IsWebSocket reports whether req asks for WebSocket-FLV (a WebSocket
// upgrade of /<path>.flv).
func IsWebSocket(req *http.Request) bool { return websocket.IsWebSocketUpgrade(req) }

// serveWS serves one WebSocket-FLV viewer of path: it passes the hub's
// guarded door first (a refusal is an HTTP status, which the browser's
// WebSocket reports as a failed connection), then upgrades.
func (h *Handler) serveWS(w http.ResponseWriter, req *http.Request, path string) {
	r, err := h.hub.Read(req.Context(), path, server.ReadRequest{Key: req.URL.Query().Get("key"), Wait: true,
		Peer: server.Peer{Protocol: "wsflv", Remote: req.RemoteAddr, Query: req.URL.RawQuery}})
	if err != nil {
		httperr.Refuse(w, path, err)
		return
	}
	ws, err := upgrader.Upgrade(w, req, nil) // answers a failure itself
	if err != nil {
		r.Close()
		h.log.Debug("websocket upgrade failed", "path", path, "remote", req.RemoteAddr, "cause", guard.Truncate(err.Error()))
		return
	}
	nc := ws.NetConn()
	if !h.conns.Add(nc) {
		nc.Close()
		r.Close()
		return
	}
	h.wg.Add(1)
	remote := req.RemoteAddr
	h.log.Info("session opened", "path", path, "remote", remote, "transport", "websocket")
	// The session goes on in goroutines of its own, as HTTP-FLV's does, so
	// that net/http lets go of this one's buffers and stack.
	go func() {
		defer h.wg.Done()
		start := time.Now()
		mux := flv.NewMuxer(r.Tracks())
		var n int64
		err := errors.New("panic")
		defer func() {
			if merr := mux.Err(); merr != nil {
				err = fmt.Errorf("%w (a track was dropped: %v)", err, merr)
			}
			h.log.Info("session closed", "path", path, "remote", remote, "transport", "websocket", "bytes", n,
				"duration", time.Since(start).Round(time.Millisecond), "drops", r.Stats().Drops, "cause", err.Error())
			r.Close()
		}()
		defer h.conns.Remove(nc)
		defer nc.Close()
		defer guard.Recover(h.log, "wsflv session", "remote", remote)
		n, err = h.wsSession(ws, nc, r, mux)
	}()
}

// wsSession streams r to the viewer until either ends; it always returns a
// non-nil error saying why.
func (h *Handler) wsSession(ws *websocket.Conn, nc net.Conn, r *server.Reader, mux *flv.Muxer) (int64, error) {
	// The peer's frames are read (and dropped) by gorilla in a goroutine
	// of its own: done closes when the peer closes or leaves. Nothing is
	// answered from there (no pong, no close echo): only the media writer
	// writes the connection.
	ws.SetReadLimit(wsReadLimit)
	ws.SetPingHandler(func(string) error { return nil })
	ws.SetCloseHandler(func(int, string) error { return nil })
	nc.SetReadDeadline(time.Time{}) //nolint:errcheck // net/http's request deadline no longer applies
	done := make(chan struct{})
	var readErr error
	go func() {
		defer close(done)
		defer guard.Recover(h.log, "wsflv reader", "remote", nc.RemoteAddr().String())
		for {
			if _, _, err := ws.NextReader(); err != nil {
				readErr = err
				return
			}
		}
	}()
	left := func(err error) error {
		select {
		case <-done:
			if readErr != nil {
				return fmt.Errorf("the peer left: %w", readErr)
			}
			return errors.New("the peer left")
		default:
			return err
		}
	}

	var hdr [maxWSHeader]byte
	encode := func(dst [][]byte, batch []*media.Unit) [][]byte {
		dst = append(dst, nil)
		i := len(dst)
		for _, u := range batch {
			dst = mux.Append(dst, u)
		}
		size := 0
		for _, t := range dst[i:] {
			size += len(t)
		}
		if size == 0 {
			return dst[:i-1]
		}
		dst[i-1] = appendWSHeader(hdr[:0], size)
		return dst
	}
	first := [][]byte{nil, flv.FileHeader(mux.HasVideo(), mux.HasAudio()), mux.MetadataTag()}
	first[0] = appendWSHeader(nil, len(first[1])+len(first[2]))

	var n int64
	var err error
	if _, ok := nc.(syscall.Conn); ok {
		n, err = h.passes.Serve(h.ctx, &fanout.Sink{Reader: r, Conn: nc, Encode: encode, WriteTimeout: h.conf.WriteTimeout, Done: done}, first)
	} else {
		n, err = h.wsLoop(nc, r, encode, first, done)
	}
	err = left(err)
	if errors.Is(err, server.ErrStreamClosed) {
		// A clean end: the close frame says so (mpegts.js reports it as
		// the end of the stream).
		nc.SetWriteDeadline(time.Now().Add(h.conf.WriteTimeout))                       //nolint:errcheck // a closed conn fails the write
		nc.Write(appendWSClose(nil, websocket.CloseNormalClosure, "the stream ended")) //nolint:errcheck // the session is over either way
	}
	return n, err
}

// wsLoop is the session of a connection the pass cannot write (TLS): a
// loop that waits for the reader's units and writes each batch as one
// message with the write timeout.
func (h *Handler) wsLoop(nc net.Conn, r *server.Reader, encode func([][]byte, []*media.Unit) [][]byte,
	first [][]byte, done <-chan struct{}) (int64, error) {
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	bufs := first
	batch := make([]*media.Unit, 0, maxBatch)
	var total int64
	for {
		if len(bufs) > 0 {
			nc.SetWriteDeadline(time.Now().Add(h.conf.WriteTimeout)) //nolint:errcheck // a closed conn fails the write
			b := net.Buffers(bufs)
			n, err := fanout.WriteBuffers(nc, &b)
			total += n
			r.AddBytesOut(int(n))
			if err != nil {
				return total, fmt.Errorf("write: %w", err)
			}
		}
		clear(bufs)
		bufs = bufs[:0]
		var err error
		batch, err = r.NextBatch(ctx, batch[:0])
		if err != nil {
			return total, err
		}
		bufs = encode(bufs, batch)
		clear(batch)
	}
}

// maxWSHeader is the longest header of an unmasked server frame.
const maxWSHeader = 10

// appendWSHeader appends the header of one final, unmasked binary frame of
// size payload bytes (RFC 6455 §5.2).
func appendWSHeader(dst []byte, size int) []byte {
	const finBinary = 0x80 | websocket.BinaryMessage
	switch {
	case size < 126:
		return append(dst, finBinary, byte(size))
	case size <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, finBinary, 126), uint16(size))
	default:
		return binary.BigEndian.AppendUint64(append(dst, finBinary, 127), uint64(size))
	}
}

// appendWSClose appends an unmasked close frame with code and reason (at
// most 123 bytes).
func appendWSClose(dst []byte, code int, reason string) []byte {
	reason = reason[:min(len(reason), 123)]
	dst = append(dst, 0x80|websocket.CloseMessage, byte(2+len(reason)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}
