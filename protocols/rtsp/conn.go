package rtsp

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/protocols/internal/fanout"
)

// listener is the RTSP TCP listener (gortsplib's Server.Listen hook):
// guard.Listen's accept retry and per-address cap, and connections with
// a read deadline gortsplib does not set itself.
type listener struct {
	*guard.Listener
	readTimeout time.Duration
	tls         *tls.Config // RTSPS: each connection is a TLS server's
}

// Accept returns the next connection, already with a deadline for its
// first request.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.tls != nil {
		// The handshake runs at gortsplib's first read, under the
		// deadline set below.
		c = tls.Server(c, l.tls)
	}
	dc := &deadlineConn{Conn: c, timeout: l.readTimeout, fresh: true, limit: time.Now().Add(l.readTimeout)}
	c.SetReadDeadline(dc.limit) //nolint:errcheck // a closed conn fails its first read anyway
	return dc, nil
}

// deadlineConn bounds how long one RTSP message may take to arrive, and how
// long a connection may wait between requests before it plays or records. gortsplib
// waits for the first bytes of a connection with no deadline at all (its
// tunnel detection), and gives every later message its idle timeout (60 s)
// whole, so a peer sending nothing, or half a request, held a descriptor
// for minutes. Here the first bytes must come within readTimeout of the
// accept, and once a message has begun (the first bytes after gortsplib
// set a deadline) the rest must follow within readTimeout. Until the
// connection plays or records (inSession), the wait for its next request
// is readTimeout too, not gortsplib's 60 s idle timeout; then gortsplib's
// deadlines apply (a player's keepalives come every 55 s). A deadline
// gortsplib turned off (a UDP publisher's idle control connection) stays
// off.
type deadlineConn struct {
	net.Conn
	timeout time.Duration

	answered  bool        // a 400 was written (by Read, one goroutine)
	started   bool        // the first bytes were read (by Read)
	inSession atomic.Bool // the connection plays or records

	mu    sync.Mutex // mu guards fresh and limit
	fresh bool       // a deadline was set and no byte has come since
	limit time.Time  // the deadline in force; zero = none

	// wmu serializes the writes of gortsplib (responses, RTCP) and of a
	// TCP player's loop (interleaved.flush), so that no write lands inside
	// another's frame: gortsplib writes each response and frame in one
	// Write call (pkg/conn), a player's batch is one writeBuffers.
	wmu       sync.Mutex
	afterNext chan struct{} // closed after gortsplib's next Write (guarded by wmu)
}

// Write writes one message of gortsplib's.
func (c *deadlineConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	n, err := c.Conn.Write(b)
	gate := c.afterNext
	c.afterNext = nil
	c.wmu.Unlock()
	if gate != nil {
		close(gate)
	}
	return n, err
}

// gateNextWrite returns a channel closed once gortsplib's next Write has
// returned. Called from OnPlay, that Write is the PLAY response: a TCP
// player's first packet must not go before it.
func (c *deadlineConn) gateNextWrite() <-chan struct{} {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.afterNext == nil {
		c.afterNext = make(chan struct{})
	}
	return c.afterNext
}

// writeBuffers writes bufs in one writev (a TCP connection; RTSPS's TLS
// connection gets them in a few gathered writes), under wmu and
// with a write deadline of timeout. It consumes bufs as net.Buffers.WriteTo
// does. The deadline is left set: gortsplib sets its own before each write.
func (c *deadlineConn) writeBuffers(bufs *net.Buffers, timeout time.Duration) (int64, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.Conn.SetWriteDeadline(time.Now().Add(timeout)) //nolint:errcheck // a closed conn fails the write
	return fanout.WriteBuffers(c.Conn, bufs)
}

// SetReadDeadline records a new deadline from gortsplib: the wait for the
// next message.
func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	if end := time.Now().Add(c.timeout); !t.IsZero() && !c.inSession.Load() && end.Before(t) {
		t = end
	}
	c.mu.Lock()
	c.fresh, c.limit = true, t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline is SetReadDeadline and SetWriteDeadline.
func (c *deadlineConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.started {
		c.started = true
		// RTSP over HTTP: the tunnel's two connections keep gortsplib's
		// own deadlines (neither is the one that PLAYs).
		if n >= 4 && (string(b[:4]) == "GET " || string(b[:4]) == "POST") {
			c.inSession.Store(true)
		}
	}
	if n > 0 && !c.answered {
		if why, cseq := badContentLength(b[:n]); why != "" {
			// gortsplib closes the connection on a request it cannot
			// parse without a word; say why first.
			c.answered = true
			// A player's keepalive: not inside one of its frames.
			c.wmu.Lock()
			c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)) //nolint:errcheck // best effort
			fmt.Fprintf(c.Conn, "RTSP/1.0 400 Bad Request\r\nCSeq: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
				cseq, len(why), why)
			c.wmu.Unlock()
		}
	}
	if n > 0 {
		c.mu.Lock()
		if c.fresh {
			c.fresh = false
			// The message has begun: the rest within readTimeout.
			if end := time.Now().Add(c.timeout); !c.limit.IsZero() && end.Before(c.limit) {
				c.limit = end
				c.Conn.SetReadDeadline(end) //nolint:errcheck // as above
			}
		}
		c.mu.Unlock()
	}
	return n, err
}

// markInSession tells the connection of a session that plays or records
// that gortsplib's own deadlines apply from now on.
func markInSession(nc net.Conn) {
	if dc, ok := nc.(*deadlineConn); ok {
		dc.inSession.Store(true)
	}
}

// maxBody is gortsplib's limit on an RTSP message body.
const maxBody = 128 << 10

// badContentLength looks at the start of an RTSP request in chunk: when its
// Content-Length is not a number or exceeds what gortsplib reads, it returns
// why (for a 400) and the request's CSeq. Interleaved frames and chunks that
// are no request start are passed over.
func badContentLength(chunk []byte) (why, cseq string) {
	if len(chunk) == 0 || chunk[0] < 'A' || chunk[0] > 'Z' {
		return "", ""
	}
	head, _, _ := bytes.Cut(chunk, []byte("\r\n\r\n"))
	cseq = "0"
	for _, line := range bytes.Split(head, []byte("\r\n"))[1:] {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(bytes.TrimSpace(k), []byte("CSeq")):
			if n, err := strconv.ParseUint(string(v), 10, 32); err == nil {
				cseq = strconv.FormatUint(n, 10)
			}
		case bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")):
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				why = "Content-Length must be a number of bytes"
			} else if n > maxBody {
				why = fmt.Sprintf("Content-Length exceeds %d bytes", maxBody)
			}
		}
	}
	return why, cseq
}
