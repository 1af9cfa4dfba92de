// Package tlscert gives the TLS listeners (HTTPS, RTMPS, RTSPS) their
// certificate: from PEM files, reread when they change (certbot renewing
// them), or from an ACME server (Let's Encrypt by default) through
// golang.org/x/crypto/acme/autocert, stored on disk and reused across
// restarts.
//
//	handshake ──GetCertificate──▶ files (reread when changed)
//	                          └──▶ autocert.Manager ──cache dir (cert, key, account)
//	                                     └──▶ ACME server (obtain; renew in the background)
//
// An ACME server that fails or hangs never stops a listener serving the
// certificate it has: autocert renews in the background and keeps the old
// one until a new one is stored. A failure is logged once until a
// certificate is obtained again.
package tlscert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/streamhub/streamhub/internal/conf"
	"github.com/streamhub/streamhub/internal/guard"
)

// LetsEncrypt is the ACME directory of Let's Encrypt (production).
const LetsEncrypt = autocert.DefaultACMEDirectory

// Config is the tls: section.
type Config struct {
	// Cert and Key are PEM files: the certificate chain (leaf first) and
	// its private key.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ACME obtains the certificate from an ACME server instead.
	ACME ACMEConfig `yaml:"acme"`
}

// ACMEConfig is the tls.acme: section.
type ACMEConfig struct {
	// Domains are the names a certificate is obtained for; none = ACME off.
	Domains []string `yaml:"domains"`
	// Email is the account's contact, told about expiring certificates.
	Email string `yaml:"email"`
	// DirectoryURL is the ACME server's directory.
	DirectoryURL string `yaml:"directoryURL"`
	// CacheDir keeps the account key and the certificates across restarts.
	CacheDir string `yaml:"cacheDir"`
	// CAFile, if set, is a PEM file of the CA that signed the ACME
	// server's own HTTPS certificate (a private ACME server), trusted on
	// top of the system's.
	CAFile string `yaml:"caFile"`
	// RenewBefore renews a certificate this long before it expires (at
	// most 30 days); 0 = a third of its lifetime.
	RenewBefore time.Duration `yaml:"renewBefore"`
}

// Enabled reports whether a certificate is configured.
func (c Config) Enabled() bool { return c.Cert != "" || len(c.ACME.Domains) > 0 }

// Validate returns the problems of the section at prefix ("tls"), each
// naming its key.
func (c *Config) Validate(prefix string) []error {
	p := conf.New(prefix)
	if (c.Cert == "") != (c.Key == "") {
		p.Bad("cert", "give both %s.cert and %s.key (PEM files), or neither", prefix, prefix)
	}
	a := c.ACME
	if c.Cert != "" && len(a.Domains) > 0 {
		p.Bad("acme.domains", "a certificate comes from files (%s.cert) or from ACME, not both: empty one of them", prefix)
	}
	for i, d := range a.Domains {
		// autocert refuses names without a dot (localhost) and IPs: an
		// ACME server issues for public DNS names only.
		if d != strings.ToLower(d) || !strings.Contains(strings.Trim(d, "."), ".") || strings.ContainsAny(d, " /:*@") ||
			strings.HasSuffix(d, ".") || isIP(d) {
			p.Bad(fmt.Sprintf("acme.domains[%d]", i), "must be a DNS name in lower case with a dot and no wildcard, e.g. stream.example.com (got %q)", d)
		}
	}
	if len(a.Domains) > 0 {
		if u, err := url.Parse(a.DirectoryURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.Bad("acme.directoryURL", "must be the https:// URL of an ACME directory, e.g. %s (got %q)", LetsEncrypt, a.DirectoryURL)
		}
		if strings.TrimSpace(a.CacheDir) == "" {
			p.Bad("acme.cacheDir", "name a directory for the account key and certificates, e.g. acme (they are reused across restarts)")
		}
		if a.Email != "" && (!strings.Contains(a.Email, "@") || strings.ContainsAny(a.Email, " \t\r\n")) {
			p.Bad("acme.email", "must be an email address or empty (got %q)", a.Email)
		}
	}
	if a.RenewBefore < 0 || a.RenewBefore > 30*24*time.Hour {
		p.Bad("acme.renewBefore", "must be between 0s (a third of the certificate's lifetime) and 720h (got %s)", a.RenewBefore)
	}
	return p.Errs()
}

