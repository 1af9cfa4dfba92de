// Package rtmp serves RTMP publish (OBS, ffmpeg, encoders; H264, H265 and AV1
// over Enhanced RTMP, AAC, Opus, MP3) and play (VLC, ffplay, ffmpeg), on
// gortmplib. rtmp://HOST/APP/NAME is the hub path APP/NAME; a ?key=... query
// is the publish key and never part of the path.
package rtmp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/message"

	"github.com/streamhub/streamhub/internal/conf"
	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/protocols/internal/connset"
	"github.com/streamhub/streamhub/protocols/internal/fanout"
	"github.com/streamhub/streamhub/server"
)

// Config configures a Server.
type Config struct {
	// Address to listen on, e.g. ":1935"; "" switches RTMP off.
	Address string `yaml:"address"`
	// HandshakeTimeout bounds the RTMP handshake and the connect/publish/play
	// commands.
	HandshakeTimeout time.Duration `yaml:"handshakeTimeout"`
	// ReadTimeout closes a publisher that sends nothing for this long.
	ReadTimeout time.Duration `yaml:"readTimeout"`
	// WriteTimeout closes a player whose socket accepts nothing for this long.
	WriteTimeout time.Duration `yaml:"writeTimeout"`
	// TLSAddress, if set, is the RTMPS listener (rtmps://HOST:PORT/APP):
	// RTMP inside TLS, with the certificate of the tls: section.
	TLSAddress string `yaml:"tlsAddress"`
	// MaxConnsPerAddr caps the connections of one remote IP; 0 = no cap
	// (limits.maxConnsPerAddress, set by main).
	MaxConnsPerAddr int `yaml:"-"`
	// TLS is the RTMPS listener's configuration (the certificate), set by
	// main when TLSAddress is.
	TLS *tls.Config `yaml:"-"`
}

// Validate returns the problems of the section at prefix ("rtmp"), each
// naming its key.
func (c *Config) Validate(prefix string) []error {
	p := conf.New(prefix)
	p.Address("address", c.Address, true, ":1935")
	p.Address("tlsAddress", c.TLSAddress, true, ":1936")
	p.Duration("handshakeTimeout", c.HandshakeTimeout, 100*time.Millisecond, 10*time.Minute)
	p.Duration("readTimeout", c.ReadTimeout, 100*time.Millisecond, 10*time.Minute)
	p.Duration("writeTimeout", c.WriteTimeout, 100*time.Millisecond, 10*time.Minute)
	return p.Errs()
}

// Server accepts RTMP connections and connects them to the hub.
type Server struct {
	conf Config
	hub  *server.Hub
	log  *slog.Logger

	ln     net.Listener
	tlsLn  net.Listener // RTMPS; nil when off
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	conns  connset.Set
	passes fanout.Passes // the players of TCP connections
}

// New returns a server; call Start to listen.
func New(c Config, hub *server.Hub, log *slog.Logger) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{conf: c, hub: hub, log: log.With("proto", "rtmp"), ctx: ctx, cancel: cancel}
	s.passes.Log = s.log
	return s
}

// Start listens on the configured addresses and accepts in the background.
func (s *Server) Start() error {
	if s.conf.Address != "" {
		ln, err := net.Listen("tcp", s.conf.Address)
		if err != nil {
			return fmt.Errorf("rtmp: listen on %s (rtmp.address): %w", s.conf.Address, err)
		}
		// guard.Listen retries a failing Accept (EMFILE) with backoff,
		// logged once per episode, and caps the connections per address.
		s.ln = guard.Listen(ln, guard.ListenerConfig{Name: "rtmp", MaxPerAddr: s.conf.MaxConnsPerAddr, Log: s.log})
		s.log.Info("listening", "address", ln.Addr().String())
	}
	if s.conf.TLSAddress != "" {
		if s.conf.TLS == nil {
			s.closeListeners()
			return errors.New("rtmp: rtmp.tlsAddress needs a certificate: set tls.cert and tls.key, or tls.acme.domains")
		}
		ln, err := net.Listen("tcp", s.conf.TLSAddress)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("rtmp: listen on %s (rtmp.tlsAddress): %w", s.conf.TLSAddress, err)
		}
		// The TLS handshake runs in the connection's goroutine, at its
		// first read, under the RTMP handshake's deadline: a peer that
		// sends garbage or plain RTMP fails it there and holds nothing.
		s.tlsLn = tls.NewListener(guard.Listen(ln, guard.ListenerConfig{Name: "rtmps", MaxPerAddr: s.conf.MaxConnsPerAddr, Log: s.log}), s.conf.TLS)
		s.log.Info("listening", "address", ln.Addr().String(), "tls", true)
	}
	for _, ln := range []net.Listener{s.ln, s.tlsLn} {
		if ln != nil {
			s.wg.Add(1)
			go s.acceptLoop(ln)
		}
	}
	return nil
}

