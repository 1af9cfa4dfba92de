package webrtc

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	pwebrtc "github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// testEnv is a hub, a WebRTC server on loopback and an HTTP server in front.
type testEnv struct {
	hub  *server.Hub
	srv  *Server
	http *httptest.Server
	logs *testfixtures.SyncBuffer
}

func newEnv(t *testing.T, pc server.PathConfig, tweak func(*Config)) *testEnv {
	t.Helper()
	logs := &testfixtures.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	hub := server.NewHub(server.HubConfig{PathConfig: func(string) server.PathConfig { return pc }, Logger: log})
	c := Config{UDPAddress: "127.0.0.1:0", TCPAddress: "127.0.0.1:0", Loopback: true, HandshakeTimeout: 5 * time.Second}
	if tweak != nil {
		tweak(&c)
	}
	s := New(c, hub, log)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.Close()
		s.Close()
		hub.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return &testEnv{hub: hub, srv: s, http: hs, logs: logs}
}

func testPathConf() server.PathConfig {
	pc := server.DefaultPathConfig()
	pc.GracePeriod = 0
	return pc
}

// clientAPI is a pion API for test clients: loopback, UDP, no mDNS.
func clientAPI(t testing.TB) *pwebrtc.API {
	t.Helper()
	m := &pwebrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	se := pwebrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]pwebrtc.NetworkType{pwebrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	return pwebrtc.NewAPI(pwebrtc.WithMediaEngine(m), pwebrtc.WithSettingEngine(se))
}

// offerOf makes pc's offer with its candidates gathered; without
// candidates, as OBS sends it, when bare.
func offerOf(t testing.TB, pc *pwebrtc.PeerConnection, bare bool) string {
	t.Helper()
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	g := pwebrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	<-g
	sdp := pc.LocalDescription().SDP
	if bare {
		sdp = replaceICE(sdp, ufragOf(sdp), pwdOf(sdp)) // drops the candidates
	}
	return sdp
}

// do sends a request and returns the response with its body read.
func do(t testing.TB, method, url, ctype, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

// publisher is a pion WHIP client sending synthetic H264 (real SPS/PPS,
// made-up slices) and Opus.
type publisher struct {
	pc       *pwebrtc.PeerConnection
	video    *pwebrtc.TrackLocalStaticSample
	audio    *pwebrtc.TrackLocalStaticSample
	location string
	etag     string
	plis     atomic.Int32
	keyNow   atomic.Bool // send an IDR next (a PLI came)
	stop     chan struct{}
	wg       sync.WaitGroup
}

func newPublisher(t *testing.T, withAudio bool) *publisher {
	t.Helper()
	pc, err := clientAPI(t).NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &publisher{pc: pc, stop: make(chan struct{})}
	p.video, _ = pwebrtc.NewTrackLocalStaticSample(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, "video", "pub")
	tr, err := pc.AddTransceiverFromTrack(p.video, pwebrtc.RTPTransceiverInit{Direction: pwebrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			pkts, _, err := tr.Sender().ReadRTCP()
			if err != nil {
				return
			}
			for _, pk := range pkts {
				if _, ok := pk.(*rtcp.PictureLossIndication); ok {
					p.plis.Add(1)
					p.keyNow.Store(true)
				}
			}
		}
	}()
	if withAudio {
		p.audio, _ = pwebrtc.NewTrackLocalStaticSample(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
		if _, err := pc.AddTransceiverFromTrack(p.audio, pwebrtc.RTPTransceiverInit{Direction: pwebrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { p.close() })
	return p
}

// start sends 25 fps video (an IDR only at the start and when asked by
// PLI, as browsers do) and 50 packets/s of audio.
func (p *publisher) start() {
	p.keyNow.Store(true)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			if p.audio != nil {
				p.audio.WriteSample(pmedia.Sample{Data: []byte{0xfc, 0xff, 0xfe}, Duration: 20 * time.Millisecond}) //nolint:errcheck
			}
			if n%2 == 0 {
				p.video.WriteSample(pmedia.Sample{Data: p.frame(), Duration: 40 * time.Millisecond}) //nolint:errcheck
			}
		}
	}()
}

func (p *publisher) frame() []byte {
	sc := []byte{0, 0, 0, 1}
	var b bytes.Buffer
	if p.keyNow.Swap(false) {
		b.Write(sc)
		b.Write(testfixtures.H264SPS)
		b.Write(sc)
		b.Write(testfixtures.H264PPS)
		b.Write(sc)
		b.Write(append([]byte{0x65, 0x88}, bytes.Repeat([]byte{0x42}, 3000)...)) // an IDR slice in 3 packets
	} else {
		b.Write(sc)
		b.Write(append([]byte{0x41, 0x9a}, bytes.Repeat([]byte{0x17}, 400)...))
	}
	return b.Bytes()
}

// connect POSTs the offer to url and applies the answer.
func (p *publisher) connect(t *testing.T, url string, bare bool, hdr ...string) {
	t.Helper()
	res, body := do(t, http.MethodPost, url, "application/sdp", offerOf(t, p.pc, bare), hdr...)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %s: %s", url, res.Status, body)
	}
	p.location, p.etag = res.Header.Get("Location"), res.Header.Get("ETag")
	if err := p.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: body}); err != nil {
		t.Fatal(err)
	}
}

func (p *publisher) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.pc.Close()
	p.wg.Wait()
}

