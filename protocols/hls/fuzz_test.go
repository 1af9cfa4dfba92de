package hls

import (
	"strings"
	"testing"
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
