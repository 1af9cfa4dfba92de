package webrtc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/sdp/v3"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/streamhub/streamhub/internal/guard"
)

// gatherTimeout bounds waiting for our own candidates before answering.
// They are host candidates on the muxed ports, known at once.
const gatherTimeout = 2 * time.Second

// Causes a session ends with.
var (
	errHandshakeTimeout = errors.New("webrtc: ICE/DTLS did not complete within webrtc.handshakeTimeout")
	errICEFailed        = errors.New("webrtc: the peer stopped answering (ICE failed)")
	errPeerClosed       = errors.New("webrtc: the peer closed the connection")
	errETag             = errors.New("webrtc: If-Match does not match the session's ETag: GET a new session or restart ICE with If-Match: \"*\"")
)

// session is one WHIP publisher or WHEP viewer: a PeerConnection and the
// goroutine (run) that owns it.
type session struct {
	srv    *Server
	id     string
	kind   string
	path   string
	remote string
	log    *slog.Logger
	pc     *pwebrtc.PeerConnection
	answer string // the SDP answer of the POST

	ctx       context.Context
	cancel    context.CancelCauseFunc
	connected chan struct{} // closed once ICE and DTLS are up
	connOnce  sync.Once

	// serve runs once the peer is connected, until ctx is done or it
	// fails; its error is the session's end cause. cleanup runs after
	// the PeerConnection is closed.
	serve   func(ctx context.Context) error
	cleanup func()
	// viewer is a WHEP session's sending side (nil for WHIP).
	viewer *viewer

	// rtt caches the round-trip time (float64 bits, ms), rttAt when it
	// was taken (unix ns); rttBusy while a goroutine fetches it.
	rtt, rttAt atomic.Int64
	rttBusy    atomic.Bool

	mu     sync.Mutex // mu guards ufrag, remote SDP and negotiation
	ufrag  string     // our current ICE ufrag, the ETag
	offer  string     // the remote description now in effect
	closed bool
}

// newSession makes a PeerConnection on api for an offer that parseOffer
// accepted; setup adds tracks between the remote and local descriptions.
// It answers and waits for our candidates.
func (s *Server) newSession(kind, path, remote string, api *pwebrtc.API, offer string, setup func(*session) error) (*session, error) {
	cert, err := s.certificate()
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(pwebrtc.Configuration{Certificates: []pwebrtc.Certificate{cert}})
	if err != nil {
		return nil, fmt.Errorf("webrtc: %w", err)
	}
	ctx, cancel := context.WithCancelCause(s.ctx)
	ss := &session{srv: s, id: newID(), kind: kind, path: path, remote: remote, pc: pc, ctx: ctx, cancel: cancel,
		connected: make(chan struct{}), offer: offer}
	ss.log = s.log.With("kind", kind, "path", path, "remote", remote)
	pc.OnConnectionStateChange(func(st pwebrtc.PeerConnectionState) {
		defer guard.Recover(ss.log, "webrtc state change")
		switch st {
		case pwebrtc.PeerConnectionStateConnected:
			ss.connOnce.Do(func() { close(ss.connected) })
		case pwebrtc.PeerConnectionStateFailed:
			ss.end(errICEFailed)
		case pwebrtc.PeerConnectionStateClosed:
			ss.end(errPeerClosed)
		}
	})
	if err := pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeOffer, SDP: offer}); err != nil {
		pc.Close()
		return nil, badRequest("webrtc: the offer was refused: %v", err)
	}
	if setup != nil {
		if err := setup(ss); err != nil {
			pc.Close()
			return nil, err
		}
	}
	ans, err := ss.negotiate()
	if err != nil {
		pc.Close()
		return nil, err
	}
	ss.answer = ans
	return ss, nil
}

// negotiate answers the remote description in effect and waits for our
// candidates; it returns the answer SDP and notes our ufrag (the ETag).
func (ss *session) negotiate() (string, error) {
	pc := ss.pc
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", badRequest("webrtc: cannot answer the offer: %v", err)
	}
	gathered := pwebrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", badRequest("webrtc: cannot answer the offer: %v", err)
	}
	select {
	case <-gathered:
	case <-time.After(gatherTimeout):
	}
	ld := pc.LocalDescription()
	ss.ufrag = ufragOf(ld.SDP)
	return ld.SDP, nil
}

// start registers the session and runs it; false after Close.
func (ss *session) start() bool {
	if !ss.srv.add(ss) {
		ss.mu.Lock()
		ss.closed = true
		ss.mu.Unlock()
		ss.pc.Close()
		return false
	}
	go ss.run()
	return true
}

