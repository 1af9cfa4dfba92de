package testfixtures

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Addrs are the listen addresses of one test server: never the defaults, so
// tests run in parallel and beside a running streamhub.
type Addrs struct {
	RTMP, HTTP, RTSP string // TCP HOST:PORT
	// RTMPS and RTSPS are the TLS listeners, when a test's config has them
	// (set from the server's log by Bound).
	RTMPS, RTSPS string
	// UDPRTP is the RTSP UDP unicast RTP port (even); RTCP is UDPRTP+1.
	UDPRTP int
	// MulticastRange is a multicast range of this server alone,
	// MulticastRTP its RTP port (even); RTCP is MulticastRTP+1.
	MulticastRange string
	MulticastRTP   int
	// SRT is the SRT listener (UDP HOST:PORT).
	SRT string
	// WebRTC is the ICE port, UDP and TCP on every address (WHIP/WHEP);
	// WebRTCTCP, when set, the TCP one (a server that bound port 0 for
	// both got two ports, and a restart must ask for the same two).
	WebRTC    int
	WebRTCTCP int
	// Database is the file of the registered streams; each server needs
	// its own (the file is locked while a server runs). Set by the caller.
	Database string
}

// FreeAddrs picks free addresses for a server. The UDP port pairs and the
// multicast range are handed out once per process, so two servers of this
// process never share them.
func FreeAddrs() (Addrs, error) {
	var a Addrs
	seen := map[int]bool{}
	for _, dst := range []*string{&a.RTMP, &a.HTTP, &a.RTSP} {
		for {
			p, err := freePort()
			if err != nil {
				return a, err
			}
			if !seen[p] {
				seen[p] = true
				*dst = "127.0.0.1:" + strconv.Itoa(p)
				break
			}
		}
	}
	var srt int
	for _, dst := range []*int{&a.UDPRTP, &a.MulticastRTP, &srt, &a.WebRTC} {
		p, err := freeUDPPair()
		if err != nil {
			return a, err
		}
		*dst = p
	}
	a.SRT = "127.0.0.1:" + strconv.Itoa(srt)
	a.MulticastRange = freeMulticastRange()
	return a, nil
}

// freePort returns a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// udpPorts hands out even UDP port pairs and multicast ranges, each once per
// process, so two servers of this process never share them.
var udpPorts = struct {
	sync.Mutex
	ports  map[int]bool
	ranges map[string]bool
}{ports: map[int]bool{}, ranges: map[string]bool{}}

