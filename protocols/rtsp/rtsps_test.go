package rtsp

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/server"
)

// TestRTSPS plays over TLS with gortsplib's client: TCP (interleaved,
// written by our own play loop through the TLS connection) starts at a
// keyframe; UDP is refused (it would need SRTP); garbage, plain RTSP and
// silence on the RTSPS port are closed without an RTSP answer.
func TestRTSPS(t *testing.T) {
	t.Parallel()
	srvTLS, pool, err := testfixtures.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, server.HubConfig{}, func(c *Config) {
		c.TLSAddress, c.TLS, c.ReadTimeout = "127.0.0.1:0", srvTLS, 2*time.Second
	})
	if _, err := startPublish(t, e.url("live/tls"), publishOpts{speed: 1}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, e, "live/tls")
	tlsAddr := e.srv.TLSAddr().String()
	url := "rtsps://" + tlsAddr + "/live/tls"
	clientTLS := &tls.Config{RootCAs: pool}

	types, _ := playFirstAUTLS(t, url, gortsplib.ProtocolTCP, clientTLS)
	if len(types) < 3 || types[0] != int(h264.NALUTypeSPS) || !containsInt(types, int(h264.NALUTypeIDR)) {
		t.Errorf("RTSPS over TCP: first access unit has NALU types %v, want SPS, PPS, ..., IDR", types)
	}

	// UDP: gortsplib's own client refuses it over rtsps://; a client that
	// asks anyway (RTP/AVP over UDP, the keys in the clear) gets 461.
	tc, err := tls.Dial("tcp", tlsAddr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(tc)
	status := func(req string) string {
		t.Helper()
		if _, err := io.WriteString(tc, req); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		for { // the headers and the body, if any
			h, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if n, ok := strings.CutPrefix(h, "Content-Length: "); ok {
				k, _ := strconv.Atoi(strings.TrimSpace(n))
				defer io.CopyN(io.Discard, br, int64(k)) //nolint:errcheck // the SDP is not needed
			}
			if h == "\r\n" {
				break
			}
		}
		return strings.TrimSpace(line)
	}
	if got := status("DESCRIBE " + url + " RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"); got != "RTSP/1.0 200 OK" {
		t.Fatalf("DESCRIBE over TLS: %s", got)
	}
	if got := status("SETUP " + url + "/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP;unicast;client_port=40000-40001\r\n\r\n"); !strings.HasPrefix(got, "RTSP/1.0 461") {
		t.Errorf("RTSPS SETUP over UDP: %s, want 461 Unsupported Transport", got)
	}
	tc.Close()

	for _, send := range [][]byte{bytes.Repeat([]byte{0x16, 0x03, 0x01, 0xff}, 100), []byte("OPTIONS " + url + " RTSP/1.0\r\nCSeq: 1\r\n\r\n"), nil} {
		nc, err := net.Dial("tcp", tlsAddr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(send) //nolint:errcheck // the server may close first
		nc.SetReadDeadline(time.Now().Add(6 * time.Second))
		got, err := io.ReadAll(nc)
		nc.Close()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%q: still open after 6 s", send[:min(len(send), 8)])
		}
		if bytes.Contains(got, []byte("RTSP/1.0")) {
			t.Errorf("%q: answered in the clear: %q", send[:min(len(send), 8)], got)
		}
	}
	// RTSP itself is untouched.
	if types, _ := playFirstAU(t, e.url("live/tls"), gortsplib.ProtocolTCP); !containsInt(types, int(h264.NALUTypeIDR)) {
		t.Errorf("RTSP after the abuse: first access unit %v", types)
	}
}