// run is where a session lives and ends: it waits for the handshake,
// serves, then closes the PeerConnection and logs the cause once.
func (ss *session) run() {
	defer ss.srv.wg.Done()
	start := time.Now()
	var connectedIn time.Duration // ICE+DTLS time, for the close line
	ss.log.Info("session opened", "id", ss.id[:8])
	err := func() (err error) {
		defer guard.RecoverErr(ss.log, "webrtc session", &err)
		t := time.NewTimer(ss.srv.conf.HandshakeTimeout)
		defer t.Stop()
		select {
		case <-ss.connected:
			connectedIn = time.Since(start)
		case <-t.C:
			return errHandshakeTimeout
		case <-ss.ctx.Done():
			return context.Cause(ss.ctx)
		}
		return ss.serve(ss.ctx)
	}()
	if c := context.Cause(ss.ctx); c != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = c
	}
	ss.end(err)
	ss.mu.Lock()
	ss.closed = true
	ss.mu.Unlock()
	ss.pc.Close() //nolint:errcheck // ending anyway
	if ss.cleanup != nil {
		ss.cleanup()
	}
	ss.srv.remove(ss)
	ss.log.Info("session closed", "id", ss.id[:8], "duration", time.Since(start).Round(time.Millisecond),
		"connected_in", connectedIn.Round(time.Millisecond), "cause", err.Error())
}

// end stops the session with cause; the first cause wins.
func (ss *session) end(cause error) { ss.cancel(cause) }

// etag returns the session's entity tag: our ICE ufrag, quoted; it
// changes with every ICE restart.
func (ss *session) etag() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return `"` + ss.ufrag + `"`
}

// patch applies a fragment: new remote candidates (it returns ""), or,
// when the fragment's credentials differ from the peer's, an ICE restart
// (it returns our new fragment).
func (ss *session) patch(f *sdpFrag, ifMatch string) (string, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return "", errNoSession
	}
	if ifMatch != "" && ifMatch != "*" && ifMatch != `"*"` && ifMatch != `"`+ss.ufrag+`"` {
		return "", errETag
	}
	mid0 := firstMid(ss.offer)
	if f.Ufrag != "" && f.Ufrag != ufragOf(ss.offer) {
		return ss.restartLocked(f, mid0)
	}
	for _, c := range f.Candidates {
		mid := c.Mid
		if mid == "" {
			mid = mid0
		}
		if err := ss.pc.AddICECandidate(pwebrtc.ICECandidateInit{Candidate: c.Value, SDPMid: &mid}); err != nil {
			return "", fmt.Errorf("webrtc: candidate %q: %w", guard.Truncate(c.Value), err)
		}
	}
	return "", nil
}

// restartLocked restarts ICE with the fragment's credentials: the offer in
// effect with new credentials is set again, which makes pion restart its
// agent with new credentials of its own, and the new answer's credentials
// and candidates go back to the client. ss.mu must be held.
func (ss *session) restartLocked(f *sdpFrag, mid string) (string, error) {
	offer := replaceICE(ss.offer, f.Ufrag, f.Pwd)
	if err := ss.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("webrtc: ICE restart: %w", err)
	}
	ss.offer = offer
	ans, err := ss.negotiate()
	if err != nil {
		return "", fmt.Errorf("webrtc: ICE restart: %w", err)
	}
	for _, c := range f.Candidates {
		m := c.Mid
		if m == "" {
			m = mid
		}
		ss.pc.AddICECandidate(pwebrtc.ICECandidateInit{Candidate: c.Value, SDPMid: &m}) //nolint:errcheck // a bad one is skipped
	}
	ss.log.Info("ICE restarted", "id", ss.id[:8])
	return marshalSDPFrag(ss.ufrag, pwdOf(ans), mid, candidatesOf(ans)), nil
}

// parseOffer checks that offer is an SDP offer; the error is a 400 with
// the parser's reason.
func parseOffer(offer string) (*sdp.SessionDescription, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil, badRequest("webrtc: malformed SDP offer: %v", err)
	}
	if len(sd.MediaDescriptions) == 0 {
		return nil, badRequest("webrtc: the SDP offer has no m= section")
	}
	return &sd, nil
}

// offeredCodecs returns the codecs (upper-case encoding names) an offer's
// m-sections of kind ("audio", "video") list.
func offeredCodecs(sd *sdp.SessionDescription, kind string) map[string]bool {
	out := map[string]bool{}
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media != kind {
			continue
		}
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			_, enc, _ := strings.Cut(a.Value, " ")
			name, _, _ := strings.Cut(enc, "/")
			out[strings.ToUpper(name)] = true
		}
	}
	return out
}