func (s *Server) closeListeners() {
	for _, ln := range []net.Listener{s.ln, s.tlsLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

// Addr returns the RTMP listening address, nil when RTMP is off (only
// RTMPS listens).
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// TLSAddr returns the RTMPS listening address, nil when RTMPS is off.
func (s *Server) TLSAddr() net.Addr {
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// Close stops accepting, closes every connection and waits for their goroutines.
func (s *Server) Close() {
	s.cancel()
	s.closeListeners()
	s.conns.CloseAll()
	s.wg.Wait()
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept() // only fails once the listener is closed
		if err != nil {
			return
		}
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
	remote := nc.RemoteAddr().String()
	c := &conn{srv: s, nc: nc, log: s.log.With("remote", remote)}
	if _, ok := nc.(*tls.Conn); ok {
		c.log = c.log.With("tls", true)
	}
	err := c.runSafe()
	if c.mode == "" || c.refused {
		msg := "connection refused"
		if c.mode != "" {
			msg = c.mode + " refused"
		}
		s.hub.LogRefusal(c.log, remote, "rtmp "+msg, msg, "mode", c.mode, "path", server.LogPath(c.path), "cause", causeText(err))
		return
	}
	c.log.Info("connection closed", "mode", c.mode, "path", server.LogPath(c.path), "cause", causeText(err))
}

// runSafe is run with a panic turned into the connection's end.
func (c *conn) runSafe() (err error) {
	defer guard.RecoverErr(c.log, "rtmp connection", &err)
	if h := testHookConn.Load(); h != nil {
		(*h)(c)
	}
	return c.run()
}

// testHookConn, when set by a test, is called at the start of every
// connection (to inject a fault into one).
var testHookConn atomic.Pointer[func(*conn)]

// causeText is err for the log: what a peer sent can be in it (gortmplib
// quotes a malformed command whole), so it is cut short.
func causeText(err error) string {
	if err == nil {
		return "done"
	}
	return guard.Truncate(err.Error())
}

type conn struct {
	srv     *Server
	nc      net.Conn
	log     *slog.Logger
	mode    string // "publish" or "play", once known
	path    string
	refused bool // the server refused the publisher or player
	// w serializes writes to nc: while playing, gortmplib may answer a
	// ping or send an acknowledgement from the read goroutine.
	w *lockedWriter
	// rd is what gortmplib reads nc through.
	rd *probeReader
}

// rtmpeVersion is the C0 byte of an RTMPE (encrypted) handshake.
const rtmpeVersion = 6

// maxCommandBytes bounds what a peer may send before its connect, publish
// or play command is accepted: the handshake and a few small commands. A
// larger connect (gortmplib reads a whole message, up to 16 MiB, and quotes
// a malformed one whole in its error) is cut off here.
const maxCommandBytes = 64 << 10

// probeMaxBytes bounds what a publisher may send while gortmplib probes its
// tracks (it keeps every message of the probe in memory).
const probeMaxBytes = 32 << 20

// errProbeTooBig is returned when a publisher exceeds probeMaxBytes.
var errProbeTooBig = fmt.Errorf("rtmp: the publisher sent more than %d MiB before its tracks were known", probeMaxBytes>>20)

// probeReader remembers the first byte read (C0, the handshake version) and
// can bound how much is read. Before each read it sends what the
// connection's writer kept back while corked (lockedWriter): a peer answers
// only what it got.
type probeReader struct {
	r    io.Reader
	w    *lockedWriter
	c0   byte
	seen bool
	left int64 // bytes still allowed; < 0: no bound
}

func (p *probeReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, errProbeTooBig
	}
	if p.w != nil {
		if err := p.w.flush(); err != nil {
			return 0, err
		}
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

// refusalCode is the onStatus code for a refused publisher or player: the
// one table of hub errors to RTMP statuses.
func refusalCode(err error, publish bool) string {
	switch {
	case publish:
		return "NetStream.Publish.BadName" // a wrong key, a bad or busy path, a rung (the description says which)
	case errors.Is(err, server.ErrUnauthorized), errors.Is(err, server.ErrTooManyReaders), errors.Is(err, server.ErrHubClosed):
		return "NetStream.Play.Failed"
	default:
		return "NetStream.Play.StreamNotFound" // nothing published, a bad path
	}
}

// refuseChunkStream carries refusals: a chunk stream nothing else uses, so
// the status goes out with a full header even when the Publish.Start it
// replaces was held back (see lockedWriter.hold).
const refuseChunkStream = 8

// refuseLinger is how long a refused client may take to read the refusal
// and hang up: closing at once makes ffmpeg's next write fail with a broken
// pipe before it reads why.
const refuseLinger = time.Second

// refuse tells the client why with an onStatus error (ffmpeg prints its
// description), waits a moment for it to hang up, then returns err.
func (c *conn) refuse(sc *gortmplib.ServerConn, code string, err error) error {
	c.refused = true
	c.w.release(false) // a held Publish.Start is never sent
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.conf.WriteTimeout))
	sc.Write(&message.CommandAMF0{ //nolint:errcheck // err is what we report
		ChunkStreamID: refuseChunkStream, MessageStreamID: libPlayStreamID, Name: "onStatus",
		Arguments: []any{nil, amf0.Object{
			{Key: "level", Value: "error"},
			{Key: "code", Value: code},
			{Key: "description", Value: err.Error()},
		}},
	})
	c.nc.SetReadDeadline(time.Now().Add(refuseLinger))
	io.Copy(io.Discard, io.LimitReader(c.nc, maxCommandBytes)) //nolint:errcheck // until it hangs up or the linger ends
	return err
}

// lockedWriter makes concurrent Writes to w whole and ordered. While
// holding, it keeps back the write of gortmplib's NetStream.Publish.Start
// (Accept sends it before we know the stream key), until release says
// whether it goes out: a refused publisher gets its refusal instead.
//
// While corked (the handshake and the commands up to publish or play),
// it gathers gortmplib's writes, one per message, and sends them in one
// write before the next read (probeReader) or at uncork: a player's join
// is 4 writes instead of 14, and as many fewer packets for the player to
// wake up for.
type lockedWriter struct {
	mu      sync.Mutex // mu guards w, holding, held, corked and kept
	w       io.Writer
	holding bool
	held    []byte
	corked  bool
	kept    []byte
}

// publishStart is the AMF0 string of the status a refused publisher must
// not get; gortmplib writes each message in one Write.
var publishStart = []byte("\x02\x00\x17NetStream.Publish.Start")

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holding && bytes.Contains(p, publishStart) {
		l.held = append(l.held[:0], p...)
		return len(p), nil
	}
	if l.corked {
		l.kept = append(l.kept, p...)
		return len(p), nil
	}
	return l.w.Write(p)
}

// flush sends what was kept back while corked.
func (l *lockedWriter) flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flushLocked()
}

