package rtsp

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/pion/rtp"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// frame is one access unit of the test fixture, in decode order.
type frame struct {
	video    bool
	pts, dts int64 // 90 kHz
	au       [][]byte
}

// fixture is internal/testfixtures/bframes.ts (ffmpeg: 160x120 H264 main profile with
// B-frames, GOP 25 at 25 fps, AAC 48 kHz; 2 s), demuxed once.
type fixture struct {
	sps, pps []byte
	aac      *mpeg4audio.AudioSpecificConfig
	frames   []frame
	span     int64 // 90 kHz duration, for looping
}

var (
	fixOnce sync.Once
	fix     fixture
	fixErr  error
)

func loadFixture(t testing.TB) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		f, err := os.Open("../../internal/testfixtures/bframes.ts")
		if err != nil {
			fixErr = err
			return
		}
		defer f.Close()
		r := &mpegts.Reader{R: f}
		if fixErr = r.Initialize(); fixErr != nil {
			return
		}
		for _, tr := range r.Tracks() {
			switch c := tr.Codec.(type) {
			case *tscodecs.H264:
				r.OnDataH264(tr, func(pts, dts int64, au [][]byte) error {
					for _, n := range au {
						switch h264.NALUType(n[0] & 0x1f) {
						case h264.NALUTypeSPS:
							fix.sps = n
						case h264.NALUTypePPS:
							fix.pps = n
						}
					}
					fix.frames = append(fix.frames, frame{video: true, pts: pts, dts: dts, au: au})
					return nil
				})
			case *tscodecs.MPEG4Audio:
				conf := c.Config
				fix.aac = &conf
				r.OnDataMPEG4Audio(tr, func(pts int64, aus [][]byte) error {
					for i, au := range aus {
						// Each frame at its own time, as a live encoder sends it.
						at := pts + int64(i)*1024*90000/48000
						fix.frames = append(fix.frames, frame{pts: at, dts: at, au: [][]byte{au}})
					}
					return nil
				})
			}
		}
		for {
			if err := r.Read(); err != nil {
				break
			}
		}
		if len(fix.frames) == 0 || fix.sps == nil {
			fixErr = errors.New("fixture has no H264")
			return
		}
		// In sending order (the TS interleaves audio in chunks).
		slices.SortStableFunc(fix.frames, func(a, b frame) int { return cmp.Compare(a.dts, b.dts) })
		first, last := fix.frames[0].dts, fix.frames[0].dts
		for _, fr := range fix.frames {
			first, last = min(first, fr.dts), max(last, fr.dts)
		}
		fix.span = last - first + 3600 // one 25 fps frame
		for i := range fix.frames {
			fix.frames[i].pts -= first
			fix.frames[i].dts -= first
		}
	})
	if fixErr != nil {
		t.Fatalf("fixture: %v", fixErr)
	}
	return &fix
}

// env is a hub with an RTSP server on free ports.
type env struct {
	hub  *server.Hub
	srv  *Server
	addr string
	logs *testfixtures.SyncBuffer
}

func freeUDPPair(t testing.TB) (int, int) {
	t.Helper()
	for range 100 {
		a, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := a.LocalAddr().(*net.UDPAddr).Port
		a.Close()
		if p%2 != 0 || p > 65000 {
			continue
		}
		a, errA := net.ListenPacket("udp", fmt.Sprintf(":%d", p))
		b, errB := net.ListenPacket("udp", fmt.Sprintf(":%d", p+1))
		if a != nil {
			a.Close()
		}
		if b != nil {
			b.Close()
		}
		if errA == nil && errB == nil {
			return p, p + 1
		}
	}
	t.Fatal("no free UDP port pair")
	return 0, 0
}

func newEnv(t *testing.T, paths func(string) server.PathConfig) *env {
	t.Helper()
	return newEnvWith(t, server.HubConfig{PathConfig: paths}, nil)
}

