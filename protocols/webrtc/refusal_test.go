package webrtc

import (
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// Each bad request ends only itself, with the status and reason it deserves.
func TestRefusals(t *testing.T) {
	pc := testPathConf()
	pc.PublishKey = "secret"
	env := newEnv(t, pc, nil)
	base := env.http.URL

	// A live publisher, for the busy path.
	pub := newPublisher(t, false)
	pub.connect(t, base+"/live/busy/whip", true, "Authorization", "Bearer secret")
	pub.start()
	eventually(t, "published", 10*time.Second, func() bool { return env.hub.Stream("live/busy") != nil })

	good := offerOf(t, newPublisher(t, true).pc, false)
	vp8 := vp8Offer(t)
	for _, tc := range []struct {
		name, method, url, ctype, body string
		hdr                            []string
		status                         int
		reason                         string
	}{
		{"malformed SDP", "POST", "/live/a/whip?key=secret", "application/sdp", "v=0\r\nthis is not sdp\r\n", nil, 400, "malformed SDP"},
		{"no supported codec", "POST", "/live/a/whip?key=secret", "application/sdp", vp8, nil, 400, "H264"},
		{"oversized offer", "POST", "/live/a/whip?key=secret", "application/sdp", strings.Repeat("a", maxOfferBytes+1), nil, 413, "larger than"},
		{"wrong content type", "POST", "/live/a/whip?key=secret", "text/plain", good, nil, 415, "application/sdp"},
		{"wrong key", "POST", "/live/a/whip?key=nope", "application/sdp", good, nil, 401, "key"},
		{"missing key", "POST", "/live/a/whip", "application/sdp", good, nil, 401, "key"},
		{"wrong Bearer", "POST", "/live/a/whip", "application/sdp", good, []string{"Authorization", "Bearer nope"}, 401, "key"},
		{"busy path", "POST", "/live/busy/whip?key=secret", "application/sdp", good, nil, 409, "busy"},
		{"bad path", "POST", "/live/../x/whip?key=secret", "application/sdp", good, nil, 400, ""},
		{"nothing to play", "POST", "/live/none/whep", "application/sdp", good, nil, 404, "not found"},
		{"unknown session PATCH", "PATCH", "/live/a/whip/0123456789abcdef0123456789abcdef", "application/trickle-ice-sdpfrag", "a=end-of-candidates\r\n", nil, 404, "no such session"},
		{"unknown session DELETE", "DELETE", "/live/a/whep/0123456789abcdef0123456789abcdef", "", "", nil, 404, "no such session"},
		{"GET", "GET", "/live/a/whip", "", "", nil, 405, "POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := do(t, tc.method, base+tc.url, tc.ctype, tc.body, tc.hdr...)
			if res.StatusCode != tc.status || !strings.Contains(body, tc.reason) {
				t.Fatalf("%s %s: %s %q; want %d with %q", tc.method, tc.url, res.Status, body, tc.status, tc.reason)
			}
		})
	}
	if s := env.hub.Stream("live/busy"); s == nil || !s.Publishing() {
		t.Fatal("the live publisher was hurt by the refusals")
	}
	if env.srv.Sessions() != 1 {
		t.Fatalf("%d sessions, want only the publisher's", env.srv.Sessions())
	}
}

// vp8Offer is a browser-like offer with VP8 video and PCMU audio only.
func vp8Offer(t *testing.T) string {
	m := &pwebrtc.MediaEngine{}
	m.RegisterCodec(pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}, pwebrtc.RTPCodecTypeVideo) //nolint:errcheck
	m.RegisterCodec(pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0}, pwebrtc.RTPCodecTypeAudio)  //nolint:errcheck
	pc, err := pwebrtc.NewAPI(pwebrtc.WithMediaEngine(m)).NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []pwebrtc.RTPCodecType{pwebrtc.RTPCodecTypeVideo, pwebrtc.RTPCodecTypeAudio} {
		pc.AddTransceiverFromKind(k, pwebrtc.RTPTransceiverInit{Direction: pwebrtc.RTPTransceiverDirectionSendonly}) //nolint:errcheck
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

// Sessions whose ICE never completes are freed after the handshake
// timeout; 500 of them leave no goroutine behind.
func TestAbandonedSessionsFreed(t *testing.T) {
	n := 500
	if testing.Short() {
		n = 50
	}
	env := newEnv(t, testPathConf(), func(c *Config) { c.HandshakeTimeout = time.Second })
	pub := newPublisher(t, false)
	pub.connect(t, env.http.URL+"/live/src/whip", true)
	pub.start()
	eventually(t, "published", 10*time.Second, func() bool { return env.hub.Stream("live/src") != nil })

	// An offer whose candidates point nowhere: it never connects.
	dead := newPlayer(t)
	offer := offerOf(t, dead.pc, true)
	dead.pc.Close()
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()
	for i := range n {
		res, body := do(t, http.MethodPost, env.http.URL+"/live/src/whep", "application/sdp", offer)
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("POST %d: %s %s", i, res.Status, body)
		}
	}
	peak := runtime.NumGoroutine()
	eventually(t, "abandoned sessions freed", 60*time.Second, func() bool { return env.srv.Sessions() == 1 })
	http.DefaultClient.CloseIdleConnections()
	eventually(t, "goroutines back to baseline", 30*time.Second, func() bool { return runtime.NumGoroutine() <= base+5 })
	t.Logf("%d abandoned sessions: goroutines %d before, %d at peak, %d after", n, base, peak, runtime.NumGoroutine())
	if c := strings.Count(env.logs.String(), "did not complete within webrtc.handshakeTimeout"); c != n {
		t.Fatalf("%d handshake-timeout close lines, want %d", c, n)
	}
	if s := env.hub.Stream("live/src"); s == nil || !s.Publishing() || s.ReaderCount() != 0 {
		t.Fatal("the publisher was hurt, or readers were left attached")
	}
}

// A stream with B-frames is refused with a reason, never sent as a
// picture that a WebRTC player would show out of order.
func TestBFramesRefused(t *testing.T) {
	env := newEnv(t, testPathConf(), nil)
	v := &media.Track{ID: 0, Codec: media.CodecH264}
	pub, err := env.hub.PublishTrusted("live/bf", []*media.Track{v}, server.PublishOptions{Protocol: "test", Remote: "local"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sps := []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8}
	pps := []byte{0x68, 0xce, 0x3c, 0x80}
	pub.Write(&media.Unit{Track: v, KeyFrame: true, Payload: [][]byte{sps, pps, {0x65, 0x88, 0x84}}})
	// A reordered picture: shown 66 ms after it is decoded.
	pub.Write(&media.Unit{Track: v, DTS: 33 * time.Millisecond, PTS: 100 * time.Millisecond, Payload: [][]byte{{0x41, 0x9a}}})
	res, body := do(t, http.MethodPost, env.http.URL+"/live/bf/whep", "application/sdp", offerOf(t, newPlayer(t).pc, false))
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "B-frames") {
		t.Fatalf("WHEP of a stream with B-frames: %s %q, want 400 naming B-frames", res.Status, body)
	}
}
