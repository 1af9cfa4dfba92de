// Package webrtc serves WHIP ingest (RFC 9725) and WHEP playback on
// pion/webrtc, over one UDP port for every session (ICE UDP mux) and the
// same port number over TCP (ICE-TCP) for networks that block UDP.
//
//	WHIP  POST /<path>/whip ─▶ PeerConnection ─RTP─▶ reorder ─▶ depacketize ─▶ hub Publisher
//	                                 ▲ PLI every keyframeInterval, and when a reader
//	                                 │ joins with no keyframe cached (Stream.RequestKeyframe)
//	WHEP  hub Reader ─▶ Unit.Memo (RTP payloads, once per unit for every viewer)
//	                 ─▶ per viewer: seq/timestamp, SRTP ─▶ the shared UDP/TCP port
//
// A session is a PeerConnection with its own goroutine (session.run), which
// is the one place it ends and logs why.
package webrtc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/transport/v5/stdnet"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/streamhub/streamhub/internal/conf"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// Config configures a Server; it is also the webrtc: section of the
// config file (the yaml keys), checked by Validate. New fills zero
// durations with defaults.
type Config struct {
	// Enabled serves WHIP and WHEP (on the HTTP port) and listens on the
	// ICE ports.
	Enabled bool `yaml:"enabled"`
	// UDPAddress is the one UDP port of every session (":8189").
	UDPAddress string `yaml:"udpAddress"`
	// TCPAddress, when not "", takes ICE over TCP (usually the same
	// port number as UDPAddress).
	TCPAddress string `yaml:"tcpAddress"`
	// AdditionalHosts are IP addresses or host names announced as host
	// candidates besides the interfaces' own (a public IP behind NAT, the
	// host's IP for a server in Docker). New takes IP addresses only:
	// ResolveHosts turns the names into them.
	AdditionalHosts []string `yaml:"additionalHosts"`
	// HostsOnly announces AdditionalHosts instead of the interfaces' own.
	HostsOnly bool `yaml:"hostsOnly"`
	// ICEServers are handed to clients (Link headers, the web pages);
	// the server itself gathers host candidates only.
	ICEServers []ICEServer `yaml:"iceServers"`
	// HandshakeTimeout frees a session whose ICE and DTLS have not
	// completed this long after its POST.
	HandshakeTimeout time.Duration `yaml:"handshakeTimeout"`
	// KeyframeInterval is how often a WHIP publisher is asked for a
	// keyframe (PLI) when it sent none for that long: browsers' encoders
	// send keyframes only when asked.
	KeyframeInterval time.Duration `yaml:"keyframeInterval"`
	// Loopback also announces loopback addresses (tests on one machine).
	Loopback bool `yaml:"-"`
	// OpusPath, if set, names the companion stream of a source whose audio
	// is not Opus (AAC from RTMP, SRT, RTSP): the same video with Opus
	// audio, made on demand while read (the transcode audio job). A WHEP
	// viewer of such a source reads its audio from there; "" means none.
	OpusPath func(source string) string `yaml:"-"`
	// AACEncoder, if set, starts the reverse job for a WHIP publisher with
	// Opus: the stream gets an AAC track (declared with AACConfig, before
	// the Opus one, so players that cannot take Opus find it first) that
	// the encoder fills, through write, from the Opus fed to it.
	AACEncoder func(path string, opus, aac *media.Track, write func(*media.Unit)) (AudioEncoder, error) `yaml:"-"`
	// AACConfig is the AudioSpecificConfig of the encoder's AAC.
	AACConfig []byte `yaml:"-"`
}

// AudioEncoder turns one track's audio into another codec (an FFmpeg
// child of the transcode package).
type AudioEncoder interface {
	// Feed hands over one unit; it must not block or keep u.
	Feed(u *media.Unit)
	// Close stops the encoder and waits for it.
	Close()
}

// ICEServer is a STUN or TURN server for clients.
type ICEServer struct {
	URLs       []string `yaml:"urls"`
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential"`
}