// newEnvWith is newEnv with the hub's config (its Logger is set here) and
// a change to the server's config.
func newEnvWith(t testing.TB, hc server.HubConfig, change func(*Config)) *env {
	t.Helper()
	logs := &testfixtures.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hc.Logger = log
	hub := server.NewHub(hc)
	rtpPort, rtcpPort := freeUDPPair(t)
	conf := Config{
		Address: "127.0.0.1:0", Transports: []string{TransportTCP, TransportUDP},
		UDPRTPAddress: fmt.Sprintf(":%d", rtpPort), UDPRTCPAddress: fmt.Sprintf(":%d", rtcpPort),
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, WriteQueueSize: 1024,
	}
	if change != nil {
		change(&conf)
	}
	srv := New(conf, hub, log)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	e := &env{hub: hub, srv: srv, addr: srv.Addr().String(), logs: logs}
	t.Cleanup(func() {
		hub.Close()
		srv.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return e
}

func (e *env) url(path string) string { return "rtsp://" + e.addr + "/" + path }

// publisher is a gortsplib client recording the fixture in a loop.
type publisher struct {
	c      *gortsplib.Client
	cancel context.CancelFunc
	done   chan struct{}
}

// publishOpts tune startPublish.
type publishOpts struct {
	speed    float64 // 1 = real time
	keepSPS  bool    // leave SPS/PPS in-band (ffmpeg's RTSP publishers do not)
	protocol gortsplib.Protocol
}

func publishDesc(fx *fixture) *description.Session {
	return &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: fx.sps, PPS: fx.pps}}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.MPEG4Audio{
			PayloadTyp: 97, Config: fx.aac, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}}},
	}}
}

func startPublish(t testing.TB, rawURL string, o publishOpts) (*publisher, error) {
	t.Helper()
	fx := loadFixture(t)
	desc := publishDesc(fx)
	proto := o.protocol
	c := &gortsplib.Client{Protocol: &proto}
	if err := c.StartRecording(rawURL, desc); err != nil {
		return nil, err
	}
	venc, _ := desc.Medias[0].Formats[0].(*format.H264).CreateEncoder()
	aenc, _ := desc.Medias[1].Formats[0].(*format.MPEG4Audio).CreateEncoder()
	ctx, cancel := context.WithCancel(context.Background())
	p := &publisher{c: c, cancel: cancel, done: make(chan struct{})}
	speed := o.speed
	if speed == 0 {
		speed = 1
	}
	go func() {
		defer close(p.done)
		start := time.Now()
		for loop := int64(0); ; loop++ {
			for _, fr := range fx.frames {
				off := loop * fx.span
				at := time.Duration(float64(time.Duration(fr.dts+off)*time.Second/90000) / speed)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(start.Add(at))):
				}
				if fr.video {
					au := fr.au
					if !o.keepSPS {
						au = nil
						for _, n := range fr.au {
							if typ := h264.NALUType(n[0] & 0x1f); typ != h264.NALUTypeSPS && typ != h264.NALUTypePPS {
								au = append(au, n)
							}
						}
					}
					pkts, err := venc.Encode(au)
					if err != nil {
						return
					}
					for _, pkt := range pkts {
						pkt.Timestamp = uint32(fr.pts + off)
						if c.WritePacketRTP(desc.Medias[0], pkt) != nil {
							return
						}
					}
				} else {
					pkts, err := aenc.Encode(fr.au)
					if err != nil {
						return
					}
					for _, pkt := range pkts {
						pkt.Timestamp = uint32((fr.pts + off) * 48000 / 90000)
						if c.WritePacketRTP(desc.Medias[1], pkt) != nil {
							return
						}
					}
				}
			}
		}
	}()
	t.Cleanup(p.stop)
	return p, nil
}

func (p *publisher) stop() {
	p.cancel()
	<-p.done
	p.c.Close()
}

// waitPublished waits until the hub has path.
func waitPublished(t *testing.T, e *env, path string) {
	t.Helper()
	testfixtures.WaitPublished(t, e.hub, path)
}

