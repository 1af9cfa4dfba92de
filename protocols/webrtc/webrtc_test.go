package webrtc

import (
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/streamhub/streamhub/media"
)

// A WHIP publisher that never trickles (OBS) is reached through
// peer-reflexive candidates, is asked for a keyframe, and publishes H264
// and Opus; a WHEP player gets a keyframe with its parameter sets first,
// then live units; DELETE ends both and frees them.
func TestPublishPlayDelete(t *testing.T) {
	env := newEnv(t, testPathConf(), nil)
	pub := newPublisher(t, true)
	pub.connect(t, env.http.URL+"/live/cam/whip", true)
	if !strings.HasPrefix(pub.location, "/live/cam/whip/") || pub.etag == "" {
		t.Fatalf("Location %q, ETag %q", pub.location, pub.etag)
	}
	pub.start()
	eventually(t, "published", 10*time.Second, func() bool {
		s := env.hub.Stream("live/cam")
		return s != nil && s.Stats().UnitsIn > 20
	})
	tracks := env.hub.Stream("live/cam").Tracks()
	if len(tracks) != 2 || tracks[0].Codec != media.CodecH264 || tracks[1].Codec != media.CodecOpus || tracks[0].Width == 0 {
		t.Fatalf("tracks %s %s", tracks[0].Codec, tracks[len(tracks)-1].Codec)
	}
	if pub.plis.Load() == 0 {
		t.Fatal("the publisher was never asked for a keyframe")
	}

	pl := newPlayer(t)
	pl.connect(t, env.http.URL+"/live/cam/whep")
	eventually(t, "player gets video and audio", 10*time.Second, func() bool {
		aus, audio, _, _ := pl.stats()
		return aus > 10 && audio > 10
	})
	_, _, firstKey, firstAt := pl.stats()
	if !firstKey {
		t.Fatal("the player's first access unit is not an IDR with SPS/PPS")
	}
	t.Logf("first access unit %s after the WHEP POST", firstAt.Round(time.Millisecond))

	// The viewer encrypts its RTP itself (srtpout.go): pion's DTLS
	// connection was found, and the player decodes what it sent.
	if !ownSRTPUsed(env.srv) {
		t.Fatal("the viewer sent its RTP through pion: its own SRTP was not set up (see the log)\n" + env.logs.String())
	}

	// Sender reports (ours, not pion's interceptor) come for both tracks,
	// about once a second, with an RTP time near the packets' own and NTP
	// times that advance.
	eventually(t, "two sender reports per track", 10*time.Second, func() bool {
		srs := pl.senderReports()
		if len(srs) < 2 {
			return false
		}
		for _, r := range srs {
			if len(r) < 2 {
				return false
			}
		}
		return true
	})
	for ssrc, rs := range pl.senderReports() {
		for i, r := range rs {
			clock := int32(r.clock)
			if d := int32(r.sr.RTPTime - r.lastTS); d < -clock/2 || d > clock/2 {
				t.Fatalf("SSRC %d: a sender report's RTP time %d is %d ticks from the newest packet's %d", ssrc, r.sr.RTPTime, d, r.lastTS)
			}
			if i > 0 && r.sr.NTPTime <= rs[i-1].sr.NTPTime {
				t.Fatalf("SSRC %d: sender reports' NTP times do not advance", ssrc)
			}
			if r.sr.PacketCount == 0 || r.sr.OctetCount == 0 {
				t.Fatalf("SSRC %d: a sender report counts no packets: %+v", ssrc, r.sr)
			}
		}
	}

	for _, loc := range []string{pl.location, pub.location} {
		if res, body := do(t, http.MethodDelete, env.http.URL+loc, "", ""); res.StatusCode != http.StatusOK {
			t.Fatalf("DELETE %s: %s %s", loc, res.Status, body)
		}
	}
	eventually(t, "sessions freed", 10*time.Second, func() bool { return env.srv.Sessions() == 0 })
	if env.hub.Stream("live/cam") != nil {
		t.Fatal("the stream outlived its WHIP publisher")
	}
	if !strings.Contains(env.logs.String(), "ended by the client (DELETE)") {
		t.Fatalf("no close line with the DELETE cause:\n%s", env.logs.String())
	}
}

// A unit retimed for a catch-up join (Orig) is sent with its original's
// RTP payloads: the cached GOP is packetized once, not once per joiner.
func TestRetimedUnitSharesPayloads(t *testing.T) {
	tr := &media.Track{Codec: media.CodecH264}
	orig := &media.Unit{Track: tr, PTS: time.Second, DTS: time.Second, KeyFrame: true,
		Payload: [][]byte{{0x65, 1, 2, 3}, make([]byte, 3*maxPayload)}}
	retimed := &media.Unit{Track: tr, PTS: 500 * time.Millisecond, DTS: 500 * time.Millisecond, KeyFrame: true,
		Payload: orig.Payload, Orig: orig}
	a, b := rtpPayloads(orig, media.CodecH264), rtpPayloads(retimed, media.CodecH264)
	if len(a) == 0 || len(b) != len(a) || &a[0] != &b[0] {
		t.Fatalf("the retimed unit's payloads (%d bytes) are not its original's (%d bytes)", len(b), len(a))
	}
	other := &media.Unit{Track: tr, PTS: time.Second, DTS: time.Second, KeyFrame: true, Payload: orig.Payload}
	if c := rtpPayloads(other, media.CodecH264); &c[0] == &a[0] {
		t.Fatal("a unit that is not a retimed copy shares another unit's payloads")
	}
}

