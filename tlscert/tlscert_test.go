package tlscert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/acme/autocert"
)

// writeCert writes a self-signed certificate for name into certFile and
// keyFile, with a modification time of mod.
func writeCert(t *testing.T, certFile, keyFile, name string, mod time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	for f, b := range map[string][]byte{
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(f, mod, mod) //nolint:errcheck // the test's own file
	}
}

func served(t *testing.T, m *Manager) string {
	t.Helper()
	c, err := m.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

// TestFilesReread: a renewal that rewrites the files is served from the
// next check on; a file being rewritten (a key that does not match yet)
// keeps the certificate served.
func TestFilesReread(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, cf, kf, "one.example.com", time.Now().Add(-time.Minute))
	var logs bytes.Buffer
	m, err := New(Config{Cert: cf, Key: kf}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got := served(t, m); got != "one.example.com" {
		t.Fatalf("served %s", got)
	}
	writeCert(t, cf, kf, "two.example.com", time.Now())
	if got := served(t, m); got != "one.example.com" {
		t.Errorf("reread before the check is due: %s", got)
	}
	age := func() { fc := *m.files.Load(); fc.checked = time.Now().Add(-recheck); m.files.Store(&fc) }
	age()
	if got := served(t, m); got != "two.example.com" {
		t.Errorf("after the check: %s, want the new certificate", got)
	}
	os.WriteFile(kf, []byte("half a key"), 0o600)                            //nolint:errcheck // the test's own file
	os.Chtimes(kf, time.Now().Add(time.Second), time.Now().Add(time.Second)) //nolint:errcheck // as above
	age()
	if got := served(t, m); got != "two.example.com" {
		t.Errorf("with a broken key file: %s, want the old certificate kept", got)
	}
	if !strings.Contains(logs.String(), "cannot be read; keeping the old certificate") {
		t.Errorf("log:\n%s", logs.String())
	}
	if _, err := New(Config{Cert: cf, Key: kf}, slog.Default()); err == nil || !strings.Contains(err.Error(), "tls.cert") {
		t.Errorf("a broken key at start: %v, want an error naming tls.cert", err)
	}
}

type failingRT struct {
	mu  sync.Mutex
	err error
}

func (f *failingRT) RoundTrip(*http.Request) (*http.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable", Body: http.NoBody}, nil
}

// TestACMEFailureLoggedOnce: however many requests fail, one line per
// episode; a stored certificate ends the episode.
func TestACMEFailureLoggedOnce(t *testing.T) {
	var logs bytes.Buffer
	ep := &episode{log: slog.New(slog.NewTextHandler(&logs, nil))}
	rt := &watchTransport{rt: &failingRT{err: errors.New("connection refused")}, ep: ep}
	c := &http.Client{Transport: rt}
	for range 5 {
		if resp, err := c.Get("https://acme.example/dir"); err == nil {
			resp.Body.Close()
		}
	}
	rt.rt = &failingRT{} // 503s
	for range 5 {
		if resp, err := c.Get("https://acme.example/dir"); err == nil {
			resp.Body.Close()
		}
	}
	if n := strings.Count(logs.String(), "ACME failed"); n != 1 {
		t.Fatalf("%d failure lines, want 1:\n%s", n, logs.String())
	}
	cache := &watchCache{DirCache: autocertDir(t), ep: ep, log: ep.log}
	if err := cache.Put(t.Context(), "stream.example.com", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "ACME works again") || !strings.Contains(logs.String(), "failures=10") {
		t.Errorf("no end of the episode:\n%s", logs.String())
	}
	c.Get("https://acme.example/dir") //nolint:errcheck,bodyclose // a 503 without a body
	if n := strings.Count(logs.String(), "ACME failed"); n != 2 {
		t.Errorf("%d failure lines after a new episode, want 2", n)
	}
}

func autocertDir(t *testing.T) autocert.DirCache { return autocert.DirCache(t.TempDir()) }

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string // a key in the problems, "" = none
	}{
		{Config{}, ""},
		{Config{Cert: "a", Key: "b"}, ""},
		{Config{ACME: ACMEConfig{Domains: []string{"a.example.com"}, DirectoryURL: LetsEncrypt, CacheDir: "acme"}}, ""},
		{Config{Key: "b"}, "tls.cert"},
		{Config{ACME: ACMEConfig{Domains: []string{"A.example.com"}, DirectoryURL: LetsEncrypt, CacheDir: "acme"}}, "tls.acme.domains[0]"},
		{Config{ACME: ACMEConfig{Domains: []string{"a.example.com."}, DirectoryURL: LetsEncrypt, CacheDir: "acme"}}, "tls.acme.domains[0]"},
		{Config{ACME: ACMEConfig{Domains: []string{"a.example.com"}, DirectoryURL: "", CacheDir: "acme"}}, "tls.acme.directoryURL"},
	} {
		errs := tc.c.Validate("tls")
		var all []string
		for _, e := range errs {
			all = append(all, e.Error())
		}
		got := strings.Join(all, "; ")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%+v: %q, want a problem with %q", tc.c, got, tc.want)
		}
	}
}
