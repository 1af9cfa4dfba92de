package transcode

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/streamhub/streamhub/server"
)

// Modes of a path's ladder (paths.*.transcode), as the hub's path
// settings name them.
const (
	// ModeOff runs no ladder for the path.
	ModeOff = server.TranscodeOff
	// ModeOnDemand starts the ladder when a rung or the multivariant
	// playlist is first asked for, and stops it after Config.IdleTimeout
	// without readers of any rung.
	ModeOnDemand = server.TranscodeOnDemand
	// ModeAlways runs the ladder as long as the path is published.
	ModeAlways = server.TranscodeAlways
)

// Encoders a rung may use.
const (
	EncoderX264  = "libx264"
	EncoderNVENC = "h264_nvenc"
	EncoderVAAPI = "h264_vaapi"
	EncoderQSV   = "h264_qsv"
)

// Config is the transcode: section.
type Config struct {
	// FFmpeg is the binary: a name looked up in PATH, or a path.
	FFmpeg string `yaml:"ffmpeg"`
	// Threads bounds FFmpeg's threads per encoder and for the filters; 0
	// lets FFmpeg choose (one per core).
	Threads int `yaml:"threads"`
	// IdleTimeout stops an on-demand ladder nobody has read for this long.
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// Watchdog restarts a worker that has been fed but produced nothing
	// for this long.
	Watchdog time.Duration `yaml:"watchdog"`
	// MaxWorkers caps the FFmpeg processes (one per source with a ladder);
	// 0 means no cap.
	MaxWorkers int `yaml:"maxWorkers"`
	// VAAPIDevice is the render node h264_vaapi encodes on.
	VAAPIDevice string `yaml:"vaapiDevice"`
	// Ladder lists the rungs, from the highest; rungs at or above the
	// source's height are skipped for that source.
	Ladder []Rung `yaml:"ladder"`
}

// Rung is one rendition of the ladder.
type Rung struct {
	// Name is the last segment of the rung's path: live/test/480p.
	Name string `yaml:"name"`
	// Height in pixels; the width keeps the source's aspect (even).
	Height int `yaml:"height"`
	// VideoBitrate is the average video bitrate; MaxRate and BufSize bound
	// it (VBV), 0 meaning 1.1× and 2× VideoBitrate.
	VideoBitrate Bitrate `yaml:"videoBitrate"`
	MaxRate      Bitrate `yaml:"maxrate"`
	BufSize      Bitrate `yaml:"bufsize"`
	// AudioBitrate is the AAC bitrate of the rung's audio.
	AudioBitrate Bitrate `yaml:"audioBitrate"`
	// Preset is the encoder's speed preset (libx264: ultrafast ... veryslow).
	Preset string `yaml:"preset"`
	// Encoder is libx264 (the default), h264_nvenc, h264_vaapi or h264_qsv.
	Encoder string `yaml:"encoder"`
}

// maxRate returns MaxRate or its default.
func (r Rung) maxRate() Bitrate {
	if r.MaxRate > 0 {
		return r.MaxRate
	}
	return r.VideoBitrate * 11 / 10
}

// bufSize returns BufSize or its default.
func (r Rung) bufSize() Bitrate {
	if r.BufSize > 0 {
		return r.BufSize
	}
	return r.VideoBitrate * 2
}

// Bandwidth is the rung's peak bits per second (video maxrate and audio),
// for the multivariant playlist's BANDWIDTH.
func (r Rung) Bandwidth() int { return int(r.maxRate() + r.AudioBitrate) }

// AverageBandwidth is the rung's average bits per second.
func (r Rung) AverageBandwidth() int { return int(r.VideoBitrate + r.AudioBitrate) }

// Bitrate is bits per second, written 4500k, 2.5M or 800000.
type Bitrate int64

var bitrateRe = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([kKmM]?)$`)

// ParseBitrate parses 4500k, 2.5M or 800000.
func ParseBitrate(s string) (Bitrate, error) {
	m := bitrateRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("bitrate %q: write it as 4500k, 2.5M or 800000 (bits per second)", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, err
	}
	switch m[2] {
	case "k", "K":
		v *= 1e3
	case "m", "M":
		v *= 1e6
	}
	return Bitrate(v), nil
}

// UnmarshalYAML takes 4500k, 2.5M or a number.
func (b *Bitrate) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseBitrate(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// MarshalYAML writes the bitrate in k.
func (b Bitrate) MarshalYAML() (any, error) { return b.String(), nil }

// String writes the bitrate as FFmpeg takes it (2500k).
func (b Bitrate) String() string {
	if b%1000 == 0 {
		return strconv.FormatInt(int64(b)/1000, 10) + "k"
	}
	return strconv.FormatInt(int64(b), 10)
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,31}$`)