// Validate returns the problems of the section at prefix ("webrtc"), each
// naming its key; a section that is not enabled is not checked.
func (c *Config) Validate(prefix string) []error {
	if !c.Enabled {
		return nil
	}
	p := conf.New(prefix)
	p.Address("udpAddress", c.UDPAddress, false, ":8189")
	if c.TCPAddress != "" {
		p.Address("tcpAddress", c.TCPAddress, true, ":8189")
	}
	for i, h := range c.AdditionalHosts {
		if h == "" || strings.ContainsAny(h, "/ :?#@") && net.ParseIP(h) == nil {
			p.Bad(fmt.Sprintf("additionalHosts[%d]", i), "must be an IP address or a host name without scheme or port (got %q)", h)
		}
	}
	if c.HostsOnly && len(c.AdditionalHosts) == 0 {
		p.Bad("hostsOnly", "needs %s.additionalHosts: it announces only those", prefix)
	}
	for i, is := range c.ICEServers {
		at := fmt.Sprintf("iceServers[%d]", i)
		if len(is.URLs) == 0 {
			p.Bad(at+".urls", "list at least one stun:, stuns:, turn: or turns: URL")
		}
		for _, u := range is.URLs {
			scheme, rest, _ := strings.Cut(u, ":")
			switch {
			case scheme != "stun" && scheme != "stuns" && scheme != "turn" && scheme != "turns", rest == "":
				p.Bad(at+".urls", "%q must be stun:HOST[:PORT], stuns:, turn:HOST[:PORT][?transport=udp|tcp] or turns:", u)
			case strings.HasPrefix(scheme, "turn") && (is.Username == "" || is.Credential == ""):
				p.Bad(at+".username", "a TURN server needs username and credential")
			case strings.ContainsAny(u, "<>\"\r\n ,;"):
				p.Bad(at+".urls", "%q has a character that cannot go in a Link header", u)
			}
		}
		if strings.ContainsAny(is.Username+is.Credential, "\"\\\r\n") {
			p.Bad(at+".username", "username and credential must not contain quotes, backslashes or line breaks")
		}
	}
	p.Duration("handshakeTimeout", c.HandshakeTimeout, time.Second, time.Minute)
	p.Duration("keyframeInterval", c.KeyframeInterval, 250*time.Millisecond, time.Minute)
	return p.Errs()
}

// ResolveHosts returns c with the host names of AdditionalHosts resolved
// to their addresses (New takes IP addresses only).
func (c Config) ResolveHosts() (Config, error) {
	var hosts []string
	for _, h := range c.AdditionalHosts {
		if net.ParseIP(h) != nil {
			hosts = append(hosts, h)
			continue
		}
		ips, err := net.LookupIP(h)
		if err != nil {
			return c, fmt.Errorf("webrtc.additionalHosts: %w", err)
		}
		for _, ip := range ips {
			hosts = append(hosts, ip.String())
		}
	}
	c.AdditionalHosts = hosts
	return c, nil
}

// Defaults.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultKeyframeInterval = 2 * time.Second
)

// Errors.
var (
	// ErrServerClosed is returned for requests after Close.
	ErrServerClosed = errors.New("webrtc: server closed")
	// errNoSession is returned for a PATCH or DELETE of an unknown session.
	errNoSession = errors.New("webrtc: no such session: it ended, timed out, or never existed")
)

// Server serves WHIP and WHEP. Mount it (ServeHTTP) for the URLs Match
// accepts.
type Server struct {
	conf Config
	hub  *server.Hub
	log  *slog.Logger

	udp    *gsoConn
	tcp    net.Listener
	udpMux ice.UDPMux
	tcpMux ice.TCPMux
	whip   *pwebrtc.API
	whep   *pwebrtc.API

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // session goroutines

	mu       sync.Mutex // mu guards sessions and closed
	sessions map[string]*session
	closed   bool

	fansMu sync.Mutex // fansMu guards fans and their shards' members (fan.go)
	fans   map[*server.Stream][]*fanShard

	certMu sync.Mutex // certMu guards cert and certAt (certificate)
	cert   *pwebrtc.Certificate
	certAt time.Time
}

