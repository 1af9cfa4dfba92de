// Package rtsp serves RTSP on gortsplib/v5.
//
//	publisher ──ANNOUNCE/RECORD──▶ ingest (RTP → units, once) ──▶ hub
//	hub ──Reader per session──▶ RTP payloads, made once per unit (Unit.Memo)
//	    ├─TCP──▶ interleaved frames, one writev per batch (interleaved.go) ──▶ player
//	    ├─UDP──▶ datagrams from gortsplib's sockets, one sendmmsg per batch (udp.go) ──▶ player
//	    └─tunneled in HTTP/WebSocket──▶ ServerSession.WritePacketRTPWithNTP ──▶ player
//	hub ──one Reader per path──▶ multicast ServerStream ──▶ players in the group
//	camera ──pull (source.go)──▶ ingest ──▶ hub
//
// Unicast players each get their own hub reader, so every one of them starts
// at a keyframe from the GOP cache and a slow one skips to the next keyframe
// instead of losing random packets; the RTP payloads are still made once per
// unit and shared. A TCP or UDP player's packets are framed and sent by its
// play loop itself, not queued packet by packet in gortsplib: a TCP
// connection's writes (ours and gortsplib's answers) are serialized in
// conn.go.
// Multicast players share one group, fed by one reader.
package rtsp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/streamhub/streamhub/internal/conf"
	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/server"
)

// Transports a Config can enable.
const (
	TransportTCP       = "tcp"
	TransportUDP       = "udp"
	TransportMulticast = "multicast"
)

// tunnelQueueSize is the packets gortsplib queues per player when only
// RTSP tunneled in HTTP or WebSocket uses its queue (no multicast).
const tunnelQueueSize = 256

// Config configures the RTSP server.
type Config struct {
	// Address is the RTSP listener (TCP; RTP interleaved on it when the tcp
	// transport is on); "" switches RTSP off.
	Address string `yaml:"address"`
	// Transports lists the RTP transports offered: tcp, udp, multicast.
	Transports []string `yaml:"transports"`
	// UDPRTPAddress and UDPRTCPAddress are the UDP unicast ports.
	UDPRTPAddress  string `yaml:"udpRTPAddress"`
	UDPRTCPAddress string `yaml:"udpRTCPAddress"`
	// MulticastIPRange is where multicast groups are taken from, and
	// MulticastRTPPort, MulticastRTCPPort their ports.
	MulticastIPRange  string `yaml:"multicastIPRange"`
	MulticastRTPPort  int    `yaml:"multicastRTPPort"`
	MulticastRTCPPort int    `yaml:"multicastRTCPPort"`
	// ReadTimeout drops a publisher that sends nothing (and a player that
	// sends no keepalive) for this long; WriteTimeout a player whose socket
	// takes nothing for this long.
	ReadTimeout  time.Duration `yaml:"readTimeout"`
	WriteTimeout time.Duration `yaml:"writeTimeout"`
	// WriteQueueSize is the packets queued per player (a power of two).
	WriteQueueSize int `yaml:"writeQueueSize"`
	// TLSAddress, if set, is the RTSPS listener (rtsps://HOST:PORT/PATH):
	// RTSP inside TLS with RTP interleaved (TCP), beside the RTSP one, with
	// the certificate of the tls: section.
	TLSAddress string `yaml:"tlsAddress"`
	// MaxConnsPerAddr caps the TCP connections of one remote IP; 0 = no cap
	// (limits.maxConnsPerAddress, set by main).
	MaxConnsPerAddr int `yaml:"-"`
	// TLS is the RTSPS listener's configuration (the certificate), set by
	// main when TLSAddress is.
	TLS *tls.Config `yaml:"-"`
}