func isIP(s string) bool {
	for _, r := range s {
		if (r < '0' || r > '9') && r != '.' {
			return false
		}
	}
	return true
}

// Manager gives certificates to TLS handshakes.
type Manager struct {
	log  *slog.Logger
	conf Config

	// files: the certificate read from Cert and Key, reread when they change
	files atomic.Pointer[fileCert]
	mu    sync.Mutex // mu serializes rereading the files

	acme     *autocert.Manager
	fallback string // the name a handshake without SNI gets a certificate for
	episode  episode
}

// fileCert is a certificate read from files, and when they were checked.
type fileCert struct {
	cert            *tls.Certificate
	certMod, keyMod time.Time
	checked         time.Time
}

// recheck is how often the files are looked at for a change.
const recheck = 30 * time.Second

// New returns a Manager for c (Enabled must be true): it reads the
// certificate files now, so that a wrong file is an error at start.
func New(c Config, log *slog.Logger) (*Manager, error) {
	m := &Manager{conf: c, log: log.With("component", "tls")}
	m.episode.log = m.log
	if c.Cert != "" {
		fc, err := readFiles(c.Cert, c.Key)
		if err != nil {
			return nil, err
		}
		m.files.Store(fc)
		return m, nil
	}
	a := c.ACME
	if err := os.MkdirAll(a.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("tls.acme.cacheDir: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.caFile: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme.caFile: %s holds no PEM certificate", a.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	client := &http.Client{Timeout: acmeRequestTimeout, Transport: &watchTransport{rt: tr, ep: &m.episode}}
	m.acme = &autocert.Manager{
		Prompt:      autocert.AcceptTOS,
		Cache:       &watchCache{DirCache: autocert.DirCache(a.CacheDir), ep: &m.episode, log: m.log},
		HostPolicy:  autocert.HostWhitelist(a.Domains...),
		RenewBefore: a.RenewBefore,
		Email:       a.Email,
		Client:      &acme.Client{DirectoryURL: a.DirectoryURL, HTTPClient: client, UserAgent: "streamhub"},
	}
	m.fallback = a.Domains[0]
	return m, nil
}

// acmeRequestTimeout bounds one request to the ACME server: a server that
// hangs fails the attempt (logged) instead of holding it for autocert's
// ten minutes.
const acmeRequestTimeout = 30 * time.Second

// readFiles reads a certificate and its key.
func readFiles(certFile, keyFile string) (*fileCert, error) {
	ci, err := os.Stat(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert: %w", err)
	}
	ki, err := os.Stat(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert, tls.key: %w", err)
	}
	return &fileCert{cert: &cert, certMod: ci.ModTime(), keyMod: ki.ModTime(), checked: time.Now()}, nil
}

// TLSConfig returns the configuration of a TLS listener whose application
// protocols are protos (e.g. "h2", "http/1.1"; none for RTMPS and RTSPS).
// With ACME it also answers the tls-alpn-01 challenge, on every listener
// (the ACME server validates on port 443, whichever listener is there).
// The caller may change the returned value.
func (m *Manager) TLSConfig(protos ...string) *tls.Config {
	c := &tls.Config{GetCertificate: m.GetCertificate, MinVersion: tls.VersionTLS12, NextProtos: protos}
	if m.acme != nil {
		// RTMP and RTSP clients offer no ALPN and connect all the same
		// (it is negotiated only when both sides offer it).
		c.NextProtos = append(c.NextProtos, acme.ALPNProto)
	}
	return c
}

// GetCertificate is the tls.Config hook: the files' certificate, or the
// ACME certificate of the name asked for (the first of tls.acme.domains
// when the client names none, as RTMP and RTSP clients given an IP do).
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if m.acme == nil {
		return m.fileCertificate(), nil
	}
	if hello.ServerName == "" {
		h := *hello
		h.ServerName = m.fallback
		hello = &h
	}
	cert, err := m.acme.GetCertificate(hello)
	if err != nil && !isPolicyError(err) {
		// Only a missing certificate gets here (a cached one is served
		// while its renewal fails): the ACME server failed to issue it.
		m.episode.fail(fmt.Errorf("no certificate for %s: %w", guard.Truncate(hello.ServerName), err))
	}
	return cert, err
}

// isPolicyError reports whether err is a handshake refused for its name
// (not one of tls.acme.domains, or no name): the client's mistake, not
// the ACME server's.
func isPolicyError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "not configured in HostWhitelist") || strings.Contains(s, "missing server name") ||
		strings.Contains(s, "server name component count invalid") || strings.Contains(s, "server name contains invalid character")
}

