package main

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/streamhub/streamhub/cluster"
	"github.com/streamhub/streamhub/protocols/hls"
	"github.com/streamhub/streamhub/protocols/rtmp"
	"github.com/streamhub/streamhub/protocols/rtsp"
	"github.com/streamhub/streamhub/protocols/srt"
	"github.com/streamhub/streamhub/protocols/webrtc"
	"github.com/streamhub/streamhub/record"
	"github.com/streamhub/streamhub/registry"
	"github.com/streamhub/streamhub/server"
	"github.com/streamhub/streamhub/tlscert"
	"github.com/streamhub/streamhub/transcode"
	"github.com/streamhub/streamhub/web"
)

//go:embed config.yml
var defaultConfigYAML []byte

// Config is the whole configuration; its yaml names are the config keys.
type Config struct {
	Log LogConfig `yaml:"log"`
	// The protocols' sections are their packages' Config types, each with
	// its own Validate(prefix).
	RTMP rtmp.Config `yaml:"rtmp"`
	RTSP rtsp.Config `yaml:"rtsp"`
	SRT  srt.Config  `yaml:"srt"`
	HLS  hls.Config  `yaml:"hls"`
	HTTP HTTPConfig  `yaml:"http"`
	// Transcode is the FFmpeg ladder.
	Transcode transcode.Config `yaml:"transcode"`
	Streams   StreamsConfig    `yaml:"streams"`
	API       APIConfig        `yaml:"api"`
	Auth      AuthConfig       `yaml:"auth"`
	Web       WebConfig        `yaml:"web"`
	Limits    LimitsConfig     `yaml:"limits"`
	// WebRTC is WHIP ingest and WHEP playback.
	WebRTC webrtc.Config `yaml:"webrtc"`
	Paths  PathsConfig   `yaml:"paths"`
	// Record is where and how recorded paths are kept (package record).
	Record record.Config `yaml:"record"`
	// Cluster makes this node an origin or an edge of a cluster.
	Cluster cluster.Config `yaml:"cluster"`
	// TLS is the certificate of HTTPS, RTMPS and RTSPS: files or ACME.
	TLS tlscert.Config `yaml:"tls"`

	// resolved per-path settings, filled by loadConfig
	overrides []resolvedOverride
}

// LogConfig is the log: section.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// HTTPConfig is the http: section.
type HTTPConfig struct {
	Address      string        `yaml:"address"`
	WriteTimeout time.Duration `yaml:"writeTimeout"`
	// ReadTimeout bounds reading one request, headers and body.
	ReadTimeout time.Duration `yaml:"readTimeout"`
	// IdleTimeout closes a keep-alive connection with no request for
	// this long.
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	TLSCert     string        `yaml:"tlsCert"`
	TLSKey      string        `yaml:"tlsKey"`
}

// StreamsConfig is the streams: section: registered streams and keys.
type StreamsConfig struct {
	// Database is the file registered streams and their key hashes live
	// in, or a postgres:// URL: the PostgreSQL database every node of a
	// cluster shares.
	Database string `yaml:"database"`
	// DatabaseTimeout bounds every PostgreSQL query, the publish check's
	// included.
	DatabaseTimeout time.Duration `yaml:"databaseTimeout"`
	// Prefix is the path prefix of registered streams (live: live/<id>).
	Prefix string `yaml:"prefix"`
	// Open lets anyone publish on paths that are not registered streams
	// (a single-user setup); false asks every publisher for a stream key.
	Open bool `yaml:"open"`
}

// APIConfig is the api: section.
type APIConfig struct {
	// AdminToken guards the admin endpoints; "" allows them from the
	// server's own loopback address only.
	AdminToken string `yaml:"adminToken"`
	// PublicHost is the host put in the URLs the API hands out; "" takes
	// the request's.
	PublicHost string `yaml:"publicHost"`
}

// AuthConfig is the auth: section.
type AuthConfig struct {
	// HookURL, when set, is asked about every publisher and reader (POST
	// JSON {action, path, protocol, remote, query}; 2xx allows).
	HookURL     string        `yaml:"hookURL"`
	HookTimeout time.Duration `yaml:"hookTimeout"`
	// PlaySecret, when set, signs play links (POST /api/v1/sign): a reader
	// giving a valid token as its key needs no read key.
	PlaySecret string `yaml:"playSecret"`
	// SignedPlayOnly makes every reader need a signed link.
	SignedPlayOnly bool `yaml:"signedPlayOnly"`
	// FailureBudget is how many failed keys, passwords and tokens one
	// address may send per minute, over every protocol and the API,
	// before it is refused without a check; 0 = no limit.
	FailureBudget int `yaml:"failureBudget"`
}

