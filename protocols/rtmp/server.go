// Package rtmp serves RTMP publish (OBS, ffmpeg, encoders; H264, H265 and AV1
// over Enhanced RTMP, AAC, Opus, MP3) and play (VLC, ffplay, ffmpeg), on
// gortmplib. rtmp://HOST/APP/NAME is the hub path APP/NAME; a ?key=... query
// is the publish key and never part of the path.
package rtmp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/message"

	"github.com/streamhub/streamhub/protocols/internal/connset"
	"github.com/streamhub/streamhub/server"
)

// Config configures a Server.
type Config struct {
	// Address to listen on, e.g. ":1935".
	Address string
	// HandshakeTimeout bounds the RTMP handshake and the connect/publish/play
	// commands.
	HandshakeTimeout time.Duration
	// ReadTimeout closes a publisher that sends nothing for this long.
	ReadTimeout time.Duration
	// WriteTimeout closes a player whose socket accepts nothing for this long.
	WriteTimeout time.Duration
}

// Server accepts RTMP connections and connects them to the hub.
type Server struct {
	conf Config
	hub  *server.Hub
	log  *slog.Logger

	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	conns  connset.Set
}

// New returns a server; call Start to listen.
func New(c Config, hub *server.Hub, log *slog.Logger) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{conf: c, hub: hub, log: log.With("proto", "rtmp"), ctx: ctx, cancel: cancel}
}

// Start listens on the configured address and accepts in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.conf.Address)
	if err != nil {
		return fmt.Errorf("rtmp: listen on %s (rtmp.address): %w", s.conf.Address, err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop()
	s.log.Info("listening", "address", ln.Addr().String())
	return nil
}

// Addr returns the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting, closes every connection and waits for their goroutines.
func (s *Server) Close() {
	s.cancel()
	if s.ln != nil {
		s.ln.Close()
	}
	s.conns.CloseAll()
	s.wg.Wait()
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off instead of spinning.
			backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		if !s.conns.Add(nc) {
			return // shutting down
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.conns.Remove(nc)
			s.handle(nc)
		}()
	}
}

// handle runs one connection and is the one place where it ends: it logs
// the cause once.
func (s *Server) handle(nc net.Conn) {
	defer nc.Close()
	c := &conn{srv: s, nc: nc, log: s.log.With("remote", nc.RemoteAddr().String())}
	err := c.run()
	if c.mode == "" {
		c.log.Info("connection refused", "cause", causeText(err))
		return
	}
	c.log.Info("connection closed", "mode", c.mode, "path", server.LogPath(c.path), "cause", causeText(err))
}

func causeText(err error) string {
	if err == nil {
		return "done"
	}
	return err.Error()
}

type conn struct {
	srv  *Server
	nc   net.Conn
	log  *slog.Logger
	mode string // "publish" or "play", once known
	path string
	// w serializes writes to nc: while playing, gortmplib may answer a
	// ping or send an acknowledgement from the read goroutine.
	w *lockedWriter
	// rd is what gortmplib reads nc through.
	rd *probeReader
}

// rtmpeVersion is the C0 byte of an RTMPE (encrypted) handshake.
const rtmpeVersion = 6

// probeMaxBytes bounds what a publisher may send while gortmplib probes its
// tracks (it keeps every message of the probe in memory).
const probeMaxBytes = 32 << 20

// errProbeTooBig is returned when a publisher exceeds probeMaxBytes.
var errProbeTooBig = fmt.Errorf("rtmp: the publisher sent more than %d MiB before its tracks were known", probeMaxBytes>>20)

// probeReader remembers the first byte read (C0, the handshake version) and
// can bound how much is read.
type probeReader struct {
	r    io.Reader
	c0   byte
	seen bool
	left int64 // bytes still allowed; < 0: no bound
}

