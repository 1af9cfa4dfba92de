//go:build e2e

package e2e

// Automatic HTTPS against pebble, the ACME test server (issue 19): the
// server obtains a certificate (tls-alpn-01, validated by pebble on the
// HTTPS listener), serves LL-HLS over HTTP/2 with it, reuses it from disk
// after a restart with no ACME server at all, and keeps serving it while
// the ACME server hangs or fails during a renewal, logging that once.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// pebbleVersion is the pebble module the test builds.
const pebbleVersion = "v2.10.1"

// acmeDomain is the name the test server gets a certificate for;
// pebble-challtestsrv answers every name with 127.0.0.1.
const acmeDomain = "streamhub.test"

var pebbleBuild struct {
	once              sync.Once
	pebble, challsrv  string
	moduleDir, errOut string
	err               error
}

// pebbleBins builds pebble and pebble-challtestsrv (go install of the
// module at pebbleVersion: from the module cache, or the Go proxy the
// first time; scripts/test.sh fetches it) next to the streamhub binary.
func pebbleBins(t *testing.T) (pebble, challsrv, moduleDir string) {
	t.Helper()
	b := &pebbleBuild
	b.once.Do(func() {
		dir := filepath.Dir(binPath)
		mod := "github.com/letsencrypt/pebble/v2"
		cmd := exec.Command("go", "install", mod+"/cmd/pebble@"+pebbleVersion, mod+"/cmd/pebble-challtestsrv@"+pebbleVersion)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.err, b.errOut = err, string(out)
			return
		}
		gomodcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
		if err != nil {
			b.err = err
			return
		}
		b.pebble, b.challsrv = filepath.Join(dir, "pebble"), filepath.Join(dir, "pebble-challtestsrv")
		b.moduleDir = filepath.Join(strings.TrimSpace(string(gomodcache)), "github.com/letsencrypt/pebble/v2@"+pebbleVersion)
	})
	if b.err != nil {
		t.Fatalf("building pebble %s (go install; scripts/test.sh fetches it): %v\n%s", pebbleVersion, b.err, b.errOut)
	}
	return b.pebble, b.challsrv, b.moduleDir
}

// freeTCPPort returns a port free on 127.0.0.1 now.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// acmeServer is a running pebble and its DNS server.
type acmeServer struct {
	dir, mgmt string // https://localhost:PORT
	minica    string // the CA file of pebble's own HTTPS certificate
	proc      *proc
}

