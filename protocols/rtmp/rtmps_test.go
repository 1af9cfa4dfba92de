package rtmp_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/protocols/rtmp"
)

// TestRTMPS publishes and plays over TLS with gortmplib's client: a TLS
// player is a *tls.Conn, which the stream's pass cannot write, so its own
// goroutine writes it (the fallback); it gets the same pictures as a
// player over TCP (the pass). Garbage and plain RTMP on the RTMPS port are
// refused within the handshake timeout, and the players go on.
func TestRTMPS(t *testing.T) {
	srvTLS, pool, err := testfixtures.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, rtmp.Config{TLSAddress: "127.0.0.1:0", TLS: srvTLS, HandshakeTimeout: time.Second}, nil)
	tlsAddr := e.srv.TLSAddr().String()
	rtmps := func(path string) *url.URL {
		u, _ := url.Parse("rtmps://" + tlsAddr + "/" + path)
		return u
	}
	clientTLS := &tls.Config{RootCAs: pool}
	pub, err := startPublisherTLS(t, rtmps("live/tls"), source{
		video: &gortmplib.Track{Codec: &codecs.H264{SPS: h264SPS, PPS: h264PPS}},
		audio: &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: aacConf}},
		speed: 4,
	}, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.stop()
	waitFor(t, "the stream in the hub", 5*time.Second, func() bool { return e.hub.Stream("live/tls") != nil })

	overTLS, err := startPlayerTLS(t, rtmps("live/tls"), clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer overTLS.close()
	overTCP, err := startPlayer(t, e.url("live/tls"))
	if err != nil {
		t.Fatal(err)
	}
	defer overTCP.close()
	byProto := e.hub.Stream("live/tls").Stats().ReadersByProtocol
	if byProto["rtmps"] != 1 || byProto["rtmp"] != 1 {
		t.Errorf("readers by protocol %v, want one rtmps and one rtmp", byProto)
	}

	// Bad input on the RTMPS port, while both play.
	for _, send := range [][]byte{bytes.Repeat([]byte{0xde, 0xad}, 300), append([]byte{3}, make([]byte, 1536)...), nil} {
		c, err := net.Dial("tcp", tlsAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(send) //nolint:errcheck // the server may close first
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%d bytes sent: still open after 5 s", len(send))
		}
		if len(got) >= 1537 && got[0] == 3 {
			t.Errorf("%d bytes sent: an RTMP handshake answered in the clear", len(send))
		}
	}

	// Both from a keyframe on; the TLS player joined first, maybe a GOP
	// earlier: from the TCP player's first picture on, the same pictures.
	var a, b []vframe
	j := -1
	waitFor(t, "30 common pictures on both players", 15*time.Second, func() bool {
		a, b = overTLS.pictures(), overTCP.pictures()
		if len(b) < 30 {
			return false
		}
		for i := range a {
			if a[i].dts == b[0].dts {
				j = i
				return len(a) >= j+30
			}
		}
		return false
	})
	if first := a[0]; h264.NALUType(first.au[len(first.au)-1][0]&0x1F) != h264.NALUTypeIDR {
		t.Errorf("the TLS player's first picture is not an IDR")
	}
	for i := range 30 {
		x, y := a[j+i], b[i]
		if x.dts != y.dts || len(x.au) != len(y.au) || !bytes.Equal(x.au[len(x.au)-1], y.au[len(y.au)-1]) {
			t.Fatalf("picture %d differs: TLS dts %v, TCP dts %v", i, x.dts, y.dts)
		}
	}
	if _, _, err := overTLS.snapshot(); err != nil {
		t.Errorf("TLS player: %v", err)
	}
}