// player is a pion WHEP client that decodes the H264 it gets.
type player struct {
	pc        *pwebrtc.PeerConnection
	location  string
	posted    time.Time
	mu        sync.Mutex
	aus       int           // access units decoded
	firstKey  bool          // the first AU decoded was an IDR with SPS
	firstAt   time.Duration // first AU after the POST
	audioPkts int
	got       chan struct{} // closed at the first AU
	gotOnce   sync.Once
	sendPLI   func()
	// last is the RTP time of the newest packet per SSRC; reports the
	// sender reports per SSRC, each with the newest packet's RTP time
	// when it came.
	last    map[uint32]uint32
	reports map[uint32][]seenReport
}

// seenReport is a sender report and the RTP time of the newest packet of
// its stream when it came.
type seenReport struct {
	sr     rtcp.SenderReport
	lastTS uint32
	clock  uint32
}

func newPlayer(t *testing.T) *player {
	t.Helper()
	pc, err := clientAPI(t).NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	pl := &player{pc: pc, got: make(chan struct{}), last: map[uint32]uint32{}, reports: map[uint32][]seenReport{}}
	for _, k := range []pwebrtc.RTPCodecType{pwebrtc.RTPCodecTypeVideo, pwebrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, pwebrtc.RTPTransceiverInit{Direction: pwebrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *pwebrtc.TrackRemote, rcv *pwebrtc.RTPReceiver) {
		clock := tr.Codec().ClockRate
		go func() {
			for {
				pkts, _, err := rcv.ReadRTCP()
				if err != nil {
					return
				}
				pl.mu.Lock()
				for _, p := range pkts {
					if sr, ok := p.(*rtcp.SenderReport); ok {
						pl.reports[sr.SSRC] = append(pl.reports[sr.SSRC], seenReport{*sr, pl.last[sr.SSRC], clock})
					}
				}
				pl.mu.Unlock()
			}
		}()
		if tr.Kind() == pwebrtc.RTPCodecTypeAudio {
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				pl.mu.Lock()
				pl.audioPkts++
				pl.last[pkt.SSRC] = pkt.Timestamp
				pl.mu.Unlock()
			}
		}
		pl.mu.Lock()
		pl.sendPLI = func() {
			pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}}) //nolint:errcheck
		}
		pl.mu.Unlock()
		d := &rtph264.Decoder{}
		d.Init() //nolint:errcheck
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			pl.mu.Lock()
			pl.last[pkt.SSRC] = pkt.Timestamp
			pl.mu.Unlock()
			au, err := d.Decode(pkt)
			if err != nil {
				continue
			}
			pl.mu.Lock()
			if pl.aus == 0 {
				pl.firstAt = time.Since(pl.posted)
				pl.firstKey = len(au) >= 3 && au[0][0]&0x1f == 7 && au[len(au)-1][0]&0x1f == 5
			}
			pl.aus++
			pl.mu.Unlock()
			pl.gotOnce.Do(func() { close(pl.got) })
		}
	})
	t.Cleanup(func() { pc.Close() })
	return pl
}

func (pl *player) connect(t *testing.T, url string) {
	t.Helper()
	offer := offerOf(t, pl.pc, false)
	pl.posted = time.Now()
	res, body := do(t, http.MethodPost, url, "application/sdp", offer)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %s: %s", url, res.Status, body)
	}
	pl.location = res.Header.Get("Location")
	if err := pl.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: body}); err != nil {
		t.Fatal(err)
	}
}

// senderReports returns the sender reports seen per SSRC.
func (pl *player) senderReports() map[uint32][]seenReport {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	out := map[uint32][]seenReport{}
	for k, v := range pl.reports {
		out[k] = append([]seenReport(nil), v...)
	}
	return out
}

func (pl *player) stats() (aus, audio int, firstKey bool, firstAt time.Duration) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.aus, pl.audioPkts, pl.firstKey, pl.firstAt
}

// eventually polls cond every 20 ms until it holds or ctx ends (the test's
// deadline): a condition, not a timing assertion.
func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s", what, within)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// publishPictures publishes at path, until the test ends, 30 pictures a
// second (a keyframe a second; the others of size bytes beside their
// header) and, with aac, an AAC frame beside each picture.
func publishPictures(t *testing.T, env *testEnv, path string, aac bool, size int) {
	t.Helper()
	video := &media.Track{Codec: media.CodecH264, SPS: testfixtures.H264SPS, PPS: testfixtures.H264PPS}
	tracks := []*media.Track{video}
	if aac {
		tracks = append(tracks, &media.Track{Codec: media.CodecAAC, SampleRate: 48000, Channels: 2, AudioConfig: []byte{0x11, 0x90}})
	}
	src, err := env.hub.PublishTrusted(path, tracks, server.PublishOptions{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		<-done
		src.Close()
	})
	go func() {
		defer close(done)
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			at := time.Duration(i) * 33 * time.Millisecond
			key := i%30 == 0
			nalu := append([]byte{0x41, 0x9a, byte(i)}, make([]byte, size)...)
			if key {
				nalu = append([]byte{0x65, 0x88}, make([]byte, 3000)...)
			}
			src.Write(&media.Unit{Track: video, PTS: at, DTS: at, KeyFrame: key, Payload: [][]byte{nalu}})
			if aac {
				src.Write(&media.Unit{Track: tracks[1], PTS: at, DTS: at, KeyFrame: true, Payload: [][]byte{{0x21, 0x10, 0x04}}})
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
}
