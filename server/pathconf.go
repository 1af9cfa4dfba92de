package server

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/streamhub/streamhub/gopcache"
)

// Join modes: where a new reader starts.
const (
	// JoinCache starts a reader at the cached keyframe: a picture at once.
	JoinCache = "cache"
	// JoinLive starts a reader at the next keyframe: no backlog, but a wait of
	// up to one GOP.
	JoinLive = "live"
)

// PathConfig holds what users tune per stream. The yaml names are the config
// file's keys under paths.default and paths.overrides[].
type PathConfig struct {
	GOPCache GOPCacheConfig `yaml:"gopCache"`
	// Join is JoinCache or JoinLive.
	Join string `yaml:"join"`
	// CatchUp, when > 0 with JoinCache, retimes the cached GOP a reader gets
	// so that a player runs through it within CatchUp (a short fast-forward)
	// and then plays about CatchUp behind live, instead of as far behind as
	// the cached keyframe is old (up to a GOP). Cached audio older than
	// CatchUp is skipped.
	CatchUp time.Duration `yaml:"catchUp"`
	// ReaderQueue is how many units a reader may fall behind before it drops
	// to the next keyframe. Rounded up to a power of two.
	ReaderQueue int `yaml:"readerQueue"`
	// ReaderLagBound closes a reader that keeps dropping and has not caught up
	// with live for this long.
	ReaderLagBound time.Duration `yaml:"readerLagBound"`
	// GracePeriod keeps readers attached after the publisher leaves; a new
	// publisher within it continues the stream for them.
	GracePeriod time.Duration `yaml:"gracePeriod"`
	// BatchInterval and BatchReaders trade a little delay for much less CPU
	// on streams with many readers: once a stream has BatchReaders readers,
	// each of them returns from NextBatch at most once per BatchInterval, so
	// it writes bigger batches with fewer syscalls (each reader on its own
	// phase, so the load stays even). Below BatchReaders, or with
	// BatchInterval 0, a reader wakes for every picture.
	BatchInterval time.Duration `yaml:"batchInterval"`
	BatchReaders  int           `yaml:"batchReaders"`
	// MaxReaders caps the readers of the path; 0 means no cap.
	MaxReaders int `yaml:"maxReaders"`
	// PublishKey, when set, must be given by a publisher (?key=... or, over
	// RTSP, as the password).
	PublishKey string `yaml:"publishKey"`
	// ReadKey, when set, must be given by every reader the same way.
	ReadKey string `yaml:"readKey"`
	// SRTPublishPassphrase and SRTReadPassphrase, when set, encrypt SRT
	// publishers and readers of the path: a caller must use this
	// passphrase (10 to 79 characters); one without encryption is refused.
	SRTPublishPassphrase string `yaml:"srtPublishPassphrase"`
	SRTReadPassphrase    string `yaml:"srtReadPassphrase"`

	// Source, when set, is pulled into the path instead of waiting for a
	// publisher: rtsp://[user:pass@]host[:port]/path (an IP camera, another
	// server). Only in an override whose match is one literal path.
	Source string `yaml:"source"`
	// SourceOnDemand starts the pull when the first reader asks and stops it
	// SourceIdleTimeout after the last reader left; false pulls always.
	SourceOnDemand    bool          `yaml:"sourceOnDemand"`
	SourceIdleTimeout time.Duration `yaml:"sourceIdleTimeout"`
	// SourceTransport is how RTP comes from the source: tcp, udp, or auto
	// (udp, falling back to tcp).
	SourceTransport string `yaml:"sourceTransport"`

	// Transcode is the path's bitrate ladder: TranscodeOff,
	// TranscodeOnDemand or TranscodeAlways.
	Transcode string `yaml:"transcode"`
	// Ladder names the rungs of transcode.ladder the path gets; empty means
	// all of them.
	Ladder []string `yaml:"ladder"`

	// Standby is StandbyOff, StandbyTakeover or StandbyFailback: whether
	// a second publisher with the path's key waits as a hot standby and
	// takes over when the live one leaves (standby.go).
	Standby string `yaml:"standby"`
	// StandbyTimeout, with Standby on, lets a standby take over from a live
	// publisher that sent nothing for this long while the standby sends (a
	// stalled encoder or link whose connection has not ended yet); 0 waits
	// for the connection to end (the protocol's read timeout).
	StandbyTimeout time.Duration `yaml:"standbyTimeout"`
	// Record keeps the path on disk as fMP4 segments (the record: section
	// says where and how; package record does it).
	Record bool `yaml:"record"`
	// RewindWindow is how far back the watch page lets a viewer seek in
	// the recording (0: no rewind).
	RewindWindow time.Duration `yaml:"rewindWindow"`

	// RungOf is set (not by the file: by the config resolution) on a path
	// that is a rung of another path's ladder (live/x/480p of live/x):
	// while live/x is published, only its ladder may publish here.
	RungOf string `yaml:"-"`
}

