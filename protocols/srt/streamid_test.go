package srt

import (
	"errors"
	"strings"
	"testing"

	"github.com/streamhub/streamhub/server"
)

func TestParseStreamID(t *testing.T) {
	ok := []struct {
		raw  string
		want StreamID
	}{
		{"publish:live/test", StreamID{Mode: ModePublish, Path: "live/test"}},
		{"read:live/test", StreamID{Mode: ModeRead, Path: "live/test"}},
		{"publish:/live/test/", StreamID{Mode: ModePublish, Path: "live/test"}},
		{"publish:live/test:alice:s3cret", StreamID{Mode: ModePublish, Path: "live/test", User: "alice", Key: "s3cret"}},
		{"publish:live/test?key=k1", StreamID{Mode: ModePublish, Path: "live/test", Key: "k1", Query: "key=k1"}},
		{"publish:live/test?key=k1&role=backup", StreamID{Mode: ModePublish, Path: "live/test", Key: "k1", Query: "key=k1&role=backup"}},
		{"#!::r=live/test,m=publish,s=k1,role=backup", StreamID{Mode: ModePublish, Path: "live/test", Key: "k1", Query: "role=backup"}},
		{"#!::r=live/test,m=publish", StreamID{Mode: ModePublish, Path: "live/test"}},
		{"#!::r=live/test,m=request", StreamID{Mode: ModeRead, Path: "live/test"}},
		{"#!::r=live/test", StreamID{Mode: ModeRead, Path: "live/test"}},
		{"#!::m=publish,r=live/test,u=bob,s=abc,t=stream,h=example.com", StreamID{Mode: ModePublish, Path: "live/test", User: "bob", Key: "abc"}},
		{"%23!::r=live/test,m=publish", StreamID{Mode: ModePublish, Path: "live/test"}},
		{"%23%21%3A%3Ar%3Dlive%2Ftest%2Cm%3Drequest", StreamID{Mode: ModeRead, Path: "live/test"}},
	}
	for _, tc := range ok {
		got, err := ParseStreamID(tc.raw)
		if err != nil || got != tc.want {
			t.Errorf("ParseStreamID(%q) = %+v, %v; want %+v", tc.raw, got, err, tc.want)
		}
	}
	bad := []struct{ raw, says string }{
		{"", "sent none"},
		{"live/test", "publish:PATH"},
		{"play:live/test", "neither publish nor read"},
		{"publish:", "invalid path"},
		{"publish:a:b", "PATH:USER:PASS"},
		{"publish:../etc", "invalid path"},
		{"#!::m=publish", "no r="},
		{"#!::r=live/x,m=bidirectional", "not supported"},
		{"#!::r=live/x,r=live/y", "twice"},
		{"#!::r=live/x,junk", "key=value"},
		{"%23%ZZ", "percent"},
		{"publish:" + strings.Repeat("a", 600), "longer"},
	}
	for _, tc := range bad {
		_, err := ParseStreamID(tc.raw)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("ParseStreamID(%q) error %v, want one saying %q", tc.raw, err, tc.says)
		}
	}
	if _, err := ParseStreamID("#!::r=a,m=bidirectional"); !errors.Is(err, errBadMode) {
		t.Errorf("bad mode error %v is not errBadMode", err)
	}
}

// FuzzParseStreamID: any caller-sent stream ID either parses to a valid
// path and a mode, or is an error.
func FuzzParseStreamID(f *testing.F) {
	for _, s := range []string{"publish:live/test", "read:a/b:u:p", "#!::r=live/test,m=publish,u=x,s=y",
		"%23!::r=live/test,m=request", "publish:x?key=k", "#!::", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		id, err := ParseStreamID(raw)
		if err != nil {
			return
		}
		if id.Mode != ModePublish && id.Mode != ModeRead {
			t.Fatalf("%q: mode %d", raw, id.Mode)
		}
		if err := server.ValidatePath(id.Path); err != nil {
			t.Fatalf("%q: accepted path %q: %v", raw, id.Path, err)
		}
	})
}