func (p *probeReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, errProbeTooBig
	}
	if p.left > 0 && int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n, err := p.r.Read(b)
	if n > 0 && !p.seen {
		p.c0, p.seen = b[0], true
	}
	if p.left > 0 {
		p.left -= int64(n)
	}
	return n, err
}

// refuse tells the client why with an onStatus error, then returns err.
func (c *conn) refuse(sc *gortmplib.ServerConn, code string, err error) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.conf.WriteTimeout))
	sc.Write(&message.CommandAMF0{ //nolint:errcheck // err is what we report
		ChunkStreamID: 5, MessageStreamID: libPlayStreamID, Name: "onStatus",
		Arguments: []any{nil, amf0.Object{
			{Key: "level", Value: "error"},
			{Key: "code", Value: code},
			{Key: "description", Value: err.Error()},
		}},
	})
	return err
}

// lockedWriter makes concurrent Writes to w whole and ordered.
type lockedWriter struct {
	mu sync.Mutex // mu guards w
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// writev writes bufs in one writev(2) when w is a TCP connection.
func (l *lockedWriter) writev(bufs [][]byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := net.Buffers(bufs)
	_, err := b.WriteTo(l.w)
	return err
}

func (c *conn) run() error {
	s := c.srv
	c.nc.SetDeadline(time.Now().Add(s.conf.HandshakeTimeout))
	c.w = &lockedWriter{w: c.nc}
	c.rd = &probeReader{r: c.nc, left: -1}
	sc := &gortmplib.ServerConn{RW: struct {
		io.Reader
		io.Writer
	}{c.rd, c.w}}
	if err := sc.Initialize(); err != nil {
		return fmt.Errorf("rtmp handshake: %w", err)
	}
	if err := sc.Accept(); err != nil {
		return fmt.Errorf("rtmp connect: %w", err)
	}
	path, key, err := pathAndKey(sc)
	if err != nil {
		if sc.Publish {
			return c.refuse(sc, "NetStream.Publish.BadName", err)
		}
		return c.refuse(sc, "NetStream.Play.StreamNotFound", err)
	}
	c.path = path
	if !sc.Publish && c.rd.c0 == rtmpeVersion {
		// gortmplib decrypts RTMPE, but play writes its chunks straight to
		// the socket, which an RTMPE player would read as garbage.
		return c.refuse(sc, "NetStream.Play.Failed",
			errors.New("rtmp: RTMPE (encrypted) play is not supported: play with rtmp://"))
	}
	if sc.Publish {
		c.mode = "publish"
		// A stream key may be the path's last segment: resolve it to the
		// stream's public path before anything logs the path.
		c.path = server.LogPath(path)
		rp, rk, err := s.hub.ResolvePublishFrom(path, key, c.peer(sc))
		if err != nil {
			return c.refuse(sc, "NetStream.Publish.BadName", err)
		}
		c.path = rp
		c.log.Info("connection opened", "mode", c.mode, "path", rp)
		return c.publish(sc, rk)
	}
	c.mode = "play"
	c.nc.SetDeadline(time.Time{})
	c.log.Info("connection opened", "mode", c.mode, "path", server.LogPath(path))
	return c.play(sc, key)
}

// pathAndKey returns the hub path (APP/NAME, without the query) and the
// publish or read key (?key=...) of an accepted connection.
func pathAndKey(sc *gortmplib.ServerConn) (string, string, error) {
	if sc.URL == nil {
		return "", "", errors.New("rtmp: no stream URL in the publish or play command")
	}
	p := strings.Trim(sc.URL.Path, "/")
	if err := server.ValidatePath(p); err != nil {
		return p, "", err
	}
	return p, sc.URL.Query().Get("key"), nil
}

// peer describes the connection for the auth hook.
func (c *conn) peer(sc *gortmplib.ServerConn) server.Peer {
	p := server.Peer{Protocol: "rtmp", Remote: c.nc.RemoteAddr().String()}
	if sc.URL != nil {
		p.Query = sc.URL.RawQuery
	}
	return p
}
