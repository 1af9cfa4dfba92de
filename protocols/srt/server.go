// Package srt serves SRT on gosrt: callers publish MPEG-TS into the hub or
// read any hub stream as MPEG-TS.
//
//	caller ──handshake (streamid, passphrase)──▶ handle ──▶ publish or read
//	publish: conn ──mpegts.Reader──▶ ingest (TS → units, once) ──▶ hub
//	read:    hub Reader ──TS muxed once per stream (egress.go)──▶ 1316-byte messages ──▶ conn
//
// gosrt neither parses stream IDs nor enforces passphrases by itself (an
// unencrypted caller is accepted unless we check): both happen here, before
// Accept, and a refusal carries an SRT reject code.
package srt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	gosrt "github.com/datarhei/gosrt"

	"github.com/streamhub/streamhub/internal/conf"
	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/server"
)

// onDemandWait bounds how long a reader's handshake waits for an
// on-demand source to publish.
const onDemandWait = 2500 * time.Millisecond

// PayloadSize is the SRT message size: seven 188-byte TS packets.
const PayloadSize = 7 * 188

// Config configures the SRT server.
type Config struct {
	// Address is the UDP listen address; "" switches SRT off.
	Address string `yaml:"address"`
	// Latency is the SRT (TSBPD) latency asked of callers; the larger of
	// this and the caller's applies.
	Latency time.Duration `yaml:"latency"`
	// ReadTimeout drops a peer that sends nothing (not even keepalives)
	// for this long, and a publisher that sends no media for this long.
	ReadTimeout time.Duration `yaml:"readTimeout"`
	// WriteTimeout drops a reader that could take nothing for this long.
	WriteTimeout time.Duration `yaml:"writeTimeout"`
}

// Validate returns the problems of the section at prefix ("srt"), each
// naming its key.
func (c *Config) Validate(prefix string) []error {
	p := conf.New(prefix)
	p.Address("address", c.Address, true, ":8890")
	p.Duration("latency", c.Latency, 20*time.Millisecond, 10*time.Second)
	p.Duration("readTimeout", c.ReadTimeout, 100*time.Millisecond, 10*time.Minute)
	p.Duration("writeTimeout", c.WriteTimeout, 100*time.Millisecond, 10*time.Minute)
	return p.Errs()
}

// Server is the SRT server.
type Server struct {
	conf Config
	hub  *server.Hub
	log  *slog.Logger
	ln   gosrt.Listener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex // mu guards conns, rejected and muxes
	conns map[*conn]struct{}
	// muxes holds the MPEG-TS muxers shared by the readers of each stream.
	muxes map[*server.Stream]*streamMux
	// rejected remembers the callers (address and port) refused in the
	// last rejectMemory and why: a caller retransmits its handshake while
	// a refusal waits out the refusal delay, and gosrt hands the
	// retransmission over as a new request once the first is answered.
	// It gets the same answer, without a second log line or failure.
	rejected map[string]rejection
}

// rejection is a caller refused lately.
type rejection struct {
	code gosrt.RejectionReason
	at   time.Time
}

// rejectMemory is how long a refused caller's retransmissions get the same
// answer quietly; rejectedMax bounds the callers remembered.
const (
	rejectMemory = 3 * time.Second
	rejectedMax  = 10000
)

// New returns a server; Start listens.
func New(conf Config, hub *server.Hub, log *slog.Logger) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{conf: conf, hub: hub, log: log.With("proto", "srt"), ctx: ctx, cancel: cancel,
		conns: map[*conn]struct{}{}, rejected: map[string]rejection{}, muxes: map[*server.Stream]*streamMux{}}
}

// srtConfig is the gosrt configuration for listening and dialing.
func (c Config) srtConfig() gosrt.Config {
	cfg := gosrt.DefaultConfig()
	cfg.PayloadSize = PayloadSize
	cfg.ReceiverLatency, cfg.PeerLatency = c.Latency, c.Latency
	cfg.PeerIdleTimeout = c.ReadTimeout
	return cfg
}

