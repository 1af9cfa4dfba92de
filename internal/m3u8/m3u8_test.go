package m3u8

import (
	"testing"
	"time"
)

const live = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6,CAN-SKIP-UNTIL=12
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-MAP:URI="a_init.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-12-04T05:00:00.000Z
#EXTINF:1.000,
a_seg7.mp4
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="b_init.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-12-04T05:00:01.000Z
#EXT-X-PART:DURATION=0.2,URI="b_part8.0.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.2,URI="b_part8.1.mp4"
#EXTINF:0.400,
b_seg8.mp4
#EXT-X-PROGRAM-DATE-TIME:2026-12-04T05:00:01.400Z
#EXT-X-PART:DURATION=0.2,URI="b_part9.0.mp4",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="b_part9.1.mp4"
`

func TestParseMedia(t *testing.T) {
	m, err := ParseMedia([]byte(live))
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaSequence != 7 || !m.CanBlock || !m.CanSkip || m.PartTarget != 0.2 || m.End() != 9 || m.Map != "b_init.mp4" {
		t.Fatalf("%+v", m)
	}
	if len(m.Segments) != 2 || m.Segments[0].Map != "a_init.mp4" || m.Segments[1].MSN != 8 || !m.Segments[1].Discontinuity ||
		m.Segments[0].Discontinuity || m.Segments[1].Duration != 0.4 {
		t.Fatalf("segments %+v", m.Segments)
	}
	if len(m.Parts) != 3 || m.Parts[1].MSN != 8 || m.Parts[1].Index != 1 || m.Parts[1].Independent || !m.Parts[2].Independent || m.Parts[2].MSN != 9 {
		t.Fatalf("parts %+v", m.Parts)
	}
	if want := time.Date(2026, 12, 4, 5, 0, 1, 400e6, time.UTC); !m.Parts[1].Avail.Equal(want) {
		t.Fatalf("part 8.1 live at %v, want %v", m.Parts[1].Avail, want)
	}
	if m.Hint == nil || m.Hint.MSN != 9 || m.Hint.Index != 1 || m.Hint.URI != "b_part9.1.mp4" {
		t.Fatalf("hint %+v", m.Hint)
	}
	for _, bad := range []string{"", "#EXTM4U\n", "#EXTM3U\nseg.mp4\n", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:x\n", "#EXTM3U\n#EXT-X-PART:URI=\"a\"\n"} {
		if _, err := ParseMedia([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if got := Attr(`A=1,B="x,y",C=z`, "B"); got != "x,y" {
		t.Errorf("Attr B = %q", got)
	}
}

func FuzzParseMedia(f *testing.F) {
	f.Add([]byte(live))
	f.Add([]byte("#EXTM3U\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n#EXTINF:1,\ns.mp4\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMedia(b)
		if err == nil && m.End() < m.MediaSequence {
			t.Fatalf("End %d before the media sequence %d", m.End(), m.MediaSequence)
		}
	})
}