// freeUDPPair returns an even port P such that P and P+1 are free as UDP
// (on every address) and were not handed out before. The ports are below
// Linux's ephemeral range, where the kernel does not put the clients' ports
// (ffmpeg picks its RTP ports itself; a caller retries on a clash).
func freeUDPPair() (int, error) {
	udpPorts.Lock()
	defer udpPorts.Unlock()
	for range 200 {
		p := 20000 + 2*rand.IntN(6000) // 20000..31998
		if udpPorts.ports[p] {
			continue
		}
		a, err := net.ListenPacket("udp4", ":"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.ListenPacket("udp4", ":"+strconv.Itoa(p+1))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		udpPorts.ports[p] = true
		return p, nil
	}
	return 0, errors.New("no free even UDP port pair found")
}

// freeMulticastRange returns a /24 in 239.0.0.0/8 (administratively scoped)
// that no other server of this process got.
func freeMulticastRange() string {
	udpPorts.Lock()
	defer udpPorts.Unlock()
	for {
		r := fmt.Sprintf("239.%d.%d.0/24", 1+rand.IntN(254), rand.IntN(256))
		if !udpPorts.ranges[r] {
			udpPorts.ranges[r] = true
			return r
		}
	}
}

// YAML is the config of a's addresses with the given log level (log, rtmp,
// http, rtsp, webrtc and srt sections; WebRTC also announces 127.0.0.1). The srt: section comes last, so that extra
// YAML appended to it may continue it with indented keys.
func (a Addrs) YAML(logLevel string) string {
	return fmt.Sprintf(`log:
  level: %s
rtmp:
  address: %q
http:
  address: %q
rtsp:
  address: %q
  udpRTPAddress: "127.0.0.1:%d"
  udpRTCPAddress: "127.0.0.1:%d"
  multicastIPRange: %q
  multicastRTPPort: %d
  multicastRTCPPort: %d
streams:
  database: %q
webrtc:
  udpAddress: ":%d"
  tcpAddress: ":%d"
  additionalHosts: ["127.0.0.1"]
srt:
  address: %q
`, logLevel, a.RTMP, a.HTTP, a.RTSP, a.UDPRTP, a.UDPRTP+1, a.MulticastRange, a.MulticastRTP, a.MulticastRTP+1, a.Database,
		a.WebRTC, cmp.Or(a.WebRTCTCP, a.WebRTC), a.SRT)
}

// WaitListening waits until every TCP address accepts a connection, the
// process ends (exited returns its reason), ctx ends or timeout passes.
func WaitListening(ctx context.Context, addrs []string, timeout time.Duration, exited func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := exited(); err != nil {
			return err
		}
		ok := true
		for _, a := range addrs {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ports %s not all accepting after %s", strings.Join(addrs, ", "), timeout)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Dynamic returns a with the TCP listeners, SRT and the WebRTC ports on
// port 0: the server binds whatever is free and says which in its log
// (Bound), so no test races another process for a port. The RTSP UDP pairs
// and the multicast range stay as picked (they must be even pairs).
func (a Addrs) Dynamic() Addrs {
	a.RTMP, a.HTTP, a.RTSP, a.SRT, a.WebRTC, a.WebRTCTCP = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", 0, 0
	return a
}

// Bound reads the addresses a server bound from its log's "listening"
// lines into a copy of a, and reports whether the HTTP listener, which
// starts last, has logged (then every listener that is on has).
func Bound(log string, a Addrs) (Addrs, bool) {
	httpUp := false
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "msg=listening ") {
			continue
		}
		f := logFields(line)
		tls := f["tls"] == "true"
		switch f["proto"] {
		case "rtmp":
			if tls {
				a.RTMPS = f["address"]
			} else {
				a.RTMP = f["address"]
			}
		case "rtsp":
			if tls {
				a.RTSPS = f["address"]
			} else {
				a.RTSP = f["address"]
			}
		case "srt":
			a.SRT = f["address"]
		case "http":
			a.HTTP, httpUp = f["address"], true
		case "webrtc":
			if _, p, err := net.SplitHostPort(f["udp"]); err == nil {
				a.WebRTC, _ = strconv.Atoi(p)
			}
			if _, p, err := net.SplitHostPort(f["tcp"]); err == nil {
				a.WebRTCTCP, _ = strconv.Atoi(p)
			}
		}
	}
	return a, httpUp
}

// logFields splits a log/slog text line into its key=value fields
// (values without spaces or quotes, as the listening lines have).
func logFields(line string) map[string]string {
	f := map[string]string{}
	for _, kv := range strings.Fields(line) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			f[k] = v
		}
	}
	return f
}

// WaitReady waits until a server has logged the addresses it bound (log
// returns its log so far) and its TCP listeners accept; it returns a with
// the bound addresses. exited reports the process's end, ctx and timeout
// bound the wait. With Dynamic addresses this is how the e2e tests and the
// bench tools learn where a server listens.
func WaitReady(ctx context.Context, log func() string, a Addrs, timeout time.Duration, exited func() error) (Addrs, error) {
	deadline := time.Now().Add(timeout)
	for {
		b, up := Bound(log(), a)
		if up {
			a = b
			break
		}
		if err := exited(); err != nil {
			return a, err
		}
		if time.Now().After(deadline) {
			return a, fmt.Errorf("no listening lines in the server's log after %s", timeout)
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return a, ctx.Err()
		}
	}
	var tcp []string
	for _, addr := range []string{a.RTMP, a.HTTP, a.RTSP} {
		if addr != "" && !strings.HasSuffix(addr, ":0") {
			tcp = append(tcp, addr)
		}
	}
	return a, WaitListening(ctx, tcp, time.Until(deadline), exited)
}