// Start opens the UDP listener.
func (s *Server) Start() error {
	ln, err := gosrt.Listen("srt", s.conf.Address, s.conf.srtConfig())
	if err != nil {
		return fmt.Errorf("srt: listen on %s (srt.address): %w", s.conf.Address, err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop()
	s.log.Info("listening", "address", ln.Addr().String(), "latency", s.conf.Latency)
	return nil
}

// Addr returns the listener's address (after Start).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting, closes every connection and waits for them.
func (s *Server) Close() {
	s.cancel()
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Lock()
	for c := range s.conns {
		c.sc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	failures := 0
	for {
		req, err := s.ln.Accept2()
		if err != nil {
			if errors.Is(err, gosrt.ErrListenerClosed) || s.ctx.Err() != nil {
				return
			}
			if failures == 0 { // once per episode
				s.log.Warn("accept failed; retrying", "err", guard.Truncate(err.Error()))
			}
			failures++
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if failures > 0 {
			s.log.Info("accepting again", "failures", failures)
			failures = 0
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer guard.Recover(s.log, "srt connection", "remote", req.RemoteAddr().String())
			s.handle(req)
		}()
	}
}

// refusal is why a caller is turned away: an SRT reject code and a reason
// for the log.
type refusal struct {
	code   gosrt.RejectionReason
	reason error
}

func (r *refusal) Error() string { return r.reason.Error() }

// refuseFor maps a hub or stream ID error to a reject code.
func refuseFor(err error) *refusal {
	var pe *server.PathError
	code := gosrt.REJX_ISE
	switch {
	case errors.Is(err, errBadMode):
		code = gosrt.REJX_BAD_MODE
	case errors.Is(err, errStreamIDSyntax), errors.As(err, &pe), errors.Is(err, server.ErrBadRole):
		code = gosrt.REJX_BAD_REQUEST
	case errors.Is(err, server.ErrUnauthorized):
		code = gosrt.REJX_UNAUTHORIZED
	case errors.Is(err, server.ErrPathBusy), errors.Is(err, server.ErrRungPath):
		code = gosrt.REJX_CONFLICT
	case errors.Is(err, server.ErrStreamNotFound):
		code = gosrt.REJX_NOTFOUND
	case errors.Is(err, server.ErrTooManyReaders), errors.Is(err, server.ErrHubClosed):
		code = gosrt.REJX_OVERLOAD
	}
	return &refusal{code: code, reason: err}
}

// handle checks a connection request, accepts or refuses it, and runs the
// connection. It logs exactly one line when the connection ends (or is
// refused), with the reason.
func (s *Server) handle(req gosrt.ConnRequest) {
	remote := req.RemoteAddr().String()
	s.mu.Lock()
	prev, again := s.rejected[remote]
	s.mu.Unlock()
	if again && time.Since(prev.at) < rejectMemory {
		req.Reject(prev.code) // a retransmitted handshake of a caller just refused
		return
	}
	id, err := ParseStreamID(req.StreamId())
	if err != nil {
		s.reject(req, remote, StreamID{}, refuseFor(err))
		return
	}
	pc := s.hub.PathConfig(id.Path)
	pass := pc.SRTReadPassphrase
	if id.Mode == ModePublish {
		pass = pc.SRTPublishPassphrase
	}
	switch {
	case pass != "" && !req.IsEncrypted():
		// gosrt would accept it: the passphrase must be enforced here.
		s.reject(req, remote, id, &refusal{gosrt.REJ_UNSECURE,
			fmt.Errorf("the path needs a passphrase (srt%sPassphrase) and the caller does not encrypt", modeKey(id.Mode))})
		return
	case pass == "" && req.IsEncrypted():
		s.reject(req, remote, id, &refusal{gosrt.REJ_UNSECURE,
			errors.New("the caller encrypts but the path has no passphrase: connect without one")})
		return
	case pass != "":
		if err := req.SetPassphrase(pass); err != nil {
			s.reject(req, remote, id, &refusal{gosrt.REJ_BADSECRET, fmt.Errorf("wrong passphrase (%v)", err)})
			return
		}
	}

	var (
		r     *server.Reader
		claim *server.Claim
	)
	if id.Mode == ModePublish {
		// A stream key may be the path's last segment: resolve it to the
		// stream's public path before anything logs the path.
		// Hold the path until the caller's tracks are known: a stream in
		// its grace period keeps its readers for it. A stream key may be
		// the path's last segment: the claim knows the public path.
		var err error
		claim, err = s.hub.Publish(s.ctx, id.Path, server.PublishRequest{Peer: server.Peer{Protocol: "srt", Remote: remote, Query: id.Query}, Key: id.Key})
		if err != nil {
			id.Path = server.LogPath(id.Path)
			s.reject(req, remote, id, refuseFor(err))
			return
		}
		defer claim.Release() // no-op once published
		id.Path = claim.Path()
	} else {
		// Attach before accepting, so a missing stream is a clear reject
		// code rather than an accepted connection that closes at once.
		// Callers give up on a handshake after about 3 s (libsrt's
		// connect timeout): an on-demand source gets less than that.
		ctx, cancel := context.WithTimeout(s.ctx, onDemandWait)
		// MPEG-TS players (ffmpeg, ffprobe, VLC) analyze 5 s of media
		// before they show any: give them the path's backlog at once
		// (played through within catchUp) instead of 5 s of waiting.
		r, err = s.hub.Read(ctx, id.Path, server.ReadRequest{Peer: server.Peer{Protocol: "srt", Remote: remote}, Key: id.Key, Wait: true,
			Backlog: s.hub.PathConfig(id.Path).GOPCache.Backlog})
		cancel()
		if err != nil {
			s.reject(req, remote, id, refuseFor(err))
			return
		}
	}

	sc, err := req.Accept()
	if err != nil {
		if r != nil {
			r.Close()
		}
		// A wrong passphrase ends here (gosrt rejects with BADSECRET).
		s.hub.LogRefusal(s.log, remote, "srt handshake", "connection refused", "path", server.LogPath(id.Path), "mode", id.Mode.String(), "remote", remote,
			"cause", "handshake failed (wrong passphrase?): "+guard.Truncate(err.Error()))
		return
	}
	c := &conn{srv: s, sc: sc, id: id, remote: remote, started: time.Now()}
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		sc.Close()
		if r != nil {
			r.Close()
		}
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		sc.Close()
	}()
	s.log.Info("connection opened", "path", id.Path, "mode", id.Mode.String(), "remote", remote)
	if id.Mode == ModePublish {
		err = c.publish(claim)
	} else {
		err = c.read(r)
	}
	reason := "closed"
	if err != nil {
		reason = err.Error()
	}
	st := c.stats()
	s.log.Info("connection closed", "path", id.Path, "mode", id.Mode.String(), "remote", remote, "cause", reason,
		"rttMs", st.RTTMs, "lossPkts", st.LossPackets, "retransPkts", st.Retransmitted, "dropPkts", st.Dropped, "slowDrops", st.SlowDrops)
}

func modeKey(m Mode) string {
	if m == ModePublish {
		return "Publish"
	}
	return "Read"
}

func (s *Server) reject(req gosrt.ConnRequest, remote string, id StreamID, r *refusal) {
	s.mu.Lock()
	if len(s.rejected) >= rejectedMax {
		for k, old := range s.rejected {
			if time.Since(old.at) >= rejectMemory {
				delete(s.rejected, k)
			}
		}
		if len(s.rejected) >= rejectedMax {
			clear(s.rejected)
		}
	}
	s.rejected[remote] = rejection{code: r.code, at: time.Now()}
	s.mu.Unlock()
	// Log first: the caller may act on the rejection at once.
	s.hub.LogRefusal(s.log, remote, "srt "+strconv.Itoa(int(r.code)), "connection refused", "path", guard.Truncate(server.LogPath(id.Path)), "remote", remote,
		"code", int(r.code), "cause", guard.Truncate(r.reason.Error()))
	req.Reject(r.code)
}

// conn is one accepted SRT connection.
type conn struct {
	srv     *Server
	sc      gosrt.Conn
	id      StreamID
	remote  string
	started time.Time

	// counters of the media layer, for Stats
	mu            sync.Mutex
	decodeErrors  uint64
	lastDecodeErr string
	slowDrops     uint64
}

// connStats are one connection's figures: logged when it closes, and its
// link figures in the session list and the metrics (link).
type connStats struct {
	Path, Mode, Remote   string
	Since                time.Time
	RTTMs                float64 // smoothed round-trip time
	MbpsSend, MbpsRecv   float64 // current rates
	LinkMbps             float64 // estimated link capacity
	BytesSent, BytesRecv uint64
	LossPackets          uint64 // packets detected lost (receiver) or reported lost (sender)
	Retransmitted        uint64
	Dropped              uint64 // packets dropped, both directions: too late (TLPKTDROP), and in gosrt's count duplicate retransmissions too
	DecodeErrors         uint64 // MPEG-TS problems (continuity, corrupt PES) in a publisher's stream
	SlowDrops            uint64 // units a reader skipped because its send queue was full
}

// stats returns the connection's current figures.
func (c *conn) stats() connStats {
	var st gosrt.Statistics
	c.sc.Stats(&st)
	a := st.Accumulated
	c.mu.Lock()
	defer c.mu.Unlock()
	return connStats{
		Path: c.id.Path, Mode: c.id.Mode.String(), Remote: c.remote, Since: c.started,
		RTTMs: st.Instantaneous.MsRTT, MbpsSend: st.Instantaneous.MbpsSentRate, MbpsRecv: st.Instantaneous.MbpsRecvRate,
		LinkMbps: st.Instantaneous.MbpsLinkCapacity, BytesSent: a.ByteSent, BytesRecv: a.ByteRecv,
		LossPackets: a.PktRecvLoss + a.PktSendLoss, Retransmitted: a.PktRetrans + a.PktRecvRetrans,
		Dropped: a.PktSendDrop + a.PktRecvDrop, DecodeErrors: c.decodeErrors, SlowDrops: c.slowDrops,
	}
}

// link returns the connection's SRT link figures for the hub's session
// list and metrics.
func (c *conn) link() server.LinkStats {
	st := c.stats()
	return server.LinkStats{RTTMs: st.RTTMs, LinkMbps: st.LinkMbps, LostPackets: st.LossPackets,
		Retransmitted: st.Retransmitted, Dropped: st.Dropped}
}
