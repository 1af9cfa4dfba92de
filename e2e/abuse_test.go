//go:build e2e

package e2e

// The abuse suite: hostile and careless peers against a live server with a
// victim publisher and viewers. Each class of attack runs in turn; after
// each, the server must be up and the victim's frames must keep advancing,
// and at the end its goroutines, descriptors and memory must come back to
// where they were. Attackers dial from their own loopback addresses
// (127.0.0.2 and up), so the per-address limits that stop them leave the
// victim (127.0.0.1) alone.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/testfixtures"
)

// abuseTimeout is the server's read and idle timeout in the abuse suite:
// short, so that idle and slow peers are closed within the test.
const abuseTimeout = 2 * time.Second

// abuseFDLimit is the descriptor limit the server runs under.
const abuseFDLimit = 256

func TestAbuse(t *testing.T) {
	requireTool(t, "ffmpeg")
	requireTool(t, "prlimit")
	a := freeAddrs(t)
	conf := a.YAML("info")
	conf = strings.Replace(conf, "http:\n", fmt.Sprintf("http:\n  readTimeout: %s\n  idleTimeout: %s\n", abuseTimeout+time.Second, abuseTimeout), 1)
	conf = strings.Replace(conf, "rtsp:\n", fmt.Sprintf("rtsp:\n  readTimeout: %s\n", abuseTimeout), 1)
	conf = strings.Replace(conf, "rtmp:\n", fmt.Sprintf("rtmp:\n  handshakeTimeout: %s\n", abuseTimeout), 1)
	conf += `hls:
  blockTimeout: 1s
auth:
  failureBudget: 10
limits:
  maxConnsPerAddress: 40
paths:
  default:
    transcode: "off"
    gracePeriod: 10s
  overrides:
    - match: "live/secret"
      readKey: "the-right-key"
`
	file := writeConfigText(t, conf)
	s, err := launchServerUnder(t, file, a, "prlimit", fmt.Sprintf("--nofile=%d:%d", abuseFDLimit, abuseFDLimit))
	if err != nil {
		t.Fatalf("server did not start: %v\n%s", err, tail(s.stderr.String(), 40))
	}
	pub := startPublisher(t, s.rtmpURL("live/victim"))
	waitLive(t, s, "live/victim", pub)
	secret := startPublisher(t, s.rtmpURL("live/secret"))
	waitLiveURL(t, s.flvURL("live/secret")+"?key=the-right-key", "live/secret", secret)
	victim := openFLV(t, s.flvURL("live/victim"))
	victim.waitTags(t, 10*time.Second, "the victim's first pictures", func(tags []flvTag) bool { return countVideo(tags) >= 10 })

	metrics := "http://" + s.httpAddr + "/metrics"
	time.Sleep(time.Second)
	base := sampleUsage(t, metrics)
	t.Logf("baseline: %s", base)

	// advancing asserts that the victim got new pictures during the class.
	advancing := func(t *testing.T, what string) {
		t.Helper()
		before := countVideo(mustTags(t, victim))
		victim.waitTags(t, 10*time.Second, "pictures after "+what, func(tags []flvTag) bool { return countVideo(tags) >= before+15 })
		if s.exited() {
			t.Fatalf("the server exited during %s", what)
		}
	}
	logBytes := func() int { return len(s.stderr.String()) }

	t.Run("PartialSetup", func(t *testing.T) {
		// A player that sets up only some tracks and plays (the crash of
		// issue 20): the server must live and the player must decode.
		for _, kind := range []string{"video", "audio"} {
			out, errOut, code := run(t, 30*time.Second, "ffmpeg", "-hide_banner", "-v", "error", "-rtsp_transport", "tcp",
				"-allowed_media_types", kind, "-i", s.rtspURL("live/victim"), "-t", "1", "-f", "null", "-")
			if code != 0 {
				t.Errorf("ffmpeg reading only %s over RTSP: exit %d: %s%s", kind, code, out, tail(errOut, 10))
			}
		}
		advancing(t, "partial SETUPs")
	})

	t.Run("Malformed", func(t *testing.T) {
		garbage := [][]byte{
			bytes.Repeat([]byte{0xff}, 4096),
			[]byte("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"),
			[]byte("DESCRIBE rtsp://x/live/victim RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 99999999999\r\n\r\n"),
			[]byte("SETUP rtsp://x/live/victim/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=255-256\r\n\r\n"),
			append([]byte{3}, bytes.Repeat([]byte{0}, 1536)...), // an RTMP C0C1, then nothing
			[]byte("\x00\x00\x00\x00\x00\x00\x00\x00\r\n\r\n\r\n"),
		}
		// Each is answered and closed, or closed after a timeout, by the
		// server: none is left open.
		var wg sync.WaitGroup
		for _, addr := range []string{s.rtspAddr, s.rtmpAddr, s.httpAddr} {
			for i, g := range garbage {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := dialFromErr("127.0.0.2", addr)
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					start := time.Now()
					c.SetDeadline(time.Now().Add(4 * abuseTimeout))
					c.Write(g)
					if _, err := io.Copy(io.Discard, c); isTimeout(err) {
						t.Errorf("garbage %d to %s: still open after %s", i, addr, time.Since(start).Round(time.Millisecond))
					}
				}()
			}
		}
		wg.Wait()
		// SRT: datagrams that are not SRT, and a handshake-sized one of noise.
		if u, err := net.Dial("udp", s.srtAddr); err == nil {
			for i := range 200 {
				u.Write(bytes.Repeat([]byte{byte(i)}, 16+i*7%1300))
			}
			u.Close()
		}
		advancing(t, "malformed requests")
	})

	t.Run("IdleAndSlow", func(t *testing.T) {
		// Connections that send nothing, or half a request, on every TCP
		// listener: each is closed by the server after its timeout.
		var conns []net.Conn
		for _, addr := range []string{s.rtspAddr, s.rtmpAddr, s.httpAddr} {
			for i := range 30 {
				c := dialFrom(t, "127.0.0.3", addr)
				switch i % 3 {
				case 1: // half a request
					fmt.Fprintf(c, "OPTIONS rtsp://%s/x RTSP/1.0\r\nCSeq: 1\r\n", addr)
				case 2: // a request trickled in byte by byte would go here; a partial header is enough
					fmt.Fprintf(c, "GET /live/victim.flv HTTP/1.1\r\nHost: x\r\nX-Slow: ")
				}
				conns = append(conns, c)
			}
		}
		start := time.Now()
		var open atomic.Int32
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			open.Add(1)
			go func() {
				defer wg.Done()
				c.SetReadDeadline(time.Now().Add(10 * abuseTimeout))
				_, err := io.Copy(io.Discard, c)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return // still open: counted below
				}
				open.Add(-1)
			}()
		}
		wg.Wait()
		t.Logf("%d idle or slow connections: %d still open after %s", len(conns), open.Load(), time.Since(start).Round(time.Millisecond))
		if n := open.Load(); n > 0 {
			t.Errorf("%d of %d idle or slow connections were not closed by the server within %s", n, len(conns), 10*abuseTimeout)
		}
		for _, c := range conns {
			c.Close()
		}
		advancing(t, "idle and slow connections")
	})

	t.Run("PerAddressCap", func(t *testing.T) {
		// One address may hold limits.maxConnsPerAddress connections per
		// listener; the rest are closed at once.
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range 100 {
			conns = append(conns, dialFrom(t, "127.0.0.4", s.httpAddr))
		}
		// Read all at once, well within the server's idle timeout, which
		// would close the admitted ones too.
		var closed atomic.Int32
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
					closed.Add(1)
				}
			}()
		}
		wg.Wait()
		if closed := closed.Load(); closed != 60 {
			t.Errorf("%d of 100 connections from one address were closed at once, want 60 (the cap is 40)", closed)
		}
		advancing(t, "one address over its cap")
	})

	t.Run("DescriptorPressure", func(t *testing.T) {
		// Many addresses together take every descriptor the server has:
		// accepts fail (EMFILE) and must be retried, not end a listener.
		var conns []net.Conn
		for i := 0; i < 2*abuseFDLimit; i++ {
			src := fmt.Sprintf("127.0.1.%d", 1+i/35)
			addr := []string{s.rtspAddr, s.rtmpAddr, s.httpAddr}[i%3]
			c, err := dialFromErr(src, addr)
			if err != nil {
				break
			}
			conns = append(conns, c)
		}
		time.Sleep(500 * time.Millisecond)
		for _, c := range conns {
			c.Close()
		}
		t.Logf("held %d connections against a limit of %d descriptors", len(conns), abuseFDLimit)
		if !strings.Contains(s.stderr.String(), "accept failed") {
			t.Error("the descriptors never ran out: the pressure tested nothing (no \"accept failed\" in the log)")
		}
		// Once they are gone, every protocol accepts again.
		deadline := time.Now().Add(15 * time.Second)
		for _, check := range []struct {
			what string
			f    func() error
		}{
			{"HTTP-FLV", func() error { return flvPlays(s.flvURL("live/victim")) }},
			{"RTSP", func() error { return rtspDescribes(s.rtspAddr, "live/victim") }},
			{"RTMP", func() error { return rtmpHandshakes(s.rtmpAddr) }},
		} {
			for {
				err := check.f()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s does not accept after the pressure: %v\nlog:\n%s", check.what, err, tail(s.stderr.String(), 30))
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		if !strings.Contains(s.stderr.String(), "accepting again") {
			t.Error("no listener said it accepts again after the pressure")
		}
		advancing(t, "descriptor pressure")
	})

	t.Run("ConnectStorm", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 600 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				src := fmt.Sprintf("127.0.2.%d", 1+i%200)
				addr := []string{s.rtspAddr, s.rtmpAddr, s.httpAddr}[i%3]
				if c, err := dialFromErr(src, addr); err == nil {
					c.Close()
				}
			}()
		}
		wg.Wait()
		advancing(t, "a connect storm")
	})

	t.Run("AuthGuessing", func(t *testing.T) {
		// Wrong keys from one address over HTTP-FLV: each waits, and past
		// auth.failureBudget the address is refused even with the right key,
		// while another address still gets in.
		client := clientFrom("127.0.0.5")
		start := time.Now()
		var wg sync.WaitGroup
		var refused atomic.Int32
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := client.Get(fmt.Sprintf("%s?key=guess-%d", s.flvURL("live/secret"), i))
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusUnauthorized {
						refused.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		took := time.Since(start)
		t.Logf("30 wrong keys from one address: %d refused in %s (%.0f failures/s)", refused.Load(), took.Round(time.Millisecond), float64(refused.Load())/took.Seconds())
		if refused.Load() != 30 {
			t.Errorf("%d of 30 wrong keys refused", refused.Load())
		}
		resp, err := client.Get(s.flvURL("live/secret") + "?key=the-right-key")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("the right key from the throttled address: %s, want 401", resp.Status)
			}
		}
		if err := flvPlaysWith(clientFrom("127.0.0.6"), s.flvURL("live/secret")+"?key=the-right-key"); err != nil {
			t.Errorf("the right key from another address: %v", err)
		}
		advancing(t, "key guessing")
	})

	t.Run("LogFlood", func(t *testing.T) {
		// Peer-chosen values reach the log cut short: a long URL over
		// HTTP-FLV and RTSP, and an RTMP connect with a 10 MB argument.
		before := logBytes()
		long := strings.Repeat("A", 60000)
		for range 5 {
			client := clientFrom("127.0.0.7")
			if resp, err := client.Get(s.flvURL("live/"+long[:4000]) + "?key=" + long); err == nil {
				resp.Body.Close()
			}
			rtspRequest(s.rtspAddr, "DESCRIBE rtsp://"+s.rtspAddr+"/live/"+long[:8000]+" RTSP/1.0\r\nCSeq: 1\r\n\r\n")
		}
		if err := testfixtures.HostileRTMPConnect(s.rtmpAddr, "127.0.0.8", 10<<20); err != nil {
			t.Fatal(err)
		}
		grew := logBytes() - before
		t.Logf("log grew %d bytes for 11 hostile requests", grew)
		if grew > 11*4096 {
			t.Errorf("log grew %d bytes for 11 hostile requests (> 4 KiB each):\n%s", grew, tail(s.stderr.String(), 5))
		}
		advancing(t, "log floods")
	})

	t.Run("PublisherKill", func(t *testing.T) {
		// The victim's publisher dies and comes back within the grace
		// period: its viewer stays and gets pictures again.
		pub.kill()
		time.Sleep(2 * time.Second)
		pub = startPublisher(t, s.rtmpURL("live/victim"))
		advancing(t, "a publisher kill and restart")
		if _, err := victim.snapshot(); err != nil {
			t.Fatalf("the victim's viewer was ended by the republish: %v", err)
		}
	})

	// Everything the attackers held is given back.
	var now usage
	deadline := time.Now().Add(20 * time.Second)
	for {
		now = sampleUsage(t, metrics)
		ok := now.goroutines <= base.goroutines+25 && now.fds <= base.fds+10 && now.rss <= base.rss*2+32<<20
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage did not come back: baseline %s, now %s", base, now)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("after the suite: %s (baseline %s)", now, base)
	if p := metricValue(t, metrics, "streamhub_panics_total", nil); p != 0 {
		t.Errorf("streamhub_panics_total = %v, want 0", p)
	}
}