// ownSRTPUsed reports whether a WHEP session of srv sent RTP encrypted by
// itself.
func ownSRTPUsed(srv *Server) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, ss := range srv.sessions {
		if ss.viewer != nil && ss.viewer.ownUsed.Load() {
			return true
		}
	}
	return false
}

// Sessions share one DTLS certificate, renewed after certRenewal.
func TestSharedCertificate(t *testing.T) {
	srv := New(Config{}, nil, slog.New(slog.DiscardHandler))
	a, err := srv.certificate()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := srv.certificate()
	fa, _ := a.GetFingerprints()
	fb, _ := b.GetFingerprints()
	if len(fa) == 0 || fa[0] != fb[0] {
		t.Fatalf("two sessions got different certificates: %v %v", fa, fb)
	}
	if time.Until(a.Expires()) < 7*24*time.Hour {
		t.Fatalf("the certificate expires at %s", a.Expires())
	}
	srv.certAt = srv.certAt.Add(-certRenewal - time.Minute)
	c, _ := srv.certificate()
	if fc, _ := c.GetFingerprints(); fc[0] == fa[0] {
		t.Fatal("the certificate was not renewed after certRenewal")
	}
}

// fakeTrackWriter stands for pion's write stream of a bound track.
type fakeTrackWriter struct{ n int }

func (f *fakeTrackWriter) WriteRTP(_ *rtp.Header, p []byte) (int, error) { f.n++; return len(p), nil }
func (f *fakeTrackWriter) Write(b []byte) (int, error)                   { f.n++; return len(b), nil }

// A viewer's SRTP context never changes hands mid-stream: one that sent
// through pion (a TCP pair first) stays on pion's path when its pair
// moves to UDP (a context of ours would restart the rollover counter),
// and one that sent on its own ends with a reason when its pair moves to
// TCP.
func TestViewerKeepsItsSRTPContext(t *testing.T) {
	v := &viewer{}
	tr := &directTrack{}
	fw := &fakeTrackWriter{}
	tr.bound.Store(&trackBinding{ssrc: 1, pt: 96, ws: fw})
	o := &outTrack{v: v, track: tr}
	if err := o.send(false, 1, 0, []byte{1}); err != nil {
		t.Fatal(err)
	}
	udp := netip.MustParseAddrPort("127.0.0.1:9")
	v.udpPeer.Store(&udp)
	if err := o.send(false, 2, 0, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if fw.n != 2 || v.ownUsed.Load() {
		t.Fatalf("after a packet through pion, %d of 2 went through pion (own SRTP used: %v)", fw.n, v.ownUsed.Load())
	}

	v2 := &viewer{}
	v2.ownUsed.Store(true) // it sent on its own; now the pair is TCP (udpPeer nil)
	o2 := &outTrack{v: v2, track: tr}
	if err := o2.send(false, 3, 0, []byte{1}); !errors.Is(err, errPairMoved) {
		t.Fatalf("got %v, want errPairMoved", err)
	}
}

// A track's sender report maps now to its RTP clock from the newest
// packet's time, and is not sent again while nothing was sent since the
// last one (RFC 3550, 6.4).
func TestSenderReport(t *testing.T) {
	tr := &directTrack{}
	tr.bound.Store(&trackBinding{ssrc: 7, pt: 96, ws: &fakeTrackWriter{}})
	o := &outTrack{v: &viewer{}, track: tr, clock: 90000, tsBase: 1000}
	now := time.Now()
	if _, ok := o.senderReport(now); ok {
		t.Fatal("a report before any packet")
	}
	if err := o.write(false, []byte{1, 2, 3}, 9000); err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	sentAt := o.lastAt
	o.mu.Unlock()
	at := sentAt.Add(500 * time.Millisecond)
	sr, ok := o.senderReport(at)
	if !ok || sr.SSRC != 7 || sr.PacketCount != 1 || sr.OctetCount != 3 || sr.RTPTime != 1000+9000+45000 {
		t.Fatalf("report %+v (ok %v), want SSRC 7, 1 packet, 3 octets, RTP time %d", sr, ok, 1000+9000+45000)
	}
	if sr.NTPTime>>32 != uint64(at.Unix()+2208988800) {
		t.Fatalf("NTP seconds %d, want %d", sr.NTPTime>>32, at.Unix()+2208988800)
	}
	if _, ok := o.senderReport(at.Add(time.Second)); ok {
		t.Fatal("a second report with nothing sent since the first")
	}
}