// fileCertificate returns the files' certificate, rereading them when
// they changed (checked at most every recheck). A file being rewritten
// (unreadable, or cert and key that do not match yet) keeps the old one.
func (m *Manager) fileCertificate() *tls.Certificate {
	fc := m.files.Load()
	if time.Since(fc.checked) < recheck || !m.mu.TryLock() {
		return fc.cert
	}
	defer m.mu.Unlock()
	fc = m.files.Load()
	next := *fc
	next.checked = time.Now()
	ci, err1 := os.Stat(m.conf.Cert)
	ki, err2 := os.Stat(m.conf.Key)
	if err1 == nil && err2 == nil && (!ci.ModTime().Equal(fc.certMod) || !ki.ModTime().Equal(fc.keyMod)) {
		if nc, err := readFiles(m.conf.Cert, m.conf.Key); err != nil {
			m.log.Warn("certificate files changed but cannot be read; keeping the old certificate", "cause", err)
		} else {
			next = *nc
			m.log.Info("certificate files reread", "cert", m.conf.Cert)
		}
	}
	m.files.Store(&next)
	return next.cert
}

// episode logs the first ACME failure of an episode, which ends when a
// certificate is stored: a server that keeps failing is one log line,
// however many handshakes and renewals try it.
type episode struct {
	log     *slog.Logger
	failing atomic.Bool
	n       atomic.Int64 // failures in this episode
}

func (e *episode) fail(err error) {
	e.n.Add(1)
	if e.failing.CompareAndSwap(false, true) {
		e.log.Error("ACME failed; certificates already obtained are served until it works again (logged once until then)",
			"cause", guard.Truncate(err.Error()))
	}
}

func (e *episode) ok(what string) {
	if e.failing.CompareAndSwap(true, false) {
		e.log.Info("ACME works again", "after", what, "failures", e.n.Swap(0))
	}
}

// watchTransport tells the episode about requests to the ACME server that
// fail or end in a server error.
type watchTransport struct {
	rt http.RoundTripper
	ep *episode
}

func (w *watchTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := w.rt.RoundTrip(req)
	switch {
	case err != nil:
		w.ep.fail(fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err))
	case resp.StatusCode >= 500:
		w.ep.fail(fmt.Errorf("%s %s: %s", req.Method, req.URL.Redacted(), resp.Status))
	}
	return resp, err
}

// watchCache is the cache directory; a certificate stored in it ends a
// failure episode and is logged.
type watchCache struct {
	autocert.DirCache
	ep  *episode
	log *slog.Logger
}

func (c *watchCache) Put(ctx context.Context, name string, data []byte) error {
	err := c.DirCache.Put(ctx, name, data)
	if err == nil && !strings.HasSuffix(name, "+token") && !strings.HasPrefix(name, "acme_account") {
		c.log.Info("certificate obtained from the ACME server and stored", "name", strings.TrimSuffix(name, "+rsa"), "dir", string(c.DirCache))
		c.ep.ok("a certificate was stored")
	}
	return err
}

var _ autocert.Cache = (*watchCache)(nil)