// Ladder modes (PathConfig.Transcode).
const (
	// TranscodeOff runs no ladder.
	TranscodeOff = "off"
	// TranscodeOnDemand starts the ladder when a rung or the multivariant
	// playlist is first asked for and stops it when no one reads a rung.
	TranscodeOnDemand = "onDemand"
	// TranscodeAlways runs the ladder while the path is published.
	TranscodeAlways = "always"
)

// Source transports (PathConfig.SourceTransport).
const (
	SourceTCP  = "tcp"
	SourceUDP  = "udp"
	SourceAuto = "auto"
)

// GOPCacheConfig bounds the GOP cache of a stream.
type GOPCacheConfig struct {
	MaxFrames       int           `yaml:"maxFrames"`
	MaxBytes        ByteSize      `yaml:"maxBytes"`
	AudioOnlyWindow time.Duration `yaml:"audioOnlyWindow"`
	// Backlog keeps earlier GOPs so that the cache reaches this far back,
	// for readers that need that much media at once (ReadOptions.Backlog).
	Backlog time.Duration `yaml:"backlog"`
}

// Limits returns the gopcache limits.
func (g GOPCacheConfig) Limits() gopcache.Limits {
	return gopcache.Limits{MaxFrames: g.MaxFrames, MaxBytes: int(g.MaxBytes), AudioOnlyWindow: g.AudioOnlyWindow, Backlog: g.Backlog}
}

// Validate returns an error naming the key (prefixed by at) and what is allowed.
func (c *PathConfig) Validate(at string) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", at, key, fmt.Sprintf(format, args...)))
	}
	if c.GOPCache.MaxFrames < 1 || c.GOPCache.MaxFrames > 100000 {
		bad("gopCache.maxFrames", "must be between 1 and 100000 (got %d)", c.GOPCache.MaxFrames)
	}
	if c.GOPCache.MaxBytes < 64<<10 || c.GOPCache.MaxBytes > 1<<30 {
		bad("gopCache.maxBytes", "must be between 64KiB and 1GiB (got %d bytes)", int64(c.GOPCache.MaxBytes))
	}
	if c.GOPCache.AudioOnlyWindow < 0 || c.GOPCache.AudioOnlyWindow > 30*time.Second {
		bad("gopCache.audioOnlyWindow", "must be between 0s and 30s (got %s)", c.GOPCache.AudioOnlyWindow)
	}
	if c.GOPCache.Backlog < 0 || c.GOPCache.Backlog > time.Minute {
		bad("gopCache.backlog", "must be between 0s and 1m (got %s)", c.GOPCache.Backlog)
	}
	if c.Join != JoinCache && c.Join != JoinLive {
		bad("join", "must be %q or %q (got %q)", JoinCache, JoinLive, c.Join)
	}
	if c.CatchUp < 0 || c.CatchUp > 10*time.Second {
		bad("catchUp", "must be between 0s (off) and 10s (got %s)", c.CatchUp)
	}
	if c.ReaderQueue < 16 || c.ReaderQueue > 1<<16 {
		bad("readerQueue", "must be between 16 and 65536 units (got %d)", c.ReaderQueue)
	}
	if c.ReaderLagBound < time.Second || c.ReaderLagBound > 10*time.Minute {
		bad("readerLagBound", "must be between 1s and 10m (got %s)", c.ReaderLagBound)
	}
	if c.GracePeriod < 0 || c.GracePeriod > time.Hour {
		bad("gracePeriod", "must be between 0s and 1h (got %s)", c.GracePeriod)
	}
	if c.BatchInterval < 0 || c.BatchInterval > time.Second {
		bad("batchInterval", "must be between 0s (off) and 1s (got %s)", c.BatchInterval)
	}
	if c.BatchReaders < 1 {
		bad("batchReaders", "must be 1 or more (got %d)", c.BatchReaders)
	}
	if c.MaxReaders < 0 {
		bad("maxReaders", "must be 0 (no cap) or more (got %d)", c.MaxReaders)
	}
	for _, k := range []struct{ key, v string }{{"publishKey", c.PublishKey}, {"readKey", c.ReadKey}} {
		if strings.ContainsAny(k.v, " \t\r\n&?#/:@%") {
			bad(k.key, "must not contain spaces or any of & ? # / : @ %% (it travels in a URL query or as a password)")
		}
	}
	for _, k := range []struct{ key, v string }{{"srtPublishPassphrase", c.SRTPublishPassphrase}, {"srtReadPassphrase", c.SRTReadPassphrase}} {
		if k.v != "" && (len(k.v) < 10 || len(k.v) > 79) {
			bad(k.key, "must be 10 to 79 characters, the SRT rule (got %d)", len(k.v))
		}
	}
	if c.Source != "" {
		if u, err := url.Parse(c.Source); err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" {
			bad("source", "must be an rtsp:// or rtsps:// URL with a host, e.g. rtsp://user:pass@camera:554/stream (got %q)", RedactURL(c.Source))
		}
	}
	if c.SourceIdleTimeout < time.Second || c.SourceIdleTimeout > time.Hour {
		bad("sourceIdleTimeout", "must be between 1s and 1h (got %s)", c.SourceIdleTimeout)
	}
	switch c.SourceTransport {
	case SourceTCP, SourceUDP, SourceAuto:
	default:
		bad("sourceTransport", "must be %q, %q or %q (got %q)", SourceTCP, SourceUDP, SourceAuto, c.SourceTransport)
	}
	switch c.Transcode {
	case TranscodeOff, TranscodeOnDemand, TranscodeAlways:
	default:
		bad("transcode", "must be %q, %q or %q (got %q)", TranscodeOff, TranscodeOnDemand, TranscodeAlways, c.Transcode)
	}
	switch c.Standby {
	case StandbyOff, StandbyTakeover, StandbyFailback:
	default:
		bad("standby", "must be %q, %q or %q (got %q)", StandbyOff, StandbyTakeover, StandbyFailback, c.Standby)
	}
	if c.StandbyTimeout != 0 && (c.StandbyTimeout < 100*time.Millisecond || c.StandbyTimeout > time.Minute) {
		bad("standbyTimeout", "must be 0s (off) or between 100ms and 1m (got %s)", c.StandbyTimeout)
	}
	if c.RewindWindow < 0 || c.RewindWindow > 24*time.Hour {
		bad("rewindWindow", "must be between 0s (off) and 24h (got %s)", c.RewindWindow)
	}
	return errs
}