// Validate returns the problems of the section at prefix ("rtsp"), each
// naming its key.
func (c *Config) Validate(prefix string) []error {
	p := conf.New(prefix)
	p.Address("address", c.Address, true, ":8554")
	p.Address("tlsAddress", c.TLSAddress, true, ":8322")
	p.Duration("readTimeout", c.ReadTimeout, 100*time.Millisecond, 10*time.Minute)
	p.Duration("writeTimeout", c.WriteTimeout, 100*time.Millisecond, 10*time.Minute)
	seen := map[string]bool{}
	for _, t := range c.Transports {
		switch {
		case t != TransportTCP && t != TransportUDP && t != TransportMulticast:
			p.Bad("transports", "each must be tcp, udp or multicast (got %q)", t)
		case seen[t]:
			p.Bad("transports", "%q is listed twice", t)
		}
		seen[t] = true
	}
	if len(c.Transports) == 0 {
		p.Bad("transports", "list at least one of tcp, udp, multicast")
	}
	if c.TLSAddress != "" && (c.Address == "" || !seen[TransportTCP]) {
		// RTSPS sessions share the paths' streams with RTSP's server, and
		// carry RTP inside the TLS connection.
		p.Bad("tlsAddress", "RTSPS is served beside RTSP over TCP: it needs %s.address and tcp in %s.transports", prefix, prefix)
	}
	if seen[TransportUDP] {
		rtp, e1 := conf.Port(c.UDPRTPAddress)
		rtcp, e2 := conf.Port(c.UDPRTCPAddress)
		switch {
		case e1 != nil:
			p.Bad("udpRTPAddress", "must be HOST:PORT or :PORT, e.g. \":8000\" (got %q)", c.UDPRTPAddress)
		case e2 != nil:
			p.Bad("udpRTCPAddress", "must be HOST:PORT or :PORT, e.g. \":8001\" (got %q)", c.UDPRTCPAddress)
		case rtp%2 != 0 || rtcp != rtp+1:
			p.Bad("udpRTPAddress", "the RTP port must be even and the RTCP port (udpRTCPAddress) the next one (got %d and %d)", rtp, rtcp)
		}
	}
	if seen[TransportMulticast] {
		_, n, err := net.ParseCIDR(c.MulticastIPRange)
		if err != nil || n.IP.To4() == nil || !n.IP.IsMulticast() {
			p.Bad("multicastIPRange", "must be an IPv4 multicast range, e.g. 224.1.0.0/16 (got %q)", c.MulticastIPRange)
		}
		if c.MulticastRTPPort < 1024 || c.MulticastRTPPort > 65534 || c.MulticastRTPPort%2 != 0 || c.MulticastRTCPPort != c.MulticastRTPPort+1 {
			p.Bad("multicastRTPPort", "must be an even port from 1024 and multicastRTCPPort the next one (got %d and %d)", c.MulticastRTPPort, c.MulticastRTCPPort)
		}
	}
	if q := c.WriteQueueSize; q < 64 || q > 1<<16 || q&(q-1) != 0 {
		p.Bad("writeQueueSize", "must be a power of two between 64 and 65536 packets (got %d)", q)
	}
	return p.Errs()
}

func (c *Config) has(transport string) bool {
	for _, t := range c.Transports {
		if t == transport {
			return true
		}
	}
	return false
}

// Server is the RTSP server. It is the gortsplib handler: the On* methods
// are its callbacks and are not for other callers.
type Server struct {
	conf Config
	hub  *server.Hub
	log  *slog.Logger
	lib  *gortsplib.Server
	// tlsLib is the RTSPS server (nil when off): the same handler, TCP
	// only; the streams it plays are lib's.
	tlsLib *gortsplib.Server

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // play loops and multicast feeders

	udp udpSockets // set in Start, before any session

	mu   sync.Mutex // mu guards outs
	outs map[string]*outStream
}

// New returns a server; Start listens.
func New(conf Config, hub *server.Hub, log *slog.Logger) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{conf: conf, hub: hub, log: log.With("proto", "rtsp"), ctx: ctx, cancel: cancel,
		outs: map[string]*outStream{}}
}