// An RTSP publisher's media becomes hub units: parameter sets from the SDP
// in-band at every keyframe, B-frame order kept with the source's DTS, AAC
// with its config.
func TestPublishIntoHub(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if _, err := startPublish(t, e.url("live/pub"), publishOpts{speed: 4}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, e, "live/pub")
	r, err := e.hub.ReadTrusted(context.Background(), "live/pub", server.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var video, audio, keys, reordered int
	var lastDTS time.Duration = -1 << 62
	for video < 60 || audio < 40 {
		u, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("after %d video and %d audio units: %v", video, audio, err)
		}
		switch u.Track.Codec {
		case media.CodecH264:
			video++
			if u.DTS <= lastDTS {
				t.Fatalf("video DTS not increasing: %v after %v", u.DTS, lastDTS)
			}
			lastDTS = u.DTS
			if u.PTS < u.DTS {
				t.Fatalf("PTS %v before DTS %v", u.PTS, u.DTS)
			}
			if u.PTS > u.DTS+time.Millisecond {
				reordered++
			}
			if u.KeyFrame {
				keys++
				if len(u.Payload) < 3 || h264.NALUType(u.Payload[0][0]&0x1f) != h264.NALUTypeSPS ||
					h264.NALUType(u.Payload[1][0]&0x1f) != h264.NALUTypePPS {
					t.Fatalf("keyframe without SPS and PPS in-band: first NALU types %v", naluTypes(u.Payload))
				}
			}
			if u.Track.Width != 160 || u.Track.Height != 120 {
				t.Fatalf("track size %dx%d, want 160x120", u.Track.Width, u.Track.Height)
			}
		case media.CodecAAC:
			audio++
			if u.Track.SampleRate != 48000 || len(u.Track.AudioConfig) == 0 {
				t.Fatalf("AAC track %d Hz config %x", u.Track.SampleRate, u.Track.AudioConfig)
			}
		default:
			t.Fatalf("unexpected codec %s", u.Track.Codec)
		}
	}
	if keys < 2 {
		t.Errorf("%d keyframes in 60 frames of a 25-frame GOP", keys)
	}
	if reordered == 0 {
		t.Errorf("no unit with PTS > DTS: B-frame timing lost")
	}
}

func naluTypes(au [][]byte) []int {
	var out []int
	for _, n := range au {
		if len(n) > 0 {
			out = append(out, int(n[0]&0x1f))
		}
	}
	return out
}

// playFirstAU plays url and returns the NALU types of the first H264
// access unit the client can decode, and how long it took.
func playFirstAU(t *testing.T, rawURL string, proto gortsplib.Protocol) ([]int, time.Duration) {
	t.Helper()
	return playFirstAUTLS(t, rawURL, proto, nil)
}

// playFirstAUTLS is playFirstAU with the TLS configuration of an rtsps://
// URL.
func playFirstAUTLS(t *testing.T, rawURL string, proto gortsplib.Protocol, tc *tls.Config) ([]int, time.Duration) {
	t.Helper()
	c := &gortsplib.Client{Protocol: &proto, TLSConfig: tc}
	u, err := base.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	c.Scheme, c.Host = u.Scheme, u.Host
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	desc, _, err := c.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	var h264f *format.H264
	medi := desc.FindFormat(&h264f)
	if medi == nil {
		t.Fatal("no H264 in the SDP")
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		t.Fatal(err)
	}
	dec, _ := h264f.CreateDecoder()
	got := make(chan []int, 1)
	var once sync.Once
	c.OnPacketRTP(medi, h264f, func(pkt *rtp.Packet) {
		au, err := dec.Decode(pkt)
		if errors.Is(err, rtph264.ErrMorePacketsNeeded) {
			return
		}
		if err != nil {
			// A mid-GOP join shows as a fragment without its start.
			once.Do(func() { got <- []int{-1} })
			return
		}
		once.Do(func() { got <- naluTypes(au) })
	})
	if _, err := c.Play(nil); err != nil {
		t.Fatal(err)
	}
	select {
	case types := <-got:
		return types, time.Since(start)
	case <-time.After(5 * time.Second):
		t.Fatal("no access unit within 5s")
	}
	return nil, 0
}

