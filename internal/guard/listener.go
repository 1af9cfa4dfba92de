package guard

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// DefaultMaxConnsPerAddr is the connections one remote address may hold on
// one listener when the config does not say.
const DefaultMaxConnsPerAddr = 200

// ListenerConfig configures Listen.
type ListenerConfig struct {
	// Name says which listener in log lines ("rtsp", "http").
	Name string
	// MaxPerAddr caps the connections open at once from one remote IP;
	// one over it is closed at once. 0 means no cap.
	MaxPerAddr int
	// Log receives one line when Accept starts failing and one when it
	// works again, and the summarized refusals. Nil means slog.Default().
	Log *slog.Logger
}

// Listener wraps a net.Listener so that its Accept never returns an error
// other than net.ErrClosed: a failure (EMFILE when descriptors run out,
// ECONNABORTED) is retried with a backoff from 5 ms to 1 s, as net/http
// does, and logged once per episode. A library whose accept loop returns on
// the first error (gortsplib's) thus keeps its listener.
type Listener struct {
	net.Listener
	conf    ListenerConfig
	log     *slog.Logger
	refused *Summary

	mu     sync.Mutex // mu guards perIP
	perIP  map[string]int
	closed chan struct{}
	once   sync.Once
}

// Listen wraps l; closing the result closes l.
func Listen(l net.Listener, c ListenerConfig) *Listener {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return &Listener{Listener: l, conf: c, log: c.Log, refused: NewSummary(10*time.Second, 1),
		perIP: map[string]int{}, closed: make(chan struct{})}
}

// Accept returns the next connection under the per-address cap. It
// returns an error only once the listener is closed.
func (l *Listener) Accept() (net.Conn, error) {
	var (
		backoff  time.Duration
		failures int
		since    time.Time
	)
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case <-l.closed:
				return nil, net.ErrClosed
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			if failures == 0 {
				since = time.Now()
				l.log.Warn("accept failed; retrying with backoff", "listener", l.conf.Name, "err", err.Error())
			}
			failures++
			backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.closed:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		if failures > 0 {
			l.log.Info("accepting again", "listener", l.conf.Name, "failures", failures, "after", time.Since(since).Round(time.Millisecond))
			failures, backoff = 0, 0
		}
		if gc, ok := l.admit(c); ok {
			return gc, nil
		}
	}
}

// admit counts c against its address's cap, or closes it.
func (l *Listener) admit(c net.Conn) (net.Conn, bool) {
	if l.conf.MaxPerAddr <= 0 {
		return c, true
	}
	ip := HostOf(c.RemoteAddr())
	l.mu.Lock()
	n := l.perIP[ip]
	if n >= l.conf.MaxPerAddr {
		l.mu.Unlock()
		c.Close()
		if ok, more := l.refused.Note(ip); ok {
			l.log.Warn("connection refused: too many from one address", "listener", l.conf.Name, "remote", ip,
				"max", l.conf.MaxPerAddr, "refused_since_last_line", more)
		}
		return nil, false
	}
	l.perIP[ip] = n + 1
	l.mu.Unlock()
	if tc, ok := c.(*net.TCPConn); ok {
		// Embedding the *net.TCPConn keeps its writev (net.Buffers),
		// sendfile and splice paths, which a plain net.Conn hides.
		return &countedTCPConn{TCPConn: tc, l: l, ip: ip}, true
	}
	return &countedConn{Conn: c, l: l, ip: ip}, true
}

func (l *Listener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// Open returns how many connections from ip are open now.
func (l *Listener) Open(ip string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perIP[ip]
}

// Close closes the listener and ends a backoff in progress.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// countedConn gives its address's place back once, on the first Close.
type countedConn struct {
	net.Conn
	l    *Listener
	ip   string
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.release(c.ip) })
	return c.Conn.Close()
}

// countedTCPConn is countedConn for a TCP connection.
type countedTCPConn struct {
	*net.TCPConn
	l    *Listener
	ip   string
	once sync.Once
}

func (c *countedTCPConn) Close() error {
	c.once.Do(func() { c.l.release(c.ip) })
	return c.TCPConn.Close()
}

// HostOf returns the IP of a remote address ("" for none), the key of
// per-address limits.
func HostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	return HostOfString(a.String())
}

// HostOfString is HostOf for "HOST:PORT" text; text without a port is
// returned as it is.
func HostOfString(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
