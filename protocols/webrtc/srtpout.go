package webrtc

import (
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	pwebrtc "github.com/pion/webrtc/v4"
)

// A viewer on a UDP pair encrypts its RTP itself and hands the packets to
// its cork (gso_linux.go). Through pion, each packet took a second trip
// of about as much CPU as the encryption: the SRTP session's lock and
// stream lookup, the mux endpoint, the ICE connection's bookkeeping (two
// clock readings), the UDP mux's address table and then the cork's own
// lookup of the peer, some 2 µs a packet, a quarter of the server's CPU
// at 200 viewers. The keys are the DTLS connection's, exported as pion
// does it (RFC 5764, srtp.Config.ExtractSessionKeysFromDTLS); pion keeps
// doing everything else: ICE and its keep-alives, DTLS, SRTCP (the
// sender reports, the viewers' NACKs and PLIs).
//
// pion does not expose the DTLS connection, so dtlsConnOf reads it from
// the DTLSTransport's field by reflection, checked by name and type (pion
// is pinned in go.mod; TestPublishPlayDelete fails if a new version moves
// it, and the viewer then sends through pion as before, said once in the
// log). Cryptex (RFC 9335, encrypted header extensions) is turned on as
// pion does with its default policy: when the offer has a=cryptex (our
// packets carry no header extension, so it changes nothing today).
//
// Once a viewer's packets were encrypted here, pion's SRTP context cannot
// take the stream over (its rollover counter would start at 0, and it
// would reuse our nonces): a viewer whose ICE pair moves from UDP to TCP
// (an ICE restart) is ended with a reason and reconnects. The other way,
// a viewer that sent through pion (a TCP pair first) stays on pion's
// path (viewer.pionUsed).

var errPairMoved = errors.New("webrtc: the ICE pair moved from UDP to TCP during the session; the player must reconnect")

// srtpSender is a viewer's own SRTP encryption (every track: the
// context keeps each SSRC's rollover counter).
type srtpSender struct {
	mu  sync.Mutex // mu guards the fields below (the send loops, the NACK reader)
	ctx *srtp.Context
	enc []byte     // a packet sent without the cork
	hdr rtp.Header // the packet's header, and EncryptRTP's scratch
}

// ownSRTP returns the viewer's own SRTP sender, made at the first call;
// nil where it cannot be (the viewer sends through pion).
func (v *viewer) ownSRTP() *srtpSender {
	v.srtpOnce.Do(func() {
		s, err := v.newSRTPSender()
		if err != nil {
			if ownSRTPLogged.CompareAndSwap(false, true) {
				v.ss.log.Warn("webrtc: viewers' RTP goes through pion's SRTP session (said once)", "cause", err.Error())
			}
			return
		}
		v.srtp = s
	})
	return v.srtp
}

// ownSRTPLogged says once per process why viewers send through pion.
var ownSRTPLogged atomic.Bool

// newSRTPSender makes the SRTP context of the viewer's DTLS connection.
func (v *viewer) newSRTPSender() (*srtpSender, error) {
	o := v.video
	if o == nil {
		o = v.audio
	}
	if o == nil || o.sender.Transport() == nil {
		return nil, errors.New("no transport")
	}
	conn := dtlsConnOf(o.sender.Transport())
	if conn == nil {
		return nil, errors.New("pion's DTLSTransport has no conn field of type *dtls.Conn (a new pion version?)")
	}
	state, ok := conn.ConnectionState()
	if !ok {
		return nil, errors.New("DTLS is not connected")
	}
	dp, ok := conn.SelectedSRTPProtectionProfile()
	if !ok {
		return nil, errors.New("DTLS negotiated no SRTP protection profile")
	}
	profile, err := srtpProfileOf(dp)
	if err != nil {
		return nil, err
	}
	ld := v.ss.pc.LocalDescription()
	if ld == nil {
		return nil, errors.New("no local description")
	}
	// Our answer's setup attribute: active is the DTLS client.
	client := strings.Contains(ld.SDP, "a=setup:active")
	cfg := srtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, client); err != nil {
		return nil, err
	}
	var opts []srtp.ContextOption
	if rd := v.ss.pc.RemoteDescription(); rd != nil && strings.Contains(rd.SDP, "a=cryptex") {
		opts = append(opts, srtp.Cryptex(srtp.CryptexModeEnabled))
	}
	ctx, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, profile, opts...)
	if err != nil {
		return nil, err
	}
	return &srtpSender{ctx: ctx, enc: make([]byte, 0, 1500)}, nil
}

