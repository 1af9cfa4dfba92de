package server

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestValidatePath(t *testing.T) {
	tests := []struct {
		path       string
		ok         bool
		wantReason string // substring of PathError.Reason when !ok
	}{
		{"live/test", true, ""},
		{"a", true, ""},
		{"a.b/c-d_e", true, ""},
		{"A-Z_09/x.y.z/..a/a..", true, ""},
		{"...", true, ""}, // only "." and ".." alone are refused
		{strings.Repeat("a", MaxPathLength), true, ""},
		{strings.Repeat("ab/", MaxPathLength/3-1) + "ab", true, ""},

		{"", false, "empty"},
		{"/x", false, "empty segment"},
		{"x/", false, "empty segment"},
		{"a//b", false, "empty segment"},
		{"/", false, "empty segment"},
		{".", false, ". or .."},
		{"..", false, ". or .."},
		{"a/../b", false, ". or .."},
		{"a/./b", false, ". or .."},
		{"a/..", false, ". or .."},
		{"../a", false, ". or .."},
		{"spaces here", false, "not allowed"},
		{"é", false, "not allowed"},
		{"a\x00b", false, "not allowed"},
		{"a\\b", false, "not allowed"},
		{"a?key=1", false, "not allowed"},
		{"<script>", false, "not allowed"},
		{"a%2fb", false, "not allowed"},
		{"a\nb", false, "not allowed"},
		{strings.Repeat("a", MaxPathLength+1), false, "too long"},
		{strings.Repeat("a/", 200), false, "too long"},
	}
	for _, tc := range tests {
		name := tc.path
		if len(name) > 20 {
			name = name[:20] + "..."
		}
		t.Run(name, func(t *testing.T) {
			err := ValidatePath(tc.path)
			if tc.ok {
				if err != nil {
					t.Fatalf("ValidatePath(%q) = %v, want nil", tc.path, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidatePath(%q) = nil, want a *PathError", tc.path)
			}
			var pe *PathError
			if !errors.As(err, &pe) {
				t.Fatalf("ValidatePath(%q) = %T, want *PathError", tc.path, err)
			}
			if !strings.Contains(pe.Reason, tc.wantReason) {
				t.Errorf("Reason = %q, want it to contain %q", pe.Reason, tc.wantReason)
			}
			if len(pe.Path) > MaxPathLength+3 {
				t.Errorf("PathError.Path is %d bytes: a long path must be cut in the error", len(pe.Path))
			}
			if !strings.HasPrefix(err.Error(), "server: invalid path") {
				t.Errorf("Error() = %q, want the package prefix", err.Error())
			}
		})
	}
}

func TestValidatePath201(t *testing.T) {
	p := strings.Repeat("x", 201)
	err := ValidatePath(p)
	var pe *PathError
	if !errors.As(err, &pe) {
		t.Fatalf("ValidatePath(201 chars) = %v, want *PathError", err)
	}
	if !strings.Contains(err.Error(), "1-200 characters") {
		t.Errorf("error %q does not say what is allowed", err)
	}
}

// The hub refuses invalid paths on both Publish and Read with a *PathError.
func TestHubRefusesInvalidPaths(t *testing.T) {
	h := NewHub(HubConfig{Logger: discardLogger()})
	defer h.Close()
	for _, p := range []string{"", "/x", "x/", "a//b", ".", "a/../b", "a/./b", "spaces here", "é", strings.Repeat("a", 201)} {
		_, err := h.PublishTrusted(p, videoTracks(), PublishOptions{})
		var pe *PathError
		if !errors.As(err, &pe) {
			t.Errorf("Publish(%q) = %v, want *PathError", p, err)
		}
		_, err = h.ReadTrusted(context.Background(), p, ReadOptions{})
		if !errors.As(err, &pe) {
			t.Errorf("Read(%q) = %v, want *PathError", p, err)
		}
	}
	if n := len(h.Streams()); n != 0 {
		t.Errorf("%d streams created for invalid paths", n)
	}
}

var refPath = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)

// refValid is an independent statement of the path rule.
func refValid(p string) bool {
	if len(p) == 0 || len(p) > MaxPathLength || !refPath.MatchString(p) {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{"live/test", "a", "a.b/c-d_e", "", "/x", "x/", "a//b", ".", "a/../b", "a/./b", "spaces here", "é", strings.Repeat("a", 201)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		err := ValidatePath(p)
		if got, want := err == nil, refValid(p); got != want {
			t.Fatalf("ValidatePath(%q) = %v, reference says valid=%v", p, err, want)
		}
		if err != nil {
			var pe *PathError
			if !errors.As(err, &pe) {
				t.Fatalf("ValidatePath(%q) = %T, want *PathError", p, err)
			}
			_ = err.Error()
			return
		}
		// A valid path is safe in URLs, file names and HTML.
		if strings.ContainsAny(p, " <>\"'&?#%\\\x00") || strings.Contains("/"+p+"/", "/../") || strings.Contains("/"+p+"/", "/./") {
			t.Fatalf("ValidatePath accepted unsafe %q", p)
		}
	})
}

func TestPathMatcher(t *testing.T) {
	tests := []struct {
		pattern string
		name    string
		want    bool
	}{
		{"live/*", "live/test", true},
		{"live/*", "live/test/720p", false},
		{"live/*", "other/test", false},
		{"*", "a", true},
		{"~^cam[0-9]+$", "cam12", true},
		{"~^cam[0-9]+$", "cam12x", false},
		{"~live/.+", "x/live/y", true},
	}
	for _, tc := range tests {
		m, err := NewPathMatcher(tc.pattern)
		if err != nil {
			t.Fatalf("NewPathMatcher(%q): %v", tc.pattern, err)
		}
		if got := m.Match(tc.name); got != tc.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
	for _, bad := range []string{"", "[", "~(", "~["} {
		if _, err := NewPathMatcher(bad); err == nil {
			t.Errorf("NewPathMatcher(%q) = nil error", bad)
		}
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"33554432", 33554432, true},
		{"32MiB", 32 << 20, true},
		{"512KiB", 512 << 10, true},
		{"1GiB", 1 << 30, true},
		{"64MB", 64000000, true},
		{"10 KB", 10000, true},
		{"7B", 7, true},
		{"", 0, false},
		{"MiB", 0, false},
		{"-1", 0, false},
		{"1.5MiB", 0, false},
		{"12xB", 0, false},
		{"abc", 0, false},
	}
	for _, tc := range tests {
		var b ByteSize
		err := b.UnmarshalText([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("UnmarshalText(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && b != tc.want {
			t.Errorf("UnmarshalText(%q) = %d, want %d", tc.in, b, tc.want)
		}
	}
}

func TestPathConfigValidate(t *testing.T) {
	def := DefaultPathConfig()
	if errs := def.Validate("paths.default"); len(errs) != 0 {
		t.Fatalf("DefaultPathConfig does not validate: %v", errs)
	}
	tests := []struct {
		key    string
		modify func(*PathConfig)
	}{
		{"gopCache.maxFrames", func(c *PathConfig) { c.GOPCache.MaxFrames = 0 }},
		{"gopCache.maxBytes", func(c *PathConfig) { c.GOPCache.MaxBytes = 1 }},
		{"gopCache.audioOnlyWindow", func(c *PathConfig) { c.GOPCache.AudioOnlyWindow = time.Minute }},
		{"join", func(c *PathConfig) { c.Join = "fast" }},
		{"catchUp", func(c *PathConfig) { c.CatchUp = -time.Second }},
		{"readerQueue", func(c *PathConfig) { c.ReaderQueue = 8 }},
		{"readerLagBound", func(c *PathConfig) { c.ReaderLagBound = 50 * time.Millisecond }},
		{"gracePeriod", func(c *PathConfig) { c.GracePeriod = 2 * time.Hour }},
		{"maxReaders", func(c *PathConfig) { c.MaxReaders = -1 }},
		{"publishKey", func(c *PathConfig) { c.PublishKey = "a&b" }},
	}
	for _, tc := range tests {
		c := DefaultPathConfig()
		tc.modify(&c)
		errs := c.Validate("paths.default")
		if len(errs) != 1 {
			t.Errorf("%s: got %d errors %v, want 1", tc.key, len(errs), errs)
			continue
		}
		if !strings.Contains(errs[0].Error(), "paths.default."+tc.key+":") {
			t.Errorf("%s: error %q does not name the key", tc.key, errs[0])
		}
	}
}