// Start opens the listeners.
func (s *Server) Start() error {
	s.lib = &gortsplib.Server{
		Handler:        s,
		RTSPAddress:    s.conf.Address,
		ReadTimeout:    s.conf.ReadTimeout,
		WriteTimeout:   s.conf.WriteTimeout,
		WriteQueueSize: s.conf.WriteQueueSize,
		// gortsplib's accept loop returns on the first error (EMFILE) and
		// nothing restarts it: guard.Listen retries instead.
		Listen: func(network, address string) (net.Listener, error) {
			l, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			return &listener{Listener: guard.Listen(l, guard.ListenerConfig{Name: "rtsp", MaxPerAddr: s.conf.MaxConnsPerAddr, Log: s.log}),
				readTimeout: s.conf.ReadTimeout}, nil
		},
	}
	if !s.conf.has(TransportMulticast) {
		// No packet of a TCP or UDP player goes through gortsplib's
		// queue (interleaved.go, udp.go); only RTSP tunneled in HTTP or
		// WebSocket does, and it waits for room (play loop): gortsplib's
		// own default is enough, instead of the 64 KiB per player that
		// writeQueueSize (4096) costs, queue or not.
		s.lib.WriteQueueSize = min(s.conf.WriteQueueSize, tunnelQueueSize)
	}
	if s.conf.has(TransportUDP) {
		s.lib.UDPRTPAddress, s.lib.UDPRTCPAddress = s.conf.UDPRTPAddress, s.conf.UDPRTCPAddress
		s.lib.ListenPacket = s.listenPacket
	}
	if s.conf.has(TransportMulticast) {
		s.lib.MulticastIPRange = s.conf.MulticastIPRange
		s.lib.MulticastRTPPort, s.lib.MulticastRTCPPort = s.conf.MulticastRTPPort, s.conf.MulticastRTCPPort
	}
	if err := s.lib.Start(); err != nil {
		return fmt.Errorf("rtsp: %w", err)
	}
	s.log.Info("listening", "address", s.Addr().String(), "transports", strings.Join(s.conf.Transports, ","))
	if s.conf.TLSAddress != "" {
		if err := s.startTLS(); err != nil {
			s.lib.Close()
			return err
		}
	}
	return nil
}

// startTLS starts the RTSPS server: TCP only (a UDP player would need
// SRTP), each connection's TLS handshake under the deadline of its first
// request (listener.Accept).
func (s *Server) startTLS() error {
	if s.conf.TLS == nil {
		return errors.New("rtsp: rtsp.tlsAddress needs a certificate: set tls.cert and tls.key, or tls.acme.domains")
	}
	s.tlsLib = &gortsplib.Server{
		Handler:        s,
		RTSPAddress:    s.conf.TLSAddress,
		ReadTimeout:    s.conf.ReadTimeout,
		WriteTimeout:   s.conf.WriteTimeout,
		WriteQueueSize: s.lib.WriteQueueSize,
		TLSConfig:      s.conf.TLS,
		TLSListen: func(network, address string, tc *tls.Config) (net.Listener, error) {
			l, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			return &listener{Listener: guard.Listen(l, guard.ListenerConfig{Name: "rtsps", MaxPerAddr: s.conf.MaxConnsPerAddr, Log: s.log}),
				readTimeout: s.conf.ReadTimeout, tls: tc}, nil
		},
	}
	if err := s.tlsLib.Start(); err != nil {
		s.tlsLib = nil
		return fmt.Errorf("rtsp: RTSPS on %s (rtsp.tlsAddress): %w", s.conf.TLSAddress, err)
	}
	s.log.Info("listening", "address", s.TLSAddr().String(), "tls", true, "transports", TransportTCP)
	return nil
}

// Addr returns the RTSP listener's address (after Start).
func (s *Server) Addr() net.Addr { return s.lib.NetListener().Addr() }

// TLSAddr returns the RTSPS listener's address, nil when RTSPS is off.
func (s *Server) TLSAddr() net.Addr {
	if s.tlsLib == nil {
		return nil
	}
	return s.tlsLib.NetListener().Addr()
}

// protocol names a connection's protocol for the hub: rtsp, or rtsps.
func protocol(c *gortsplib.ServerConn) string {
	if dc, ok := c.NetConn().(*deadlineConn); ok {
		if _, ok := dc.Conn.(*tls.Conn); ok {
			return "rtsps"
		}
	}
	return "rtsp"
}