// sdpLines returns the values of a=<attr>: lines of an SDP, in order.
func sdpLines(s, attr string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSuffix(l, "\r"), "a="+attr+":"); ok {
			out = append(out, v)
		}
	}
	return out
}

func ufragOf(s string) string {
	if v := sdpLines(s, "ice-ufrag"); len(v) > 0 {
		return v[0]
	}
	return ""
}

func pwdOf(s string) string {
	if v := sdpLines(s, "ice-pwd"); len(v) > 0 {
		return v[0]
	}
	return ""
}

func firstMid(s string) string {
	if v := sdpLines(s, "mid"); len(v) > 0 {
		return v[0]
	}
	return "0"
}

// candidatesOf returns the candidate attributes of the first m-section
// (bundled: they serve every section).
func candidatesOf(s string) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range sdpLines(s, "candidate") {
		if !seen[c] {
			seen[c] = true
			out = append(out, "candidate:"+c)
		}
	}
	return out
}

// replaceICE returns an SDP with every ice-ufrag and ice-pwd replaced and
// its candidates removed (they belonged to the old ICE session).
func replaceICE(s, ufrag, pwd string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for _, l := range lines {
		t := strings.TrimSuffix(l, "\r")
		switch {
		case strings.HasPrefix(t, "a=ice-ufrag:"):
			l = "a=ice-ufrag:" + ufrag + "\r"
		case strings.HasPrefix(t, "a=ice-pwd:"):
			l = "a=ice-pwd:" + pwd + "\r"
		case strings.HasPrefix(t, "a=candidate:"), t == "a=end-of-candidates":
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// rttMs returns the round-trip time of the session's ICE candidate pair in
// use, from its STUN checks, in milliseconds (0 before there is one). It
// never blocks: it returns the last figure and, when that is older than
// rttMaxAge, has a goroutine of its own fetch a new one (a scrape of many
// sessions must not wait on their ICE agents).
func (ss *session) rttMs() float64 {
	if time.Since(time.Unix(0, ss.rttAt.Load())) > rttMaxAge && ss.rttBusy.CompareAndSwap(false, true) {
		go func() {
			defer ss.rttBusy.Store(false)
			defer guard.Recover(ss.log, "webrtc stats")
			var ms float64
			// From the ICE agent (its own loop), not PeerConnection.GetStats:
			// that races with the Close pion runs by itself when DTLS ends
			// (pc.statsGetter), which no lock of ours can order.
			ss.mu.Lock()
			closed := ss.closed
			ss.mu.Unlock()
			if !closed {
				if dt := ss.pc.SCTP().Transport(); dt != nil {
					if it := dt.ICETransport(); it != nil {
						if cp, ok := it.GetSelectedCandidatePairStats(); ok && cp.CurrentRoundTripTime > 0 {
							ms = cp.CurrentRoundTripTime * 1000
						}
					}
				}
			}
			ss.rtt.Store(int64(math.Float64bits(ms)))
			ss.rttAt.Store(time.Now().UnixNano())
		}()
	}
	return math.Float64frombits(uint64(ss.rtt.Load()))
}

// rttMaxAge is how old a session's round-trip figure may get.
const rttMaxAge = 2 * time.Second

// certRenewal is how long the DTLS certificate sessions share is used
// before a new one is made (pion's certificates are valid for a month).
const certRenewal = 24 * time.Hour

// certificate returns the DTLS certificate of new sessions. One serves
// them all: pion made one per PeerConnection (a P-256 key and a signature,
// about a fifth of a session's set-up CPU); the handshake's keys are ephemeral
// (ECDHE) either way, and the certificate only binds the fingerprint in
// the SDP answer to the handshake.
func (s *Server) certificate() (pwebrtc.Certificate, error) {
	s.certMu.Lock()
	defer s.certMu.Unlock()
	if s.cert == nil || time.Since(s.certAt) > certRenewal {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return pwebrtc.Certificate{}, fmt.Errorf("webrtc: DTLS key: %w", err)
		}
		c, err := pwebrtc.GenerateCertificate(key)
		if err != nil {
			return pwebrtc.Certificate{}, fmt.Errorf("webrtc: DTLS certificate: %w", err)
		}
		s.cert, s.certAt = c, time.Now()
	}
	return *s.cert, nil
}