// srtpProfileOf maps DTLS's name of the negotiated profile to SRTP's.
func srtpProfileOf(p dtls.SRTPProtectionProfile) (srtp.ProtectionProfile, error) {
	switch p {
	case dtls.SRTP_AEAD_AES_128_GCM:
		return srtp.ProtectionProfileAeadAes128Gcm, nil
	case dtls.SRTP_AEAD_AES_256_GCM:
		return srtp.ProtectionProfileAeadAes256Gcm, nil
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		return srtp.ProtectionProfileAes128CmHmacSha1_80, nil
	}
	return 0, errors.New("an SRTP protection profile this server does not encrypt itself")
}

// dtlsConnOf returns the DTLS connection of t, nil if pion's
// DTLSTransport has no such field (see above). It is set before the
// transport says connected and never changed after.
func dtlsConnOf(t *pwebrtc.DTLSTransport) *dtls.Conn {
	f := reflect.ValueOf(t).Elem().FieldByName("conn")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*dtls.Conn]() {
		return nil
	}
	return *(**dtls.Conn)(unsafe.Pointer(f.UnsafeAddr()))
}

// srtpRoom is what encryption adds to a packet at most: the
// authentication tag (16 bytes with AES-GCM, 10 with HMAC-SHA1-80) and a
// rollover counter (4), rounded up.
const srtpRoom = 32

// write encrypts one packet and sends it to the viewer at a: sealed in
// place at the end of the viewer's cork while it gathers (one copy of
// the payload, no header on the heap), else from the sender's own buffer
// at once.
func (s *srtpSender) write(v *viewer, a netip.AddrPort, b *trackBinding, marker bool, seq uint16, ts uint32, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hdr = rtp.Header{Version: 2, Marker: marker, PayloadType: b.pt, SequenceNumber: seq, Timestamp: ts, SSRC: b.ssrc}
	size := s.hdr.MarshalSize() + len(payload)
	k := v.cork.Load()
	if buf, ok := k.tail(size + srtpRoom); ok {
		n := 0
		defer func() { k.commit(n) }() // unlocked even if sealing panics
		var err error
		n, err = s.seal(buf, payload)
		return err
	}
	if cap(s.enc) < size+srtpRoom {
		s.enc = make([]byte, 0, size+srtpRoom)
	}
	n, err := s.seal(s.enc[:cap(s.enc)], payload)
	if err != nil {
		return err
	}
	if _, err := v.ss.srv.udp.UDPConn.WriteToUDPAddrPort(s.enc[:n], a); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return errPeerClosed
		}
		// A route that flaps (EHOSTUNREACH, EPERM): the datagram is lost,
		// the viewer NACKs it, as on pion's path.
		v.ss.srv.udp.failed(err, 1)
	}
	return nil
}

// seal writes s.hdr and payload into buf and encrypts them there; it
// returns the packet's length (0 when it failed: nothing to send).
func (s *srtpSender) seal(buf, payload []byte) (int, error) {
	h, err := s.hdr.MarshalTo(buf)
	if err != nil {
		return 0, err
	}
	plain := buf[:h+copy(buf[h:], payload)]
	enc, err := s.ctx.EncryptRTP(plain[:0:len(buf)], plain, &s.hdr)
	if err != nil {
		return 0, err
	}
	if len(enc) > 0 && &enc[0] != &buf[0] {
		return 0, errors.New("webrtc: SRTP needed more room than srtpRoom") // a profile added more
	}
	return len(enc), nil
}
