package webrtc

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// The session list and the stream figures can be read while a WHIP
// publisher writes: its link figures take no lock the writer holds (the
// hub once called them under the stream's lock, while the publisher held
// its own lock around Write: a deadlock on the first scrape).
func TestScrapeBesideWHIPPublisher(t *testing.T) {
	env := newEnv(t, testPathConf(), nil)
	pub := newPublisher(t, true)
	pub.connect(t, env.http.URL+"/live/cam/whip", true)
	pub.start()
	eventually(t, "published", 10*time.Second, func() bool {
		s := env.hub.Stream("live/cam")
		return s != nil && s.Stats().UnitsIn > 20
	})
	var scrapes atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	for range 4 {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				env.hub.Sessions()
				if s := env.hub.Stream("live/cam"); s != nil {
					s.Stats()
				}
				scrapes.Add(1)
			}
		}()
	}
	for i := 0; i < 20; i++ {
		before := scrapes.Load()
		time.Sleep(100 * time.Millisecond)
		if scrapes.Load() == before {
			t.Fatalf("no scrape completed in 100 ms after %d: the scrapes and the publisher are deadlocked", before)
		}
	}
	var found bool
	for _, s := range env.hub.Sessions() {
		found = found || (s.Protocol == "webrtc" && s.Kind == "publisher" && s.Link != nil)
	}
	if !found {
		t.Fatal("no WHIP publisher with link figures in the session list")
	}
}

// A viewer's NACKs cannot make the server send more than a share of the
// stream again: a NACK of every sequence number, and the same pair over
// and over, resend at most the banked allowance.
func TestNACKResendsBounded(t *testing.T) {
	env := newEnv(t, testPathConf(), nil)
	v := &media.Track{ID: 0, Codec: media.CodecH264}
	pub, err := env.hub.PublishTrusted("live/n", []*media.Track{v}, server.PublishOptions{Protocol: "test", Remote: "local"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sps := []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8}
	pps := []byte{0x68, 0xce, 0x3c, 0x80}
	stopPub := make(chan struct{})
	defer close(stopPub)
	go func() {
		for n := 0; ; n++ {
			select {
			case <-stopPub:
				return
			case <-time.After(40 * time.Millisecond):
			}
			d := time.Duration(n) * 40 * time.Millisecond
			if n%50 == 0 {
				pub.Write(&media.Unit{Track: v, KeyFrame: true, PTS: d, DTS: d, Payload: [][]byte{sps, pps, append([]byte{0x65, 0x88}, make([]byte, 20000)...)}})
			} else {
				pub.Write(&media.Unit{Track: v, PTS: d, DTS: d, Payload: [][]byte{append([]byte{0x41, 0x9a}, make([]byte, 12000)...)}})
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	pl := newPlayer(t)
	pl.connect(t, env.http.URL+"/live/n/whep")
	eventually(t, "playing", 10*time.Second, func() bool { aus, _, _, _ := pl.stats(); return aus > 20 })
	var ssrc uint32
	for _, r := range pl.pc.GetReceivers() {
		if tr := r.Track(); tr != nil && tr.Kind().String() == "video" {
			ssrc = uint32(tr.SSRC())
		}
	}
	figures := func() (sent, resent uint64) {
		for _, s := range env.hub.Sessions() {
			if s.Protocol == "webrtc" && s.Kind == "reader" && s.Link != nil {
				return s.Bytes, s.Link.Retransmitted
			}
		}
		return 0, 0
	}
	// Every sequence number, 250 pairs per NACK; then one pair 250 times.
	var pairs []rtcp.NackPair
	for base := 0; base < 65536; base += 17 {
		pairs = append(pairs, rtcp.NackPair{PacketID: uint16(base), LostPackets: 0xffff})
	}
	for i := 0; i < len(pairs); i += 250 {
		pl.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: pairs[i:min(i+250, len(pairs))]}}) //nolint:errcheck
	}
	dup := make([]rtcp.NackPair, 250)
	for k := range dup {
		dup[k] = pairs[len(pairs)/2]
	}
	for range 20 {
		pl.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: dup}}) //nolint:errcheck
	}
	time.Sleep(500 * time.Millisecond)
	_, resent := figures()
	// Sent by now: about 3 s of 25 pictures of ~10 packets, so the
	// allowance is resendBurst (256) at most, plus what was earned meanwhile.
	if resent == 0 || resent > resendBurst+200 {
		t.Fatalf("%d packets resent after a NACK of everything; want some, and at most about %d", resent, resendBurst+200)
	}
	t.Logf("%d packets resent", resent)
}