// LimitsConfig is the limits: section: what one peer may hold.
type LimitsConfig struct {
	// MaxConnsPerAddress caps the connections one remote IP may hold open
	// on each TCP listener (RTMP, RTSP, HTTP); 0 = no cap.
	MaxConnsPerAddress int `yaml:"maxConnsPerAddress"`
}

// WebConfig is the web: section: the pages' chat.
type WebConfig struct {
	ChatHistory    int           `yaml:"chatHistory"`
	ChatMaxBytes   int           `yaml:"chatMaxBytes"`
	ChatRate       int           `yaml:"chatRate"`
	ChatRateWindow time.Duration `yaml:"chatRateWindow"`
	ChatMaxConns   int           `yaml:"chatMaxConns"`
}

// WebServerConfig returns the web package's Config (without the functions
// main adds).
func (c *Config) WebServerConfig() web.Config {
	w := c.Web
	out := web.Config{ChatHistory: w.ChatHistory, ChatMaxBytes: w.ChatMaxBytes, ChatRate: w.ChatRate,
		ChatRateWindow: w.ChatRateWindow, ChatMaxConns: w.ChatMaxConns, WebRTC: c.WebRTC.Enabled}
	for _, is := range c.WebRTC.ICEServers { // the pages' RTCPeerConnection, as in the Link headers
		out.ICEServers = append(out.ICEServers, web.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	return out
}

// WebRTCServerConfig returns the webrtc: section with the host names of
// webrtc.additionalHosts resolved.
func (c *Config) WebRTCServerConfig() (webrtc.Config, error) { return c.WebRTC.ResolveHosts() }

// PathsConfig is the paths: section.
type PathsConfig struct {
	Default   server.PathConfig `yaml:"default"`
	Overrides []PathOverride    `yaml:"overrides"`
}

// PathOverride is one entry of paths.overrides: a pattern and the keys it changes.
type PathOverride struct {
	Match             string `yaml:"match"`
	server.PathConfig `yaml:",inline"`
}

type resolvedOverride struct {
	m    *server.PathMatcher
	conf server.PathConfig
}

// loadConfig reads the embedded defaults and then, if data is not nil, the
// user's file on top (keys left out keep their defaults). Unknown keys are
// errors that name the key and its line. It does not validate.
func loadConfig(data []byte) (*Config, error) {
	c := &Config{}
	if err := decodeStrict(defaultConfigYAML, c); err != nil {
		return nil, fmt.Errorf("embedded config.yml: %w", err)
	}
	src := defaultConfigYAML
	if data != nil {
		c.Paths.Overrides = nil
		if err := decodeStrict(data, c); err != nil {
			return nil, err
		}
		src = data
	}
	// Each override starts from paths.default and takes only the keys it
	// gives: decode its node onto a copy of the default.
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	nodes := overrideNodes(&doc)
	for i := range c.Paths.Overrides {
		pc := c.Paths.Default
		if i < len(nodes) {
			if err := nodes[i].Decode(&pc); err != nil {
				return nil, fmt.Errorf("paths.overrides[%d]: %w", i, err)
			}
		}
		c.overrides = append(c.overrides, resolvedOverride{conf: pc})
	}
	c.Transcode.Normalize()
	return c, nil
}

func decodeStrict(data []byte, into any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil && !errors.Is(err, io.EOF) { // an empty file is no change
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// overrideNodes returns the mapping nodes of paths.overrides.
func overrideNodes(doc *yaml.Node) []*yaml.Node {
	find := func(m *yaml.Node, key string) *yaml.Node {
		if m == nil || m.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	ov := find(find(doc.Content[0], "paths"), "overrides")
	if ov == nil || ov.Kind != yaml.SequenceNode {
		return nil
	}
	return ov.Content
}

// Validate returns every problem, each naming its key and what is allowed.
func (c *Config) Validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error (got %q)", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "must be text or json (got %q)", c.Log.Format)
	}
	errs = append(errs, c.RTMP.Validate("rtmp")...)
	errs = append(errs, c.RTSP.Validate("rtsp")...)
	errs = append(errs, c.SRT.Validate("srt")...)
	errs = append(errs, c.WebRTC.Validate("webrtc")...)
	if c.HTTP.Address != "" {
		if _, port, err := net.SplitHostPort(c.HTTP.Address); err != nil || port == "" {
			bad("http.address", "must be HOST:PORT or :PORT, e.g. \":8080\", or empty to switch it off (got %q)", c.HTTP.Address)
		}
	}
	if c.HTTP.WriteTimeout < 100*time.Millisecond || c.HTTP.WriteTimeout > 10*time.Minute {
		bad("http.writeTimeout", "must be between 100ms and 10m (got %s)", c.HTTP.WriteTimeout)
	}
	errs = append(errs, c.HLS.Validate("hls")...)
	if (c.HTTP.TLSCert == "") != (c.HTTP.TLSKey == "") {
		bad("http.tlsCert", "give both http.tlsCert and http.tlsKey, or neither")
	}
	errs = append(errs, c.TLS.Validate("tls")...)
	if c.HTTP.TLSCert != "" && c.TLS.Enabled() {
		bad("http.tlsCert", "the certificate is set in tls: (tls.cert or tls.acme) already: move it there and empty http.tlsCert and http.tlsKey")
	}
	for _, l := range []struct{ key, addr string }{{"rtmp.tlsAddress", c.RTMP.TLSAddress}, {"rtsp.tlsAddress", c.RTSP.TLSAddress}} {
		if l.addr != "" && !c.TLSConfig().Enabled() {
			bad(l.key, "needs a certificate: set tls.cert and tls.key (PEM files), or tls.acme.domains")
		}
	}
	errs = append(errs, c.Paths.Default.Validate("paths.default")...)
	if c.Paths.Default.Source != "" {
		bad("paths.default.source", "a source belongs to one path: set it in an override whose match is that path")
	}
	for i := range c.overrides {
		at := fmt.Sprintf("paths.overrides[%d]", i)
		m, err := server.NewPathMatcher(c.Paths.Overrides[i].Match)
		if err != nil {
			bad(at+".match", "%v", err)
		}
		c.overrides[i].m = m
		errs = append(errs, c.overrides[i].conf.Validate(at)...)
		if c.overrides[i].conf.Source != "" && !isLiteralPath(c.Paths.Overrides[i].Match) {
			bad(at+".source", "needs a match that is one path, not a pattern (got %q)", c.Paths.Overrides[i].Match)
		}
	}
	errs = append(errs, c.Transcode.Validate("transcode")...)
	errs = append(errs, c.Record.Validate("record")...)
	errs = append(errs, c.Cluster.Validate("cluster")...)
	if c.Cluster.Enabled() && c.RTMP.Address == "" {
		bad("rtmp.address", "a node of a cluster relays over RTMP: give rtmp.address (cluster.role is %s)", c.Cluster.Role)
	}
	if strings.TrimSpace(c.Streams.Database) == "" {
		bad("streams.database", "name the database file of registered streams, e.g. streamhub.db, or a postgres:// URL")
	} else if registry.IsPostgres(c.Streams.Database) {
		if err := registry.CheckURL(c.Streams.Database); err != nil {
			bad("streams.database", "%v", err)
		}
	}
	if t := c.Streams.DatabaseTimeout; t < 100*time.Millisecond || t > time.Minute {
		bad("streams.databaseTimeout", "must be between 100ms and 1m (got %s)", t)
	}
	if err := server.ValidatePath(c.Streams.Prefix); err != nil || strings.Contains(c.Streams.Prefix, "/") {
		bad("streams.prefix", "must be one path segment of A-Z a-z 0-9 _ . -, e.g. live (got %q)", c.Streams.Prefix)
	}
	if t := c.API.AdminToken; t != "" && (len(t) < 16 || strings.ContainsAny(t, " \t\r\n")) {
		bad("api.adminToken", "must be empty (admin from localhost only) or at least 16 characters without spaces")
	}
	if err := c.WebServerConfig().Validate(); err != nil {
		// "web: ChatHistory must be ..." → "web.chatHistory: must be ..."
		for _, e := range strings.Split(err.Error(), "\n") {
			field, why, _ := strings.Cut(strings.TrimPrefix(e, "web: "), " ")
			if field != "" {
				field = strings.ToLower(field[:1]) + field[1:]
			}
			bad("web."+field, "%s", why)
		}
	}
	if c.Auth.HookURL != "" {
		if u, err := url.Parse(c.Auth.HookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("auth.hookURL", "must be an http:// or https:// URL (got %q)", server.RedactURL(c.Auth.HookURL))
		}
	}
	if c.Auth.HookTimeout < 100*time.Millisecond || c.Auth.HookTimeout > time.Minute {
		bad("auth.hookTimeout", "must be between 100ms and 1m (got %s)", c.Auth.HookTimeout)
	}
	if s := c.Auth.PlaySecret; s != "" && len(s) < 16 {
		bad("auth.playSecret", "must be empty (off) or at least 16 characters")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"http.readTimeout", c.HTTP.ReadTimeout}, {"http.idleTimeout", c.HTTP.IdleTimeout}} {
		if d.v < time.Second || d.v > time.Hour {
			bad(d.key, "must be between 1s and 1h (got %s)", d.v)
		}
	}
	if c.HTTP.ReadTimeout <= c.HLS.BlockTimeout {
		// net/http cancels a request once its read deadline passes, even
		// while the handler waits: a blocking playlist would end early.
		bad("http.readTimeout", "must be longer than hls.blockTimeout (%s), or blocking HLS requests are cut (got %s)", c.HLS.BlockTimeout, c.HTTP.ReadTimeout)
	}
	if c.Auth.FailureBudget < 0 {
		bad("auth.failureBudget", "must be 0 (no limit) or more failures per minute (got %d)", c.Auth.FailureBudget)
	}
	if c.Limits.MaxConnsPerAddress < 0 {
		bad("limits.maxConnsPerAddress", "must be 0 (no cap) or more (got %d)", c.Limits.MaxConnsPerAddress)
	}
	if c.Auth.SignedPlayOnly && c.Auth.PlaySecret == "" {
		bad("auth.signedPlayOnly", "needs auth.playSecret to sign the links with")
	}
	if strings.ContainsAny(c.API.PublicHost, "/ :?#@") && net.ParseIP(c.API.PublicHost) == nil {
		bad("api.publicHost", "must be a host name or IP address without scheme or port, e.g. stream.example.com (got %q)", c.API.PublicHost)
	}
	for i, pc := range append([]server.PathConfig{c.Paths.Default}, overrideConfs(c.overrides)...) {
		at := "paths.default"
		if i > 0 {
			at = fmt.Sprintf("paths.overrides[%d]", i-1)
		}
		for _, name := range pc.Ladder {
			if _, ok := c.Transcode.Rung(name); !ok {
				bad(at+".ladder", "%q is not a rung of transcode.ladder (it has %s)", name, strings.Join(c.rungNames(), ", "))
			}
		}
	}
	// The first match wins: an earlier override that matches a source's
	// path would hide the source without a word.
	for i, o := range c.overrides {
		if o.conf.Source == "" || !isLiteralPath(c.Paths.Overrides[i].Match) {
			continue
		}
		for j := range i {
			if m := c.overrides[j].m; m != nil && m.Match(c.Paths.Overrides[i].Match) {
				bad(fmt.Sprintf("paths.overrides[%d].source", i), "is never used: paths.overrides[%d] (match %q) comes first and matches %q; move this override above it",
					j, c.Paths.Overrides[j].Match, c.Paths.Overrides[i].Match)
				break
			}
		}
	}
	return errs
}

// isLiteralPath reports whether an override's match names one path.
func isLiteralPath(match string) bool {
	return server.ValidatePath(match) == nil && !strings.ContainsAny(match, "*?[]\\~")
}

// Recording reports whether paths.default or an override records.
func (c *Config) Recording() bool {
	if c.Paths.Default.Record {
		return true
	}
	for _, o := range c.overrides {
		if o.conf.Record {
			return true
		}
	}
	return false
}

// SourcePaths returns the paths whose override names a source.
func (c *Config) SourcePaths() []string {
	var out []string
	for i, o := range c.overrides {
		if o.conf.Source != "" {
			out = append(out, c.Paths.Overrides[i].Match)
		}
	}
	return out
}

// RTSPServerConfig returns the rtsp: section with the limits it applies.
func (c *Config) RTSPServerConfig() rtsp.Config {
	r := c.RTSP
	r.MaxConnsPerAddr = c.Limits.MaxConnsPerAddress
	return r
}

// RTMPServerConfig returns the rtmp: section with the limits it applies.
func (c *Config) RTMPServerConfig() rtmp.Config {
	r := c.RTMP
	r.MaxConnsPerAddr = c.Limits.MaxConnsPerAddress
	return r
}

// TLSConfig returns the tls: section, with http.tlsCert and http.tlsKey
// (the keys of older configs) as its files when they are set.
func (c *Config) TLSConfig() tlscert.Config {
	t := c.TLS
	if c.HTTP.TLSCert != "" {
		t.Cert, t.Key = c.HTTP.TLSCert, c.HTTP.TLSKey
	}
	return t
}

// HLSServerConfig returns the hls: section.
func (c *Config) HLSServerConfig() hls.Config { return c.HLS }

// SRTServerConfig returns the srt: section.
func (c *Config) SRTServerConfig() srt.Config { return c.SRT }

func overrideConfs(o []resolvedOverride) []server.PathConfig {
	out := make([]server.PathConfig, len(o))
	for i := range o {
		out[i] = o[i].conf
	}
	return out
}

func (c *Config) rungNames() []string {
	var out []string
	for _, r := range c.Transcode.Ladder {
		out = append(out, r.Name)
	}
	return out
}

// PathConfig returns the settings for path: the first matching override, or
// paths.default. A ladder rung (live/test/480p of a live/test whose ladder
// has 480p), and any <source>/<height>p where a publisher's own renditions
// go (OBS multitrack), has the settings of its source, keys included, with
// no ladder and no pull source of its own. Call it only after Validate returned no
// error.
func (c *Config) PathConfig(path string) server.PathConfig {
	if i := strings.LastIndexByte(path, '/'); i > 0 {
		// A rung, or the audio job's Opus companion (of a source or of a
		// rung): the source's keys and signed links, and no network
		// publisher while the source is live.
		source, name := path[:i], path[i+1:]
		if name == transcode.OpusRung {
			pc := c.PathConfig(source)
			pc.Transcode, pc.Ladder, pc.Source, pc.RungOf = server.TranscodeOff, nil, "", source
			pc.Record = false // the source's own audio is recorded already
			return pc
		}
		if c.isRung(source, name) || server.IsPublisherRungName(name) {
			pc := c.pathConfig(source)
			pc.Transcode, pc.Ladder, pc.Source, pc.RungOf = server.TranscodeOff, nil, "", source
			return pc
		}
	}
	return c.pathConfig(path)
}

// isRung reports whether name is a rung of source's ladder.
func (c *Config) isRung(source, name string) bool {
	for _, r := range c.LadderPlan(source).Rungs {
		if r.Name == name {
			return true
		}
	}
	return false
}

// LadderPlan returns the ladder of path: its mode and rungs. A rung has
// no ladder of its own.
func (c *Config) LadderPlan(path string) transcode.Plan {
	pc := c.PathConfig(path)
	p := transcode.Plan{Mode: pc.Transcode}
	if p.Mode == server.TranscodeOff {
		return p
	}
	for _, r := range c.Transcode.Ladder {
		if len(pc.Ladder) == 0 || slices.Contains(pc.Ladder, r.Name) {
			p.Rungs = append(p.Rungs, r)
		}
	}
	return p
}

// pathConfig is the first matching override, or paths.default.
func (c *Config) pathConfig(path string) server.PathConfig {
	for _, o := range c.overrides {
		if o.m != nil && o.m.Match(path) {
			return o.conf
		}
	}
	return c.Paths.Default
}

// readConfigFile loads and validates FILE, or the embedded default for "".
func readConfigFile(file string) (*Config, error) {
	var data []byte
	if file != "" {
		var err error
		if data, err = os.ReadFile(file); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	c, err := loadConfig(data)
	if err != nil {
		return nil, err
	}
	if errs := c.Validate(); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("config: %d problem(s):\n  %s", len(errs), strings.Join(msgs, "\n  "))
	}
	return c, nil
}