// Close closes every session and the listeners, and waits for the play
// loops to end.
func (s *Server) Close() {
	s.cancel()
	if s.tlsLib != nil {
		s.tlsLib.Close()
	}
	if s.lib != nil {
		s.lib.Close()
	}
	s.wg.Wait()
	s.mu.Lock()
	for _, o := range s.outs {
		o.close()
	}
	s.outs = map[string]*outStream{}
	s.mu.Unlock()
}

// session is the state of one RTSP session (ServerSession user data).
type session struct {
	path   string
	remote string
	// publisher
	in    *ingest
	claim *server.Claim // the path held from ANNOUNCE to RECORD
	pub   *server.Publisher
	// player
	read      server.ReadRequest // the credentials it gave at SETUP
	out       *outStream
	multicast bool
	// own is a unicast player's own ServerStream (never written: the play
	// loop writes to the session). One per session, because gortsplib
	// v5.6.4's ServerStream reads its other sessions' transport fields
	// without their lock when a session is added (a data race).
	own      *gortsplib.ServerStream
	mcStream *gortsplib.ServerStream // a multicast player's group stream
	// tcp is where each media set up over TCP goes (OnResponse, from the
	// SETUP answers; read by OnPlay).
	dests map[*description.Media]*trackDest
	stop  func() // ends the play loop, waiting for it
	// Written by the play loop, read after stop returned.
	endReason string // why the server ended the session ("" if the client did)
	drops     uint64 // units skipped because the player's queue stayed full
}

var (
	_ gortsplib.ServerHandlerOnSessionOpen  = (*Server)(nil)
	_ gortsplib.ServerHandlerOnSessionClose = (*Server)(nil)
	_ gortsplib.ServerHandlerOnConnClose    = (*Server)(nil)
	_ gortsplib.ServerHandlerOnDescribe     = (*Server)(nil)
	_ gortsplib.ServerHandlerOnAnnounce     = (*Server)(nil)
	_ gortsplib.ServerHandlerOnSetup        = (*Server)(nil)
	_ gortsplib.ServerHandlerOnPlay         = (*Server)(nil)
	_ gortsplib.ServerHandlerOnRecord       = (*Server)(nil)
	_ gortsplib.ServerHandlerOnPause        = (*Server)(nil)
	_ gortsplib.ServerHandlerOnDecodeError  = (*Server)(nil)
	_ gortsplib.ServerHandlerOnPacketsLost  = (*Server)(nil)
	_ gortsplib.ServerHandlerOnResponse     = (*Server)(nil)
)

// OnResponse notes, from a player's SETUP answer, the interleaved channel
// and SSRC of the media it set up, for the packets we write ourselves
// (interleaved.go). gortsplib chooses both (the client's channels, or the
// first free pair) and tells them only in this header; it calls OnResponse
// after the request's handling, so the media is the session's last set up.
func (s *Server) OnResponse(sc *gortsplib.ServerConn, res *base.Response) {
	defer guard.Recover(s.log, "rtsp OnResponse")
	v, ok := res.Header["Transport"]
	if !ok || res.StatusCode != base.StatusOK {
		return
	}
	ss := sc.Session()
	if ss == nil || ss.State() != gortsplib.ServerSessionStatePrePlay {
		return
	}
	st, ok := ss.UserData().(*session)
	if !ok || st.out == nil || st.multicast {
		return
	}
	var th headers.Transport
	if th.Unmarshal(v) != nil || th.SSRC == nil {
		return
	}
	d := &trackDest{ssrc: *th.SSRC}
	switch {
	case th.InterleavedIDs != nil:
		d.channel = th.InterleavedIDs[0]
	case th.ClientPorts != nil:
		// gortsplib sends to the address of the connection that set up
		// the session, at the ports of its SETUP.
		ta, ok := sc.NetConn().RemoteAddr().(*net.TCPAddr)
		if !ok {
			return
		}
		d.rtpAddr = &net.UDPAddr{IP: ta.IP, Zone: ta.Zone, Port: th.ClientPorts[0]}
		d.rtcpAddr = &net.UDPAddr{IP: ta.IP, Zone: ta.Zone, Port: th.ClientPorts[1]}
	default:
		return
	}
	medias := ss.Medias()
	if len(medias) == 0 {
		return
	}
	if st.dests == nil {
		st.dests = map[*description.Media]*trackDest{}
	}
	st.dests[medias[len(medias)-1]] = d
}

