package record

import (
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/streamhub/streamhub/internal/conf"
	"github.com/streamhub/streamhub/server"
)

// Config is the record: section. Which paths are recorded is per path
// (paths.*.record); this section says where and how.
type Config struct {
	// Directory holds the recordings and their index; nothing is read or
	// written outside it.
	Directory string `yaml:"directory"`
	// PathFormat names a segment's file under Directory, without the
	// .mp4 extension: %path is the stream path, %Y %m %d %H %M %S the
	// start time (UTC) and %f its microseconds.
	PathFormat string `yaml:"pathFormat"`
	// SegmentDuration is how long a segment grows before it is cut at the
	// next keyframe.
	SegmentDuration time.Duration `yaml:"segmentDuration"`
	// FragmentDuration is how much media each fragment (moof+mdat) holds:
	// what a crash can lose at most.
	FragmentDuration time.Duration `yaml:"fragmentDuration"`
	// MaxAge deletes segments that ended longer ago; 0 keeps them.
	MaxAge time.Duration `yaml:"maxAge"`
	// DiskBudget deletes the oldest segments while the recordings take
	// more; 0 means no budget.
	DiskBudget server.ByteSize `yaml:"diskBudget"`
	// OnSegmentComplete runs a command or posts to a URL when a segment is
	// complete (for an upload).
	OnSegmentComplete HookConfig `yaml:"onSegmentComplete"`
	// WriteTimeout bounds each write of a download (http.writeTimeout,
	// filled by main): a download of hours is not bounded as a whole, but
	// a client that stops reading is dropped.
	WriteTimeout time.Duration `yaml:"-"`
}

// HookConfig is record.onSegmentComplete.
type HookConfig struct {
	// Command is an argv (never a shell) whose arguments may use
	// {path}, {file} (absolute), {start} (RFC 3339) and {duration}
	// (seconds); empty runs nothing.
	Command []string `yaml:"command"`
	// URL gets a POST with a JSON body describing the segment; empty
	// posts nothing.
	URL string `yaml:"url"`
	// Timeout bounds one command or POST.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultConfig returns the built-in defaults (those config.yml documents).
func DefaultConfig() Config {
	return Config{Directory: "recordings", PathFormat: "%path/%Y-%m-%d_%H-%M-%S-%f",
		SegmentDuration: time.Hour, FragmentDuration: time.Second,
		OnSegmentComplete: HookConfig{Timeout: time.Minute}}
}

// Validate returns every problem, each naming its key under prefix.
func (c *Config) Validate(prefix string) []error {
	p := conf.New(prefix)
	if strings.TrimSpace(c.Directory) == "" {
		p.Bad("directory", "name the directory that holds the recordings, e.g. recordings")
	}
	if err := checkPathFormat(c.PathFormat); err != nil {
		p.Bad("pathFormat", "%v (got %q)", err, c.PathFormat)
	}
	p.Duration("segmentDuration", c.SegmentDuration, time.Second, 24*time.Hour)
	p.Duration("fragmentDuration", c.FragmentDuration, 200*time.Millisecond, 10*time.Second)
	if c.MaxAge != 0 && c.MaxAge < time.Minute {
		p.Bad("maxAge", "must be 0s (keep) or at least 1m (got %s)", c.MaxAge)
	}
	if c.DiskBudget != 0 && c.DiskBudget < 16<<20 {
		p.Bad("diskBudget", "must be 0 (no budget) or at least 16MiB (got %d bytes)", int64(c.DiskBudget))
	}
	h := c.OnSegmentComplete
	if h.URL != "" {
		if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.Bad("onSegmentComplete.url", "must be an http:// or https:// URL (got %q)", server.RedactURL(h.URL))
		}
	}
	if len(h.Command) > 0 && strings.TrimSpace(h.Command[0]) == "" {
		p.Bad("onSegmentComplete.command", "the first element is the program to run, e.g. [/usr/local/bin/upload, \"{file}\"]")
	}
	p.Duration("onSegmentComplete.timeout", h.Timeout, time.Second, time.Hour)
	return p.Errs()
}

// checkPathFormat makes sure a template gives one relative file name per
// segment: it names the path and the time to the second, and nothing in it
// climbs out of the directory.
func checkPathFormat(f string) error {
	for _, v := range []string{"%path", "%Y", "%m", "%d", "%H", "%M", "%S"} {
		if !strings.Contains(f, v) {
			return fmt.Errorf("must contain %s (the template needs the stream path and the time to the second, e.g. %%path/%%Y-%%m-%%d_%%H-%%M-%%S-%%f)", v)
		}
	}
	if strings.HasPrefix(f, "/") || strings.Contains(f, "\\") {
		return fmt.Errorf("must be relative to record.directory, without backslashes")
	}
	for _, seg := range strings.Split(f, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("must not have empty, . or .. segments")
		}
	}
	if path.Clean(f) != f {
		return fmt.Errorf("must be a clean relative path")
	}
	return nil
}

// segmentName returns the file name (relative to the directory, with the
// .mp4 extension) of a segment of streamPath starting at start. The stream
// path is valid (server.ValidatePath): segments of [A-Za-z0-9_.-], never
// "." or "..", so the name stays under the directory; os.Root enforces it
// again when the file is made.
func segmentName(format, streamPath string, start time.Time) string {
	t := start.UTC()
	r := strings.NewReplacer("%path", streamPath,
		"%Y", fmt.Sprintf("%04d", t.Year()), "%m", fmt.Sprintf("%02d", int(t.Month())), "%d", fmt.Sprintf("%02d", t.Day()),
		"%H", fmt.Sprintf("%02d", t.Hour()), "%M", fmt.Sprintf("%02d", t.Minute()), "%S", fmt.Sprintf("%02d", t.Second()),
		"%f", fmt.Sprintf("%06d", t.Nanosecond()/1000))
	return r.Replace(format) + ".mp4"
}