// A new RTSP player starts at a keyframe from the GOP cache, over TCP and
// UDP, even when it joins mid-GOP.
func TestPlayStartsAtCachedKeyframe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if _, err := startPublish(t, e.url("live/gop"), publishOpts{speed: 1}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, e, "live/gop")
	for i, proto := range []gortsplib.Protocol{gortsplib.ProtocolTCP, gortsplib.ProtocolUDP, gortsplib.ProtocolTCP} {
		// Join at different points of the 1 s GOP.
		time.Sleep(time.Duration(300+i*250) * time.Millisecond)
		types, took := playFirstAU(t, e.url("live/gop"), proto)
		if len(types) < 3 || types[0] != int(h264.NALUTypeSPS) || types[1] != int(h264.NALUTypePPS) || !containsInt(types, int(h264.NALUTypeIDR)) {
			t.Errorf("%s: first access unit has NALU types %v, want SPS, PPS, ..., IDR", proto, types)
		}
		t.Logf("%s: first access unit %v after %v (DESCRIBE to first AU)", proto, types, took.Round(time.Millisecond))
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// statusOf returns the RTSP status code in a gortsplib client error.
func statusOf(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if _, err := startPublish(t, e.url("live/busy"), publishOpts{}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, e, "live/busy")

	_, err := startPublish(t, e.url("live/busy"), publishOpts{})
	if s := statusOf(err); !strings.Contains(s, "403") || !strings.Contains(s, "busy") {
		t.Errorf("second publisher: %s, want 403 saying the path is busy", s)
	}
	_, err = startPublish(t, e.url("live/bad%20name"), publishOpts{})
	if s := statusOf(err); !strings.Contains(s, "400") || !strings.Contains(s, "invalid path") {
		t.Errorf("invalid path: %s, want 400 invalid path", s)
	}
	// An SDP with nothing we carry (MJPEG).
	c := &gortsplib.Client{}
	err = c.StartRecording(e.url("live/mjpeg"), &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeVideo, Formats: []format.Format{&format.MJPEG{}}},
	}})
	if s := statusOf(err); !strings.Contains(s, "415") || !strings.Contains(s, "H264") {
		t.Errorf("MJPEG publisher: %s, want 415 naming the supported codecs", s)
	}
	if err == nil {
		c.Close()
	}
	// Reading a path nobody publishes.
	rc := &gortsplib.Client{}
	u, _ := base.ParseURL(e.url("live/nobody"))
	rc.Scheme, rc.Host = u.Scheme, u.Host
	if err := rc.Start(); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, _, err = rc.Describe(u)
	if s := statusOf(err); !strings.Contains(s, "404") {
		t.Errorf("DESCRIBE of an unpublished path: %s, want 404", s)
	}
	// The first publisher is still live.
	if st := e.hub.Stream("live/busy"); st == nil || !st.Stats().Publishing {
		t.Error("the live publisher was dropped by the refusals")
	}
}

// rawRequest sends one RTSP request on a new connection and returns the
// status line.
func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(line)
}

// Paths with keys take them as the RTSP password (digest or basic, any user
// name) or as ?key=.
func TestAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(p string) server.PathConfig {
		pc := server.DefaultPathConfig()
		if strings.HasPrefix(p, "secure/") {
			pc.PublishKey, pc.ReadKey = "pubsecret", "readsecret"
		}
		return pc
	})
	host := e.addr
	// No credentials: 401 with a challenge.
	if _, err := startPublish(t, "rtsp://"+host+"/secure/a", publishOpts{}); !strings.Contains(statusOf(err), "401") {
		t.Errorf("publish without credentials: %s, want 401", statusOf(err))
	}
	if _, err := startPublish(t, "rtsp://anyone:wrong@"+host+"/secure/a", publishOpts{}); err == nil {
		t.Error("publish with a wrong password was accepted")
	}
	// The gortsplib client answers the digest challenge.
	if _, err := startPublish(t, "rtsp://anyone:pubsecret@"+host+"/secure/a", publishOpts{}); err != nil {
		t.Fatalf("publish with the key as password: %v", err)
	}
	waitPublished(t, e, "secure/a")
	if _, err := startPublish(t, "rtsp://"+host+"/secure/b?key=pubsecret", publishOpts{}); err != nil {
		t.Fatalf("publish with ?key=: %v", err)
	}
	waitPublished(t, e, "secure/b")

	describe := func(extra string) string {
		return rawRequest(t, host, "DESCRIBE rtsp://"+host+"/secure/a RTSP/1.0\r\nCSeq: 1\r\n"+extra+"\r\n")
	}
	if s := describe(""); !strings.Contains(s, "401") {
		t.Errorf("DESCRIBE without credentials: %q, want 401", s)
	}
	basic := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("viewer:readsecret")) + "\r\n"
	if s := describe(basic); !strings.Contains(s, "200") {
		t.Errorf("DESCRIBE with basic auth and the read key: %q, want 200", s)
	}
	wrong := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("viewer:pubsecret")) + "\r\n"
	if s := describe(wrong); strings.Contains(s, "200") {
		t.Errorf("DESCRIBE with the publish key as read key: %q, want a refusal", s)
	}
	// Digest, through the gortsplib client.
	types, _ := playFirstAU(t, "rtsp://viewer:readsecret@"+host+"/secure/a", gortsplib.ProtocolTCP)
	if !containsInt(types, int(h264.NALUTypeIDR)) {
		t.Errorf("digest-authenticated player got %v", types)
	}
}