// OnConnClose logs why a connection ended, once.
func (s *Server) OnConnClose(ctx *gortsplib.ServerHandlerOnConnCloseCtx) {
	defer guard.Recover(s.log, "rtsp OnConnClose")
	if ctx.Error != nil && !isNormalEnd(ctx.Error) {
		s.log.Info("connection closed", "remote", ctx.Conn.NetConn().RemoteAddr().String(), "cause", ctx.Error.Error())
	}
}

// OnSessionOpen attaches the session state.
func (s *Server) OnSessionOpen(ctx *gortsplib.ServerHandlerOnSessionOpenCtx) {
	defer guard.Recover(s.log, "rtsp OnSessionOpen")
	ctx.Session.SetUserData(&session{remote: ctx.Conn.NetConn().RemoteAddr().String()})
}

// OnSessionClose ends the session's publisher or player; the session's one
// log line says why it ended.
func (s *Server) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	defer guard.Recover(s.log, "rtsp OnSessionClose")
	st := ctx.Session.UserData().(*session)
	if st.claim != nil {
		st.claim.Release() // ANNOUNCE without RECORD
	}
	mode := ""
	switch {
	case st.pub != nil:
		mode = "publish"
		st.pub.Close()
	case st.out != nil:
		mode = "play"
		if st.stop != nil {
			st.stop()
		}
		s.release(st.out, st.mcStream != nil)
		if st.own != nil {
			st.own.Close()
		}
	default:
		return
	}
	reason := "closed by the client"
	switch {
	case st.endReason != "":
		reason = st.endReason
	case ctx.Error != nil && !isNormalEnd(ctx.Error):
		reason = ctx.Error.Error()
	}
	s.log.Info("session closed", "mode", mode, "path", st.path, "remote", st.remote, "cause", reason, "drops", st.drops)
}

// recoverRes, deferred by a callback that answers a request, turns a
// panic into a 500 answer and an error, which makes gortsplib end that
// connection and its session: the server and every other session go on.
func (s *Server) recoverRes(what string, res **base.Response, err *error) {
	if v := recover(); v != nil {
		guard.Report(s.log, what, v)
		*res = &base.Response{StatusCode: base.StatusInternalServerError, StatusMessage: "Internal Server Error"}
		*err = guard.ErrPanic
	}
}

// badTransport returns why no transport a SETUP offers can work (channels
// or ports out of range, or a pair that is reversed), or "" when one of
// them can: gortsplib answers 200 to values it cannot use.
func badTransport(v base.HeaderValue) string {
	var ts headers.Transports
	if err := ts.Unmarshal(v); err != nil {
		return reasonPhrase(err)
	}
	why := ""
	for _, t := range ts {
		switch {
		case t.InterleavedIDs != nil && !pairOK(t.InterleavedIDs, 0, 255):
			why = fmt.Sprintf("interleaved=%d-%d: channels are 0 to 255, the second after the first", t.InterleavedIDs[0], t.InterleavedIDs[1])
		case t.ClientPorts != nil && !pairOK(t.ClientPorts, 1, 65535):
			why = fmt.Sprintf("client_port=%d-%d: ports are 1 to 65535, the RTCP port after the RTP port", t.ClientPorts[0], t.ClientPorts[1])
		default:
			return ""
		}
	}
	return why
}

func pairOK(p *[2]int, lo, hi int) bool { return p[0] >= lo && p[1] <= hi && p[1] > p[0] }

// isNormalEnd reports whether err is a client leaving or the server
// shutting down, not a fault worth a reason in the log.
func isNormalEnd(err error) bool {
	var torn liberrors.ErrServerSessionTornDown
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) || errors.As(err, &torn) ||
		errors.As(err, new(liberrors.ErrServerTerminated))
}

