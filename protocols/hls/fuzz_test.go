package hls

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseFileName: any requested file name either parses to what the
// playlists would write for it, or is refused.
func FuzzParseFileName(f *testing.F) {
	for _, s := range []string{"init1", "seg0", "seg18446744073709551615", "part12.3", "part1.", "part.1", "init", "seg01", "part3.999", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		ref, ok := parseFileName(name)
		if !ok {
			return
		}
		var back string
		switch ref.kind {
		case "init":
			back = initURI("", int(ref.n))
		case "seg":
			back = segURI("", ref.n)
		case "part":
			back = partURI("", ref.n, ref.idx)
		default:
			t.Fatalf("%q: kind %q", name, ref.kind)
		}
		if strings.TrimSuffix(back, ".mp4") != name {
			t.Fatalf("%q parsed to %+v, which names %q", name, ref, back)
		}
	})
}

// FuzzShareCheck: a share value from a peer is accepted only when it is
// the very string the server hands out for that scope (one URL per value
// for a cache), and nothing panics.
func FuzzShareCheck(f *testing.F) {
	s := newShares("0123456789abcdef", time.Hour)
	now := time.Unix(1_800_000_000, 0)
	good := s.value("live/x", now)
	for _, v := range []string{good, "+" + good, "0" + good, good + "0", "1.", ".", "", "x.y", "9223372036854775807.00000000000000000000000000000000", "-1.ab"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if s.check("live/x", v, now) != nil {
			return
		}
		exp, _, _ := strings.Cut(v, ".")
		e, err := strconv.ParseInt(exp, 10, 64)
		if err != nil || v != strconv.FormatInt(e, 10)+"."+s.mac("live/x", e) {
			t.Fatalf("%q accepted, but it is not a value the server makes", v)
		}
	})
}