// Garbage on the socket, a broken SDP and undecodable RTP end only their own
// connection or session; a player of another stream keeps receiving.
func TestBadInputEndsOnlyItsSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if _, err := startPublish(t, e.url("live/good"), publishOpts{speed: 1}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, e, "live/good")
	r, err := e.hub.ReadTrusted(context.Background(), "live/good", server.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// Not RTSP at all.
	if s := rawRequest(t, e.addr, "\x16\x03\x01 garbage garbage\r\n\r\n"); strings.Contains(s, "200") {
		t.Errorf("garbage got %q", s)
	}
	// An ANNOUNCE with an SDP that does not parse.
	sdp := "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 sprop-parameter-sets=!!!\r\n"
	s := rawRequest(t, e.addr, fmt.Sprintf("ANNOUNCE rtsp://%s/live/bad RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", e.addr, len(sdp), sdp))
	if strings.Contains(s, "200") {
		t.Errorf("broken SDP got %q", s)
	}
	// A publisher whose RTP is garbage: no unit reaches the hub, no crash.
	desc := publishDesc(loadFixture(t))
	tcp := gortsplib.ProtocolTCP
	bad := &gortsplib.Client{Protocol: &tcp}
	if err := bad.StartRecording(e.url("live/garbage"), desc); err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	for i := range 200 {
		payload := make([]byte, 50+i)
		for j := range payload {
			payload[j] = byte(i*7 + j*13)
		}
		bad.WritePacketRTP(desc.Medias[i%2], &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: uint8(96 + i%2), SequenceNumber: uint16(i), Timestamp: uint32(i * 3000)}, Payload: payload}) //nolint:errcheck
	}
	// The good stream kept flowing.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for n := 0; n < 30; n++ {
		if _, err := r.Next(ctx); err != nil {
			t.Fatalf("good stream stopped after %d units: %v", n, err)
		}
	}
}