type usage struct {
	goroutines, fds, rss float64
}

func (u usage) String() string {
	return fmt.Sprintf("%.0f goroutines, %.0f descriptors, %.1f MB RSS", u.goroutines, u.fds, u.rss/1e6)
}

func sampleUsage(t testing.TB, metrics string) usage {
	return usage{
		goroutines: metricValue(t, metrics, "go_goroutines", nil),
		fds:        metricValue(t, metrics, "process_open_fds", nil),
		rss:        metricValue(t, metrics, "process_resident_memory_bytes", nil),
	}
}

func mustTags(t testing.TB, r *flvReader) []flvTag {
	t.Helper()
	tags, err := r.snapshot()
	if err != nil {
		t.Fatalf("the victim's HTTP-FLV viewer ended: %v", err)
	}
	return tags
}

// writeConfigText writes a whole config file.
func writeConfigText(t testing.TB, text string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "streamhub-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// dialFromErr connects to addr from the local address src (any 127.x.y.z
// is this machine on Linux).
func dialFromErr(src, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial("tcp", addr)
}

func dialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	c, err := dialFromErr(src, addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	return c
}

// clientFrom is an HTTP client whose connections come from src.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// flvPlays reads the first tags of an HTTP-FLV URL.
func flvPlays(url string) error { return flvPlaysWith(http.DefaultClient, url) }

func flvPlaysWith(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	fr, err := newFLVReader(resp.Body)
	if err != nil {
		return err
	}
	for range 5 {
		if _, err := fr.Read(); err != nil {
			return err
		}
	}
	return nil
}

// rtspRequest sends one raw request and returns the status line.
func rtspRequest(addr, req string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if n == 0 {
		return "", err
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	return line, nil
}

func rtspDescribes(addr, path string) error {
	line, err := rtspRequest(addr, fmt.Sprintf("DESCRIBE rtsp://%s/%s RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n", addr, path))
	if err != nil {
		return err
	}
	if !strings.Contains(line, " 200 ") {
		return fmt.Errorf("DESCRIBE: %s", line)
	}
	return nil
}

// rtmpHandshakes sends C0C1 and reads S0S1.
func rtmpHandshakes(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(append([]byte{3}, make([]byte, 1536)...)); err != nil {
		return err
	}
	_, err = io.ReadFull(c, make([]byte, 1+1536))
	return err
}