// New returns a server; Start opens its ports.
func New(c Config, hub *server.Hub, log *slog.Logger) *Server {
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.KeyframeInterval <= 0 {
		c.KeyframeInterval = DefaultKeyframeInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{conf: c, hub: hub, log: log.With("proto", "webrtc"), ctx: ctx, cancel: cancel, sessions: map[string]*session{}}
}

// Start opens the UDP port (and the TCP one) and builds the pion APIs.
func (s *Server) Start() error {
	ua, err := net.ResolveUDPAddr("udp", s.conf.UDPAddress)
	if err != nil {
		return fmt.Errorf("webrtc: webrtc.udpAddress %q: %w", s.conf.UDPAddress, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return fmt.Errorf("webrtc: listen on udp %s (webrtc.udpAddress): %w", s.conf.UDPAddress, err)
	}
	s.udp = newGSOConn(udp, s.log)
	lf := pionLogger(s.log)
	s.udpMux = pwebrtc.NewICEUDPMux(lf.NewLogger("ice"), s.udp)
	if s.conf.TCPAddress != "" {
		ln, err := net.Listen("tcp", s.conf.TCPAddress)
		if err != nil {
			s.udpMux.Close()
			return fmt.Errorf("webrtc: listen on tcp %s (webrtc.tcpAddress): %w", s.conf.TCPAddress, err)
		}
		s.tcp = ln
		s.tcpMux = pwebrtc.NewICETCPMux(lf.NewLogger("ice"), ln, 32)
	}
	// One view of the host's interfaces for every session's ICE agent:
	// pion makes one per agent otherwise (a netlink dump, ~0.25 ms of a
	// viewer's join). The UDP mux reads its addresses once at start too.
	ifs, err := stdnet.NewNet()
	if err == nil {
		if s.whip, err = s.newAPI(true, ifs); err == nil {
			s.whep, err = s.newAPI(false, ifs)
		}
	} else {
		err = fmt.Errorf("webrtc: list the network interfaces: %w", err)
	}
	if err != nil {
		s.closePorts()
		return err
	}
	s.log.Info("listening", "udp", udp.LocalAddr().String(), "tcp", s.TCPAddr())
	return nil
}

// UDPAddr returns the address of the UDP port, once started.
func (s *Server) UDPAddr() string { return s.udp.LocalAddr().String() }

// TCPAddr returns the address of the ICE-TCP port, "" if off.
func (s *Server) TCPAddr() string {
	if s.tcp == nil {
		return ""
	}
	return s.tcp.Addr().String()
}

// ICEServers returns the STUN/TURN servers for clients (the web pages).
func (s *Server) ICEServers() []ICEServer { return s.conf.ICEServers }

func (s *Server) closePorts() {
	if s.udpMux != nil {
		s.udpMux.Close()
	}
	if s.udp != nil {
		s.udp.Close()
	}
	if s.tcpMux != nil {
		s.tcpMux.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
}

// Close ends every session, waits for them and closes the ports.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for _, ss := range s.sessions {
		ss.end(ErrServerClosed)
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.closePorts()
}

// Sessions returns how many WHIP and WHEP sessions exist (tests, figures).
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// add registers ss under a fresh id; false after Close.
func (s *Server) add(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.sessions[ss.id] = ss
	s.wg.Add(1)
	return true
}

func (s *Server) remove(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss.id)
	s.mu.Unlock()
}

func (s *Server) lookup(id, kind, path string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[id]
	if ss == nil || ss.kind != kind || ss.path != path {
		return nil
	}
	return ss
}

// newID returns 32 random hex digits: a session URL is its only secret.
func newID() string {
	var b [16]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// pionLogger sends pion's warnings and errors to log at Debug: pion logs
// per-peer trouble (a failed binding, a bad packet) that our session lines
// already sum up.
func pionLogger(log *slog.Logger) logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelError
	f.Writer = slogWriter{log}
	return f
}

type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("pion", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}