// A pulled source: a path whose config names an RTSP URL is published by
// streamhub itself, and comes back after the source restarts.
func TestPullSourceRecovers(t *testing.T) {
	t.Parallel()
	// The "camera": without a grace period its stream (and our pull of it)
	// ends when its publisher leaves.
	cam := newEnv(t, func(string) server.PathConfig {
		pc := server.DefaultPathConfig()
		pc.GracePeriod = 0
		return pc
	})
	pub, err := startPublish(t, cam.url("cam/main"), publishOpts{speed: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitPublished(t, cam, "cam/main")

	e := newEnv(t, func(p string) server.PathConfig {
		pc := server.DefaultPathConfig()
		if p == "pulled" {
			pc.Source = cam.url("cam/main")
			pc.SourceTransport = server.SourceTCP
		}
		return pc
	})
	src := NewSources(e.srv.conf, e.hub, slog.New(slog.NewTextHandler(e.logs, nil)))
	defer src.Close()
	src.StartAlways([]string{"pulled"})
	// readSome waits for a unit that arrived after since.
	readSome := func(what string, since time.Time) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			r, err := e.hub.ReadTrusted(context.Background(), "pulled", server.ReadOptions{})
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				u, err := r.Next(ctx)
				for err == nil && u.Wall.Before(since) {
					u, err = r.Next(ctx)
				}
				cancel()
				r.Close()
				if err == nil {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: pulled path not readable after 15s (%v)", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	readSome("first pull", time.Time{})
	pub.stop()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.logs.String(), "source failed; retrying") {
		if time.Now().After(deadline) {
			t.Fatal("the pull did not notice the source ending")
		}
		time.Sleep(20 * time.Millisecond)
	}
	failed := time.Now()
	// Publishing again brings the pulled path back on its own.
	if _, err := startPublish(t, cam.url("cam/main"), publishOpts{speed: 1}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	readSome("after the source restarted", failed)
}

// G.711 and Opus pass through: published over RTSP, carried by the hub, and
// described and sent to an RTSP player with their parameters.
func TestAudioPassthrough(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	desc := &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.G711{PayloadTyp: 8, SampleRate: 8000, ChannelCount: 1}}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.Opus{PayloadTyp: 111, ChannelCount: 2}}},
	}}
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Protocol: &tcp}
	if err := c.StartRecording(e.url("live/audio"), desc); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			pcm := make([]byte, 160) // 20 ms at 8 kHz
			for j := range pcm {
				pcm[j] = byte(0xd5 + i + j)
			}
			c.WritePacketRTP(desc.Medias[0], &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: uint16(i), Timestamp: uint32(i * 160), Marker: i == 0}, Payload: pcm})                 //nolint:errcheck
			c.WritePacketRTP(desc.Medias[1], &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i), Timestamp: uint32(i * 960)}, Payload: []byte{0xfc, byte(i), 0xff, 0xfe}}) //nolint:errcheck
			time.Sleep(20 * time.Millisecond)
		}
	}()
	waitPublished(t, e, "live/audio")
	tracks := e.hub.Stream("live/audio").Tracks()
	if len(tracks) != 2 || tracks[0].Codec != media.CodecG711A || tracks[0].SampleRate != 8000 ||
		tracks[1].Codec != media.CodecOpus || tracks[1].Channels != 2 {
		t.Fatalf("hub tracks %+v %+v", tracks[0], tracks[1])
	}

	u, _ := base.ParseURL(e.url("live/audio"))
	rc := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
	if err := rc.Start(); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rdesc, _, err := rc.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	var g711 *format.G711
	var opus *format.Opus
	gm, om := rdesc.FindFormat(&g711), rdesc.FindFormat(&opus)
	if gm == nil || om == nil || g711.MULaw || g711.SampleRate != 8000 || opus.ChannelCount != 2 {
		t.Fatalf("SDP to the player: %+v", rdesc.Medias)
	}
	if err := rc.SetupAll(rdesc.BaseURL, rdesc.Medias); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	rc.OnPacketRTP(gm, g711, func(p *rtp.Packet) {
		mu.Lock()
		if len(p.Payload) == 160 {
			got["g711"]++
		}
		mu.Unlock()
	})
	rc.OnPacketRTP(om, opus, func(p *rtp.Packet) {
		mu.Lock()
		if len(p.Payload) == 4 && p.Payload[0] == 0xfc {
			got["opus"]++
		}
		mu.Unlock()
	})
	if _, err := rc.Play(nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		g, o := got["g711"], got["opus"]
		mu.Unlock()
		if g >= 10 && o >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("player got %d G.711 and %d Opus packets in 5s", g, o)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RTCP sender reports map RTP time to the units' wall time, one mapping for
// all tracks: a player's NTP for a live packet is about when it arrived.
func TestSenderReportsCarryWallTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if _, err := startPublish(t, e.url("live/ntp"), publishOpts{speed: 1}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, e, "live/ntp")
	time.Sleep(1500 * time.Millisecond) // join mid-GOP, with a catch-up
	for _, proto := range []gortsplib.Protocol{gortsplib.ProtocolTCP, gortsplib.ProtocolUDP} {
		t.Run(proto.String(), func(t *testing.T) { senderReportsCarryWallTime(t, e, proto) })
	}
}

func senderReportsCarryWallTime(t *testing.T, e *env, proto gortsplib.Protocol) {
	c := setupPlayer(t, e.url("live/ntp"), proto)
	var mu sync.Mutex
	worst := map[string]time.Duration{}
	seen := map[string]int{}
	c.OnPacketRTPAny(func(m *description.Media, f format.Format, p *rtp.Packet) {
		ntp, ok := c.PacketNTP(m, p)
		if !ok {
			return
		}
		d := time.Since(ntp)
		if d < 0 {
			d = -d
		}
		mu.Lock()
		defer mu.Unlock()
		seen[string(m.Type)]++
		if seen[string(m.Type)] > 20 { // past the catch-up burst
			worst[string(m.Type)] = max(worst[string(m.Type)], d)
		}
	})
	if _, err := c.Play(nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	for _, typ := range []string{"video", "audio"} {
		if seen[typ] <= 20 {
			t.Errorf("%s: %d packets with an NTP time", typ, seen[typ])
			continue
		}
		// Arrival wall time, plus the 100 ms catch-up and a frame of
		// reordering; never the age of the cached GOP (over 500 ms).
		if worst[typ] > 400*time.Millisecond {
			t.Errorf("%s: NTP time of a live packet is %v away from now", typ, worst[typ])
		}
		t.Logf("%s: NTP within %v of arrival", typ, worst[typ].Round(time.Millisecond))
	}
}

// setupPlayer starts a gortsplib client, DESCRIBEs url and SETUPs every
// media over proto; the client is closed when the test ends.
func setupPlayer(t *testing.T, url string, proto gortsplib.Protocol) *gortsplib.Client {
	t.Helper()
	u, err := base.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &proto}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	desc, _, err := c.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		t.Fatal(err)
	}
	return c
}
