package record

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
)

// FuzzScan feeds the segment reader damaged files: it must not panic,
// use up memory, or report a fragment outside the file.
func FuzzScan(f *testing.F) {
	f.Add(sampleSegment(f))
	f.Add([]byte{0, 0, 0, 8, 'f', 't', 'y', 'p'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fi, err := scan(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if fi.end > int64(len(b)) || fi.initEnd > fi.end {
			t.Fatalf("end %d, init %d in %d bytes", fi.end, fi.initEnd, len(b))
		}
		for _, fr := range fi.frags {
			if !fr.within(0, int64(len(b))) {
				t.Fatal("a sample outside the file")
			}
		}
		_ = fi.duration()
		_ = mvhdDurOffset(b)
	})
}

// sampleSegment is a small segment the writer made.
func sampleSegment(tb testing.TB) []byte {
	var out memFile
	v := &media.Track{ID: 0, Codec: media.CodecH264, SPS: testfixtures.H264SPS, PPS: testfixtures.H264PPS}
	a := &media.Track{ID: 1, Codec: media.CodecAAC, AudioConfig: []byte{0x12, 0x10}, SampleRate: 44100, Channels: 2}
	w, err := newSegWriter(&out, "x.mp4", "live/x", []*media.Track{v, a}, 0, time.Unix(1764842400, 0), 200*time.Millisecond)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range 20 {
		d := time.Duration(i) * 40 * time.Millisecond
		w.add(&media.Unit{Track: a, DTS: d, PTS: d, KeyFrame: true, Payload: [][]byte{{1, 2, 3}}})
		w.add(&media.Unit{Track: v, DTS: d, PTS: d + 40*time.Millisecond, KeyFrame: i%10 == 0, Payload: [][]byte{{0x65, byte(i)}}})
	}
	if _, err := w.close(); err != nil {
		tb.Fatal(err)
	}
	return out.b
}

// memFile is a segmentFile in memory.
type memFile struct{ b []byte }

func (m *memFile) Write(p []byte) (int, error) { m.b = append(m.b, p...); return len(p), nil }
func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	copy(m.b[off:], p)
	return len(p), nil
}
func (m *memFile) Sync() error  { return nil }
func (m *memFile) Close() error { return nil }

// FuzzParams feeds the playback API's parameter parsers.
func FuzzParams(f *testing.F) {
	for _, s := range []string{"2026-12-04T10:00:00Z", "2026-12-04T10:00:00.123456789+01:00", "1764842400.5", "90s", "1h30m",
		"90.5", "-1", "NaN", "1e309", "live/x", "../etc/passwd", "live//x", "0", "9999-12-31T23:59:59Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if tm, err := parseTime(s); err == nil && (tm.Year() < 1970 || tm.Year() > 2200) {
			t.Fatalf("%q gave %s", s, tm)
		}
		if d, err := parseDuration(s); err == nil && (d <= 0 || d > maxGetDuration) {
			t.Fatalf("%q gave %s", s, d)
		}
		if p, err := parsePath(s); err == nil {
			if p == "" || p[0] == '/' || bytes.Contains([]byte("/"+p+"/"), []byte("/../")) || bytes.ContainsRune([]byte(p), 0) {
				t.Fatalf("%q gave the path %q", s, p)
			}
			// Every name made from it stays under the directory.
			name := segmentName(DefaultConfig().PathFormat, p, time.Now())
			if !filepathLocal(name) {
				t.Fatalf("%q makes the file %q", s, name)
			}
		}
	})
}

func filepathLocal(name string) bool { return filepath.IsLocal(name) }