// Validate returns every problem of the section at prefix ("transcode"),
// each naming its key.
func (c *Config) Validate(prefix string) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, key, fmt.Sprintf(format, args...)))
	}
	if strings.TrimSpace(c.FFmpeg) == "" {
		bad("ffmpeg", "name the FFmpeg binary (\"ffmpeg\", or a path such as /usr/bin/ffmpeg)")
	}
	if c.Threads < 0 || c.Threads > 64 {
		bad("threads", "must be between 0 (FFmpeg chooses) and 64 (got %d)", c.Threads)
	}
	if c.MaxWorkers < 0 {
		bad("maxWorkers", "must be 0 (no cap) or more (got %d)", c.MaxWorkers)
	}
	if c.IdleTimeout < time.Second || c.IdleTimeout > time.Hour {
		bad("idleTimeout", "must be between 1s and 1h (got %s)", c.IdleTimeout)
	}
	if c.Watchdog < 2*time.Second || c.Watchdog > 5*time.Minute {
		bad("watchdog", "must be between 2s and 5m (got %s)", c.Watchdog)
	}
	seen := map[string]bool{}
	for i, r := range c.Ladder {
		at := fmt.Sprintf("ladder[%d]", i)
		switch {
		case !nameRe.MatchString(r.Name) || r.Name == "index" || r.Name == "stream":
			bad(at+".name", "must be 1-32 characters of A-Z a-z 0-9 _ . - (not index or stream), e.g. 480p (got %q)", r.Name)
		case seen[r.Name]:
			bad(at+".name", "%q is used twice", r.Name)
		}
		seen[r.Name] = true
		if r.Height < 64 || r.Height > 4320 || r.Height%2 != 0 {
			bad(at+".height", "must be an even number of pixels from 64 to 4320 (got %d)", r.Height)
		}
		if r.VideoBitrate < 50e3 || r.VideoBitrate > 100e6 {
			bad(at+".videoBitrate", "must be between 50k and 100M (got %s)", r.VideoBitrate)
		}
		if r.MaxRate != 0 && r.MaxRate < r.VideoBitrate {
			bad(at+".maxrate", "must be at least videoBitrate, or 0 for 1.1× it (got %s)", r.MaxRate)
		}
		if r.BufSize < 0 {
			bad(at+".bufsize", "must be positive, or 0 for 2× videoBitrate (got %s)", r.BufSize)
		}
		if r.AudioBitrate < 16e3 || r.AudioBitrate > 512e3 {
			bad(at+".audioBitrate", "must be between 16k and 512k (got %s)", r.AudioBitrate)
		}
		switch r.Encoder {
		case EncoderX264, EncoderNVENC, EncoderVAAPI, EncoderQSV:
		default:
			bad(at+".encoder", "must be libx264, h264_nvenc, h264_vaapi or h264_qsv (got %q)", r.Encoder)
		}
		if r.Preset == "" || strings.ContainsAny(r.Preset, " \t\n") {
			bad(at+".preset", "must name the encoder's preset, e.g. veryfast for libx264, p4 for h264_nvenc (got %q)", r.Preset)
		}
	}
	return errs
}

// Rung returns the rung named name, if the ladder has it.
func (c *Config) Rung(name string) (Rung, bool) {
	for _, r := range c.Ladder {
		if r.Name == name {
			return r, true
		}
	}
	return Rung{}, false
}

// Normalize fills what a rung leaves out: libx264, preset veryfast for
// libx264 (p4 for NVENC, medium otherwise), 128k audio.
func (c *Config) Normalize() {
	for i := range c.Ladder {
		r := &c.Ladder[i]
		if r.Encoder == "" {
			r.Encoder = EncoderX264
		}
		if r.Preset == "" {
			switch r.Encoder {
			case EncoderX264:
				r.Preset = "veryfast"
			case EncoderNVENC:
				r.Preset = "p4"
			default:
				r.Preset = "medium"
			}
		}
		if r.AudioBitrate == 0 {
			r.AudioBitrate = 128e3
		}
	}
}