// DefaultPathConfig returns the built-in per-path defaults (the same values
// config.yml documents).
func DefaultPathConfig() PathConfig {
	return PathConfig{
		GOPCache: GOPCacheConfig{MaxFrames: 1200, MaxBytes: 32 << 20, AudioOnlyWindow: 500 * time.Millisecond,
			Backlog: 6 * time.Second},
		Join:           JoinCache,
		CatchUp:        100 * time.Millisecond,
		ReaderQueue:    1024,
		ReaderLagBound: 10 * time.Second,
		GracePeriod:    5 * time.Second,
		BatchInterval:  100 * time.Millisecond,
		BatchReaders:   500,

		SourceIdleTimeout: 10 * time.Second,
		SourceTransport:   SourceTCP,
		Transcode:         TranscodeOnDemand,
		Standby:           StandbyOff,
		StandbyTimeout:    time.Second,
		RewindWindow:      30 * time.Minute,
	}
}

// RedactURL returns u with its password replaced, for logs and errors.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		if i := strings.LastIndex(u, "@"); i >= 0 {
			return "***" + u[i:]
		}
		return u
	}
	return p.Redacted()
}

// PathMatcher matches a path name against a pattern: a glob as in path.Match
// ("live/*"), or a regular expression when the pattern starts with "~"
// ("~^cam[0-9]+$").
type PathMatcher struct {
	pattern string
	re      *regexp.Regexp
}

// NewPathMatcher compiles pattern, returning an error that says what is wrong.
func NewPathMatcher(pattern string) (*PathMatcher, error) {
	if pattern == "" {
		return nil, fmt.Errorf("empty pattern: use a glob such as live/* or a regexp such as ~^live/.+$")
	}
	m := &PathMatcher{pattern: pattern}
	if re, ok := strings.CutPrefix(pattern, "~"); ok {
		var err error
		if m.re, err = regexp.Compile(re); err != nil {
			return nil, fmt.Errorf("bad regular expression %q: %w", re, err)
		}
		return m, nil
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("bad glob %q: %w", pattern, err)
	}
	return m, nil
}

// Match reports whether name matches.
func (m *PathMatcher) Match(name string) bool {
	if m.re != nil {
		return m.re.MatchString(name)
	}
	ok, _ := path.Match(m.pattern, name)
	return ok
}

// ByteSize is a size in bytes that the config may write as 33554432, "32MiB",
// "512KiB", "1GiB" or "64MB".
type ByteSize int64

// UnmarshalYAML parses a size from a config file and names the line of a bad one.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if err := b.UnmarshalText([]byte(n.Value)); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// UnmarshalText parses a size with an optional unit (B, KB, KiB, MB, MiB, GB, GiB).
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	units := []struct {
		suffix string
		mul    int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mul := int64(1)
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mul = strings.TrimSpace(v), u.mul
			break
		}
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || fmt.Sprint(n) != s || n < 0 {
		return fmt.Errorf("invalid size %q: write a whole number with an optional unit, e.g. 32MiB", string(text))
	}
	*b = ByteSize(n * mul)
	return nil
}
