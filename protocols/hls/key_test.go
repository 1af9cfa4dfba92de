package hls

import (
	"strings"
	"testing"
	"time"
)

// On a path with a read key every URI of the playlist carries the key:
// players resolve them without the query of the playlist they came from.
func TestPlaylistURIsCarryTheKey(t *testing.T) {
	p := &mediaPlaylist{prefix: "ab_", partTarget: 200 * time.Millisecond, targetDur: 1, query: keyQuery("s3cr t"),
		segs: []*segment{
			{msn: 4, init: 1, complete: true, dur: time.Second, parts: []*part{{index: 0, dur: time.Second, independent: true}}},
			{msn: 5, init: 1, parts: []*part{{index: 0, dur: 200 * time.Millisecond, independent: true}}},
		},
		reports: []renditionReport{{uri: "../480p/stream.m3u8", lastMSN: 5, lastPart: 0}},
	}
	uris := 0
	for _, line := range strings.Split(string(p.render(false)), "\n") {
		switch {
		case strings.Contains(line, `URI="`):
			uris++
			if !strings.Contains(line, `?key=s3cr+t"`) {
				t.Errorf("URI without the key: %s", line)
			}
		case line != "" && !strings.HasPrefix(line, "#"):
			uris++
			if !strings.HasSuffix(line, "?key=s3cr+t") {
				t.Errorf("segment URI without the key: %s", line)
			}
		}
	}
	if uris != 6 { // map, 2 parts, 1 segment, preload hint, rendition report
		t.Errorf("%d URIs checked, want 6", uris)
	}
	if renderMultivariant([]variant{{uri: "stream.m3u8" + keyQuery("k")}}) == nil {
		t.Fatal("no multivariant playlist")
	}
}
