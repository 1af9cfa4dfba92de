//go:build e2e

package e2e

// TLS listeners with certificate files (issue 19): ffmpeg publishes over
// RTMPS and plays RTMPS, RTSPS (interleaved) and HTTPS; HTTP/2 on the HTTPS
// listener serves LL-HLS; garbage, plain RTMP and silence on the TLS ports
// are refused without touching anyone else.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/testfixtures"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and localhost
// into dir and returns the files and a pool that trusts it.
func selfSigned(t testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certPEM, keyPEM, pool, err := testfixtures.SelfSignedPEM()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

// tlsConfigFor is the config of a's addresses with RTMPS and RTSPS on free
// ports, rtmpKeys and rtspKeys added to their sections, and extra (a tls:
// section, ...) at the end.
func tlsConfigFor(t testing.TB, a serverAddrs, rtmpKeys, rtspKeys, extra string) string {
	t.Helper()
	y := a.YAML("debug")
	for _, sec := range []struct{ name, keys string }{{"rtmp", rtmpKeys}, {"rtsp", rtspKeys}} {
		head := sec.name + ":\n"
		i := strings.Index(y, head)
		if i < 0 {
			t.Fatalf("no %s: section in the test config", sec.name)
		}
		y = y[:i+len(head)] + "  tlsAddress: \"127.0.0.1:0\"\n" + sec.keys + y[i+len(head):]
	}
	f := filepath.Join(t.TempDir(), "streamhub-tls.yml")
	if err := os.WriteFile(f, []byte(y+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// httpsClient trusts pool and speaks HTTP/2.
func httpsClient(pool *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
}

// waitLiveHTTPS waits until a HEAD of url (an FLV URL) answers 200.
func waitLiveHTTPS(t testing.TB, c *http.Client, url string, pub *proc) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.Head(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if pub.exited() {
			t.Fatalf("publisher exited with status %d; stderr:\n%s", pub.cmd.ProcessState.ExitCode(), tail(pub.stderr.String(), 20))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not live after 20 s (last: %v)", url, errOrStatus(resp, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestTLSListenersWithFiles(t *testing.T) {
	requireTool(t, "ffmpeg")
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	a := freeAddrs(t).Dynamic()
	conf := tlsConfigFor(t, a, "  handshakeTimeout: 1s\n", "  readTimeout: 2s\n",
		fmt.Sprintf("tls:\n  cert: %q\n  key: %q\n", certFile, keyFile))
	s, err := launchServer(t, conf, a)
	if err != nil {
		t.Fatalf("server did not start: %v\nlog:\n%s", err, tail(s.stderr.String(), 40))
	}
	rtmps, rtsps := s.addrs.RTMPS, s.addrs.RTSPS
	if rtmps == "" || rtsps == "" {
		t.Fatalf("no RTMPS (%q) or RTSPS (%q) listener in the log", rtmps, rtsps)
	}

	// ffmpeg publishes over RTMPS (it does not verify the certificate by
	// default: -tls_verify 0).
	pub := startPublisher(t, "rtmps://"+rtmps+"/live/tls")
	defer func() {
		if t.Failed() {
			t.Logf("publisher log:\n%s", tail(pub.stderr.String(), 20))
		}
	}()
	hc := httpsClient(pool)
	https := "https://" + s.httpAddr
	waitLiveHTTPS(t, hc, https+"/live/tls.flv", pub)

	// HTTP/2 on the HTTPS listener: LL-HLS (Apple's players need it).
	resp, err := hc.Get(https + "/live/tls/index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("HLS over HTTPS: %s, want HTTP/2", resp.Proto)
	}
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(body, []byte("#EXTM3U")) {
		t.Errorf("HLS over HTTPS: %s %.80q", resp.Status, body)
	}

	playAll := func(when string) {
		t.Helper()
		for _, d := range []decoded{
			decode(t, "rtmps://"+rtmps+"/live/tls", 2),
			decodeWith(t, "rtsps://"+rtsps+"/live/tls", 2, []string{"-rtsp_transport", "tcp"}, nil),
			decode(t, https+"/live/tls.flv", 2),
		} {
			if t.Failed() {
				break
			}
			d.url += " " + when
			d.check(t, 30, 30)
		}
	}
	playAll("(before the abuse)")

	// ffmpeg publishes over RTSPS too (ANNOUNCE/RECORD inside TLS).
	rtspsPub := startProc(t, "ffmpeg", append(encoderArgs(), "-f", "rtsp", "-rtsp_transport", "tcp", "rtsps://"+rtsps+"/live/tls2")...)
	waitLiveHTTPS(t, hc, https+"/live/tls2.flv", rtspsPub)
	decode(t, "rtmps://"+rtmps+"/live/tls2", 2).check(t, 30, 30)
	rtspsPub.kill()

	// Bad input on the TLS ports: garbage for a TLS handshake, plain RTMP,
	// plain RTSP, and silence. Each is closed by the server (the silent
	// ones by the handshake deadline), and nobody else notices.
	c0c1 := append([]byte{3}, make([]byte, 1536)...)
	for _, tc := range []struct {
		name, addr string
		send       []byte
		within     time.Duration
	}{
		{"garbage on RTMPS", rtmps, bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 100), 5 * time.Second},
		{"plain RTMP on RTMPS", rtmps, c0c1, 5 * time.Second},
		{"silence on RTMPS", rtmps, nil, 5 * time.Second},
		{"garbage on RTSPS", rtsps, bytes.Repeat([]byte{0x16, 0x03, 0x01, 0xff}, 100), 5 * time.Second},
		{"plain RTSP on RTSPS", rtsps, []byte("OPTIONS rtsp://" + rtsps + "/live/tls RTSP/1.0\r\nCSeq: 1\r\n\r\n"), 5 * time.Second},
		{"silence on RTSPS", rtsps, nil, 6 * time.Second},
	} {
		c, err := net.Dial("tcp", tc.addr)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		start := time.Now()
		if tc.send != nil {
			c.Write(tc.send) //nolint:errcheck // the server may close first
		}
		c.SetReadDeadline(time.Now().Add(tc.within + 5*time.Second))
		got, err := io.ReadAll(io.LimitReader(c, 1<<20))
		took := time.Since(start)
		c.Close()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: still open after %s", tc.name, took.Round(time.Millisecond))
			continue
		}
		// A TLS alert may come back, never an RTMP or RTSP answer.
		if bytes.Contains(got, []byte("RTSP/1.0")) || (len(got) >= 1537 && got[0] == 3) {
			t.Errorf("%s: answered in the clear: %.60q", tc.name, got)
		}
		t.Logf("%s: closed after %s (%d bytes back)", tc.name, took.Round(time.Millisecond), len(got))
	}
	if pub.exited() {
		t.Fatalf("the RTMPS publisher ended during the abuse: %s", tail(pub.stderr.String(), 20))
	}
	playAll("(after the abuse)")

	// WebSocket-FLV over TLS in Chromium (mpegts.js, wss://): the
	// browser opens an HTTP/1.1 connection for it beside HTTP/2.
	if browserDir, err := filepath.Abs("browser"); err == nil {
		requireBrowser(t, browserDir)
		browserPlays(t, browserDir, "wss://"+s.httpAddr+"/live/tls.flv")
	} else {
		t.Fatal(err)
	}
	if log := s.stderr.String(); !strings.Contains(log, "tls: first record does not look like a TLS handshake") {
		t.Errorf("the server log names no refused TLS handshake:\n%s", tail(log, 30))
	}
}