// OnDescribe answers with the SDP of a live hub stream, starting an
// on-demand source if the path has one.
func (s *Server) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (res *base.Response, stream *gortsplib.ServerStream, err error) {
	defer s.recoverRes("rtsp DESCRIBE", &res, &err)
	out, _, res, err := s.readOut(ctx.Conn, ctx.Request, trimPath(ctx.Path), ctx.Query)
	if out == nil {
		return res, nil, err
	}
	return &base.Response{StatusCode: base.StatusOK}, out.unicast, nil
}

// readOut checks that path may be read with the request's credentials and
// returns its outStream (starting an on-demand source), or the refusal
// (response and handler error, see refuse).
func (s *Server) readOut(c *gortsplib.ServerConn, req *base.Request, path, query string) (*outStream, server.ReadRequest, *base.Response, error) {
	rr, err := s.authorizeRead(c, req, path, query)
	if err != nil {
		res, err := refuse(err)
		return nil, rr, res, err
	}
	out, err := s.outFor(path, true)
	if err != nil {
		return nil, rr, refusal(err), nil
	}
	return out, rr, nil, nil
}

// OnAnnounce checks that path may be published with this session's
// credentials and that the SDP has a track the hub carries.
func (s *Server) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (res *base.Response, err error) {
	defer s.recoverRes("rtsp ANNOUNCE", &res, &err)
	st := ctx.Session.UserData().(*session)
	path := trimPath(ctx.Path)
	key, err := s.authorize(ctx.Conn, ctx.Request, path, ctx.Query, s.hub.PathConfig(path).PublishKey)
	if err != nil {
		return refuse(err)
	}
	// Hold the path until RECORD: a stream in its grace period keeps its
	// readers for this publisher. A stream key may be the path's last
	// segment: from here on the session knows the stream's public path.
	session := ctx.Session
	claim, err := s.hub.Publish(context.Background(), path, server.PublishRequest{
		Peer: server.Peer{Protocol: protocol(ctx.Conn), Remote: st.remote, Query: ctx.Query}, Key: key, Kick: func() { session.Close() }})
	if err != nil {
		return refusal(err), nil
	}
	path = claim.Path()
	in, err := newIngest(ctx.Description)
	if err != nil {
		claim.Release()
		return &base.Response{StatusCode: base.StatusUnsupportedMediaType, StatusMessage: reasonPhrase(err)}, nil
	}
	if st.claim != nil {
		st.claim.Release() // a second ANNOUNCE
	}
	in.log, in.path = s.log, path
	st.path, st.in, st.claim = path, in, claim
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSetup accepts a publisher's tracks, or gives a player the path's stream
// (the multicast one for a multicast SETUP).
func (s *Server) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (res *base.Response, stream *gortsplib.ServerStream, err error) {
	defer s.recoverRes("rtsp SETUP", &res, &err)
	if why := badTransport(ctx.Request.Header["Transport"]); why != "" {
		return &base.Response{StatusCode: base.StatusUnsupportedTransport, StatusMessage: "Unsupported Transport: " + why}, nil, nil
	}
	st := ctx.Session.UserData().(*session)
	tr := ctx.Transport.Protocol
	if (tr == gortsplib.ProtocolTCP && !s.conf.has(TransportTCP)) ||
		(tr == gortsplib.ProtocolUDP && !s.conf.has(TransportUDP)) ||
		(tr == gortsplib.ProtocolUDPMulticast && !s.conf.has(TransportMulticast)) {
		return &base.Response{StatusCode: base.StatusUnsupportedTransport,
			StatusMessage: "Unsupported Transport: this server offers " + strings.Join(s.conf.Transports, ", ")}, nil, nil
	}
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	path := trimPath(ctx.Path)
	if st.out == nil {
		out, rr, res, err := s.readOut(ctx.Conn, ctx.Request, path, ctx.Query)
		if out == nil {
			return res, nil, err
		}
		st.path, st.out, st.multicast, st.read = path, out, tr == gortsplib.ProtocolUDPMulticast, rr
		s.mu.Lock()
		out.refs++
		s.mu.Unlock()
	}
	if st.multicast {
		ms := st.mcStream
		if ms == nil {
			var err error
			if ms, err = st.out.joinMulticastStream(); err != nil {
				return &base.Response{StatusCode: base.StatusInternalServerError, StatusMessage: reasonPhrase(err)}, nil, nil
			}
			st.mcStream = ms
		}
		return &base.Response{StatusCode: base.StatusOK}, ms, nil
	}
	if st.own == nil {
		own := &gortsplib.ServerStream{Server: s.lib, Desc: st.out.desc}
		if err := own.Initialize(); err != nil {
			return &base.Response{StatusCode: base.StatusInternalServerError, StatusMessage: reasonPhrase(err)}, nil, nil
		}
		st.own = own
	}
	return &base.Response{StatusCode: base.StatusOK}, st.own, nil
}

// OnPlay starts sending: a play loop of its own for a unicast player, the
// path's multicast feeder for a multicast one.
func (s *Server) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (res *base.Response, err error) {
	defer s.recoverRes("rtsp PLAY", &res, &err)
	st := ctx.Session.UserData().(*session)
	if st.stop != nil {
		return &base.Response{StatusCode: base.StatusOK}, nil // already playing
	}
	if st.multicast {
		st.stop = s.playMulticast(st.out)
		markInSession(ctx.Conn.NetConn())
		return &base.Response{StatusCode: base.StatusOK}, nil
	}
	session := ctx.Session
	rr := st.read
	rr.Kick = func() { session.Close() }
	r, err := s.hub.Read(context.Background(), st.path, rr)
	if err != nil {
		return refusal(err), nil
	}
	st.stop = s.startPlay(ctx.Session, st, st.out, r, s.playWriter(ctx.Session, ctx.Conn, st))
	markInSession(ctx.Conn.NetConn())
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnPause stops sending; a later PLAY starts again at a cached keyframe.
func (s *Server) OnPause(ctx *gortsplib.ServerHandlerOnPauseCtx) (res *base.Response, err error) {
	defer s.recoverRes("rtsp PAUSE", &res, &err)
	st := ctx.Session.UserData().(*session)
	if st.out != nil && !st.multicast && st.stop != nil { // a multicast group plays on for the others
		st.stop()
		st.stop = nil
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnRecord makes the session the path's publisher.
func (s *Server) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (res *base.Response, err error) {
	defer s.recoverRes("rtsp RECORD", &res, &err)
	st := ctx.Session.UserData().(*session)
	if st.pub != nil {
		return &base.Response{StatusCode: base.StatusOK}, nil // already recording
	}
	if st.in == nil || st.claim == nil {
		return &base.Response{StatusCode: base.StatusBadRequest, StatusMessage: "Bad Request: RECORD without ANNOUNCE"}, nil
	}
	pub, err := st.claim.Publish(st.in.tracks)
	st.claim = nil
	if err != nil {
		return refusal(err), nil
	}
	st.pub = pub
	markInSession(ctx.Conn.NetConn())
	st.in.pub = pub
	st.in.register(ctx.Session)
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnDecodeError counts undecodable RTP/RTCP from a publisher; it does not
// end the session (a lossy camera still streams).
func (s *Server) OnDecodeError(ctx *gortsplib.ServerHandlerOnDecodeErrorCtx) {
	defer guard.Recover(s.log, "rtsp OnDecodeError")
	if st, ok := ctx.Session.UserData().(*session); ok && st.in != nil {
		st.in.decodeError(ctx.Error)
	}
}

// OnPacketsLost counts RTP packets a publisher lost.
func (s *Server) OnPacketsLost(ctx *gortsplib.ServerHandlerOnPacketsLostCtx) {
	defer guard.Recover(s.log, "rtsp OnPacketsLost")
	if st, ok := ctx.Session.UserData().(*session); ok && st.in != nil {
		st.in.lost.Add(ctx.Lost)
	}
}

// authorizeRead returns the read request of a player whose credentials
// let it read path, else why not (see refuse).
func (s *Server) authorizeRead(c *gortsplib.ServerConn, req *base.Request, path, query string) (server.ReadRequest, error) {
	key, err := s.authorize(c, req, path, query, s.hub.PathConfig(path).ReadKey)
	if err != nil {
		return server.ReadRequest{}, err
	}
	rr := server.ReadRequest{Key: key, Peer: server.Peer{Protocol: protocol(c), Remote: c.NetConn().RemoteAddr().String(), Query: query}}
	return rr, s.hub.Authorize(context.Background(), path, rr)
}

// authorize checks a path's key, given as ?key= or as the RTSP password
// (basic or digest, any user name). It returns the key that matched, or the
// error: a *server.PathError or liberrors.ErrServerAuth (see refuse).
func (s *Server) authorize(c *gortsplib.ServerConn, req *base.Request, path, query, want string) (string, error) {
	if err := server.ValidatePath(path); err != nil {
		return "", err
	}
	q, _ := url.ParseQuery(query)
	if k := q.Get("key"); k != "" {
		return k, nil // the hub compares it in constant time (or checks a stream key or play token)
	}
	if want == "" {
		return "", nil
	}
	user := "streamhub" // VerifyCredentials refuses an empty user before making its nonce
	v, sent := req.Header["Authorization"]
	if sent && len(v) == 1 {
		var a headers.Authorization
		if a.Unmarshal(v) == nil && a.Username != "" {
			user = a.Username
		}
	}
	// A password is a key like ?key=: the same failure budget per address,
	// refusal delay and (summarized) log line. The first request of a
	// client, without credentials, only gets the challenge.
	peer := server.Peer{Protocol: protocol(c), Remote: c.NetConn().RemoteAddr().String(), Query: query}
	if sent {
		if err := s.hub.AuthGate(peer); err != nil {
			s.hub.LogRefusal(s.log, peer.Remote, "rtsp throttled", "refused", "remote", peer.Remote, "path", server.LogPath(path), "cause", err.Error())
			return "", err
		}
	}
	if c.VerifyCredentials(req, user, want) {
		return want, nil
	}
	if sent {
		s.hub.AuthFailed(peer)
		s.hub.LogRefusal(s.log, peer.Remote, "rtsp wrong password", "refused", "remote", peer.Remote, "path", server.LogPath(path),
			"cause", "wrong RTSP password", "user", guard.Truncate(user))
	}
	return "", liberrors.ErrServerAuth{}
}

// refuse returns the response and handler error for a refusal: a 401 with
// liberrors.ErrServerAuth, which makes gortsplib add the challenge when no
// credentials were sent and close the connection after wrong ones; else
// refusal(err) and no error, so the client may try again.
func refuse(err error) (*base.Response, error) {
	var auth liberrors.ErrServerAuth
	if errors.As(err, &auth) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, err
	}
	return refusal(err), nil
}

// refusal maps a hub error to an RTSP response whose reason phrase says
// what went wrong.
func refusal(err error) *base.Response {
	code := base.StatusInternalServerError
	var pe *server.PathError
	switch {
	case errors.As(err, &pe), errors.Is(err, server.ErrBadRole):
		code = base.StatusBadRequest
	case errors.Is(err, server.ErrStreamNotFound):
		code = base.StatusNotFound
	case errors.Is(err, server.ErrUnauthorized):
		code = base.StatusForbidden
	case errors.Is(err, server.ErrPathBusy), errors.Is(err, server.ErrRungPath):
		code = base.StatusForbidden
	case errors.Is(err, server.ErrTooManyReaders), errors.Is(err, server.ErrHubClosed):
		code = base.StatusServiceUnavailable
	}
	return &base.Response{StatusCode: code, StatusMessage: reasonPhrase(err)}
}

// reasonPhrase makes err fit an RTSP status line: one line, bounded.
func reasonPhrase(err error) string {
	msg := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, err.Error())
	if len(msg) > 300 {
		msg = msg[:300]
	}
	return msg
}

// trimPath turns gortsplib's "/live/test" into the hub path "live/test".
func trimPath(p string) string { return strings.Trim(p, "/") }