func (l *lockedWriter) flushLocked() error {
	if len(l.kept) == 0 {
		return nil
	}
	_, err := l.w.Write(l.kept)
	l.kept = l.kept[:0]
	return err
}

// uncork sends what was kept back; later writes go out at once.
func (l *lockedWriter) uncork() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.flushLocked()
	l.corked, l.kept = false, nil
	return err
}

// hold starts keeping back Publish.Start.
func (l *lockedWriter) hold() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.holding = true
}

// release ends holding; send says whether a held Publish.Start goes out.
func (l *lockedWriter) release(send bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	held := l.held
	l.holding, l.held = false, nil
	if send && held != nil {
		_, err := l.w.Write(held)
		return err
	}
	return nil
}

// writev writes bufs in one writev(2) when w is a TCP connection, in a
// few gathered writes when it is TLS.
func (l *lockedWriter) writev(bufs [][]byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := net.Buffers(bufs)
	_, err := fanout.WriteBuffers(l.w, &b)
	return err
}

func (c *conn) run() error {
	s := c.srv
	c.nc.SetDeadline(time.Now().Add(s.conf.HandshakeTimeout))
	c.w = &lockedWriter{w: c.nc, corked: true}
	c.rd = &probeReader{r: fanout.NewRawReader(c.nc), w: c.w, left: maxCommandBytes}
	sc := &gortmplib.ServerConn{RW: struct {
		io.Reader
		io.Writer
	}{c.rd, c.w}}
	if err := sc.Initialize(); err != nil {
		return fmt.Errorf("rtmp handshake: %w", err)
	}
	c.rd.left = maxCommandBytes
	c.w.hold()
	if err := sc.Accept(); err != nil {
		return fmt.Errorf("rtmp connect: %w", err)
	}
	if err := c.w.uncork(); err != nil {
		return fmt.Errorf("rtmp connect: %w", err)
	}
	c.rd.w = nil
	c.rd.left = -1
	path, key, err := pathAndKey(sc)
	if err != nil {
		return c.refuse(sc, refusalCode(err, sc.Publish), err)
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
		// Refuse a wrong key or a busy path before reading (and
		// buffering) media, and hold the path meanwhile: a stream in its
		// grace period keeps its readers for this publisher, however long
		// its tracks take.
		claim, err := s.hub.Publish(s.ctx, path, server.PublishRequest{Peer: c.peer(sc), Key: key, Kick: func() { c.nc.Close() }})
		if err != nil {
			return c.refuse(sc, refusalCode(err, true), err)
		}
		// A stream key may be the path's last segment: from here on the
		// connection knows the stream's public path.
		rp := claim.Path()
		c.path = rp
		if err := c.w.release(true); err != nil {
			claim.Release()
			return fmt.Errorf("rtmp: %w", err)
		}
		c.log.Info("connection opened", "mode", c.mode, "path", rp)
		return c.publish(sc, claim)
	}
	c.mode = "play"
	c.w.release(true) //nolint:errcheck // nothing is held for a player
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
	if _, ok := c.nc.(*tls.Conn); ok {
		p.Protocol = "rtmps"
	}
	if sc.URL != nil {
		p.Query = sc.URL.RawQuery
	}
	return p
}