// startPebble runs pebble (no sleeps, no rejected nonces) validating
// tls-alpn-01 on tlsPort of whatever pebble-challtestsrv resolves names
// to (127.0.0.1). Its certificates last 20 days.
func startPebble(t *testing.T, tlsPort int) *acmeServer {
	t.Helper()
	pebble, challsrv, mod := pebbleBins(t)
	dns := freeTCPPort(t)
	startProc(t, challsrv, "-dnsserver", "127.0.0.1:"+strconv.Itoa(dns), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "", "-management", "127.0.0.1:"+strconv.Itoa(freeTCPPort(t)))
	listen, mgmt := freeTCPPort(t), freeTCPPort(t)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           "127.0.0.1:" + strconv.Itoa(listen),
		"managementListenAddress": "127.0.0.1:" + strconv.Itoa(mgmt),
		"certificate":             filepath.Join(mod, "test/certs/localhost/cert.pem"),
		"privateKey":              filepath.Join(mod, "test/certs/localhost/key.pem"),
		"httpPort":                freeTCPPort(t), // http-01 is not offered by autocert without its handler
		"tlsPort":                 tlsPort,
		"ocspResponderURL":        "",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":            "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description": "20 days: a renewBefore of 720h makes it due at once", "validityPeriod": 20 * 24 * 3600}},
	}}
	b, _ := json.Marshal(conf)
	cf := filepath.Join(t.TempDir(), "pebble.json")
	if err := os.WriteFile(cf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "env", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0",
		pebble, "-config", cf, "-dnsserver", "127.0.0.1:"+strconv.Itoa(dns))
	a := &acmeServer{dir: fmt.Sprintf("https://localhost:%d/dir", listen), mgmt: fmt.Sprintf("https://localhost:%d", mgmt),
		minica: filepath.Join(mod, "test/certs/pebble.minica.pem"), proc: p}
	// Ready when the directory answers.
	c := a.client(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := c.Get(a.dir)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a
			}
		}
		if time.Now().After(deadline) || p.exited() {
			t.Fatalf("pebble not ready: %v\n%s", err, tail(p.stdout.String()+p.stderr.String(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client trusts pebble's own HTTPS certificate.
func (a *acmeServer) client(t testing.TB) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(a.minica)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// roots returns a pool of the roots pebble issues under (made per run).
func (a *acmeServer) roots(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := a.client(t).Get(a.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	pem, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("pebble's root: %s %q", resp.Status, pem)
	}
	return pool
}

// acmeClient speaks HTTP/2 to httpAddr, asking for acmeDomain and
// trusting roots, one connection per request (a fresh handshake each).
func acmeClient(roots *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: acmeDomain},
		ForceAttemptHTTP2: true, DisableKeepAlives: true}}
}

// serial fetches url and returns the serial of the certificate it was
// served with and the response's protocol.
func servedSerial(t *testing.T, c *http.Client, url string) (string, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck // the status is what counts
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatalf("GET %s: %s, TLS %v", url, resp.Status, resp.TLS != nil)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.String(), resp.Proto
}

func TestACMEWithPebble(t *testing.T) {
	requireTool(t, "ffmpeg")
	httpPort := freeTCPPort(t)
	ac := startPebble(t, httpPort)
	roots := ac.roots(t)
	cache := filepath.Join(t.TempDir(), "acme")

	a := freeAddrs(t).Dynamic()
	a.HTTP = "127.0.0.1:" + strconv.Itoa(httpPort) // pebble validates here
	tlsSection := func(dirURL, renewBefore string) string {
		return fmt.Sprintf("tls:\n  acme:\n    domains: [%s]\n    email: ops@streamhub.test\n    directoryURL: %q\n    cacheDir: %q\n    caFile: %q\n    renewBefore: %s\n",
			acmeDomain, dirURL, cache, ac.minica, renewBefore)
	}
	// RTMPS and RTSPS take the same certificate (their addresses are
	// in this first config only: restart writes a's).
	conf := tlsConfigFor(t, a, "", "", tlsSection(ac.dir, "0s"))
	s, err := launchServer(t, conf, a)
	if err != nil {
		t.Fatalf("server did not start: %v\nlog:\n%s", err, tail(s.stderr.String(), 40))
	}
	s.extra = tlsSection(ac.dir, "0s") // what restart writes again
	pub := startPublisher(t, s.rtmpURL("live/acme"))
	hc := acmeClient(roots)
	base := "https://" + s.httpAddr
	t.Cleanup(func() {
		if t.Failed() {
			var keep []string
			for _, l := range strings.Split(s.stderr.String(), "\n") {
				if !strings.Contains(l, "missing certificate") {
					keep = append(keep, l)
				}
			}
			t.Logf("server log without the handshakes refused for want of a certificate:\n%s\npebble:\n%s", tail(strings.Join(keep, "\n"), 40), tail(ac.proc.stdout.String()+ac.proc.stderr.String(), 30))
		}
	})
	// The first handshake obtains the certificate (pebble checks
	// tls-alpn-01 on this listener meanwhile).
	waitLiveHTTPS(t, hc, base+"/live/acme.flv", pub)
	serial, proto := servedSerial(t, hc, base+"/live/acme/index.m3u8")
	if proto != "HTTP/2.0" {
		t.Errorf("LL-HLS over HTTPS: %s, want HTTP/2.0", proto)
	}
	if got := strings.Count(s.stderr.String(), "certificate obtained from the ACME server"); got != 1 {
		t.Errorf("%d certificates obtained, want 1", got)
	}
	if _, err := os.Stat(filepath.Join(cache, acmeDomain)); err != nil {
		t.Errorf("the certificate is not on disk: %v", err)
	}
	// RTMPS and RTSPS serve it too, verified for the name, and to a client
	// that names none (an IP address in its URL: ffmpeg, cameras).
	for _, addr := range []string{s.addrs.RTMPS, s.addrs.RTSPS} {
		for _, name := range []string{acmeDomain, ""} {
			tc := &tls.Config{RootCAs: roots, ServerName: name}
			if name == "" {
				tc = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // no name to verify; the serial is compared
			}
			c, err := tls.Dial("tcp", addr, tc)
			if err != nil {
				t.Errorf("TLS to %s as %q: %v", addr, name, err)
				continue
			}
			if got := c.ConnectionState().PeerCertificates[0].SerialNumber.String(); got != serial {
				t.Errorf("TLS to %s as %q: certificate %s, want %s", addr, name, got, serial)
			}
			c.Close()
		}
	}
	decode(t, "rtmps://"+s.addrs.RTMPS+"/live/acme", 2).check(t, 30, 30)

	// A restart reuses the certificate from disk: no ACME server at all.
	// (The publisher ends with the server: the home page answers from now.)
	ac.proc.kill()
	s.stop(t)
	s = s.restart(t)
	if got, _ := servedSerial(t, hc, base+"/"); got != serial {
		t.Errorf("after a restart: certificate %s, want the stored %s", got, serial)
	}
	if strings.Contains(s.stderr.String(), "certificate obtained") || strings.Contains(s.stderr.String(), "ACME failed") {
		t.Errorf("the restarted server asked the ACME server:\n%s", tail(s.stderr.String(), 20))
	}

	// A renewal is due (renewBefore 720h > the 20 days left) and the ACME
	// server first hangs, then fails: HTTPS goes on with the stored
	// certificate, and the failure is logged once.
	hung, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var calls sync.WaitGroup
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		defer calls.Done()
		once.Do(func() { close(hung); <-release })
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer fake.Close()
	defer calls.Wait()
	s.stop(t)
	s.extra = tlsSection(fake.URL+"/dir", "720h")
	s = s.restart(t)
	if got, _ := servedSerial(t, hc, base+"/"); got != serial { // starts the renewal
		t.Errorf("renewal due: certificate %s, want the stored %s", got, serial)
	}
	select {
	case <-hung:
	case <-time.After(20 * time.Second):
		t.Fatalf("no renewal attempt within 20 s:\n%s", tail(s.stderr.String(), 20))
	}
	for range 3 { // while the ACME server hangs
		if got, _ := servedSerial(t, hc, base+"/"); got != serial {
			t.Errorf("ACME server hanging: certificate %s, want the stored %s", got, serial)
		}
	}
	close(release)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(s.stderr.String(), "ACME failed") {
		if time.Now().After(deadline) {
			t.Fatalf("the ACME failure was not logged:\n%s", tail(s.stderr.String(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // the ACME client retries the 503s meanwhile
	for range 3 {
		if got, _ := servedSerial(t, hc, base+"/"); got != serial {
			t.Errorf("ACME server failing: certificate %s, want the stored %s", got, serial)
		}
	}
	if got := strings.Count(s.stderr.String(), "ACME failed"); got != 1 {
		t.Errorf("the ACME failure was logged %d times, want once:\n%s", got, tail(s.stderr.String(), 30))
	}
}
