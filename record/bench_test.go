package record

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
)

// BenchmarkList43200 lists 30 days of 1-minute segments of one path
// (43,200 index entries, among other paths' segments) in one call: the
// issue's goal is 50 ms.
func BenchmarkList43200(b *testing.B) {
	idx, err := OpenIndex(filepath.Join(b.TempDir(), indexFile))
	if err != nil {
		b.Fatal(err)
	}
	defer idx.Close()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, path := range []string{"live/a", "live/b", "live/c"} {
		tx, _ := idx.db.Begin(true)
		bk := tx.Bucket(bucketSegments)
		for i := range 43200 {
			s := Segment{Path: path, Start: t0.Add(time.Duration(i) * time.Minute), End: t0.Add(time.Duration(i+1) * time.Minute),
				File: path + "/2026-11-01_00-00-00-000000.mp4", Size: 20 << 20, Codecs: "H264,AAC", Complete: true}
			bk.Put(segKey(s.Path, s.Start), encodeSeg(s))
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		segs, err := idx.List("live/b", t0, t0.Add(30*24*time.Hour), maxListSegments)
		if err != nil || len(segs) != 43200 {
			b.Fatalf("%d segments, %v", len(segs), err)
		}
	}
}

// recordSynthetic writes d of a 2.7 Mbit/s stream (30 fps H264 of
// ~11 KB frames, a keyframe every 2 s, 44.1 kHz AAC) through w.
func recordSynthetic(tb testing.TB, w *segWriter, v, a *media.Track, from, d time.Duration) {
	frame := bytes.Repeat([]byte{1}, 11000)
	key := bytes.Repeat([]byte{2}, 40000)
	ai := int(from * 44100 / 1024 / time.Second)
	for i := int(from / (time.Second / 30)); time.Duration(i)*time.Second/30 < from+d; i++ {
		dts := time.Duration(i) * time.Second / 30
		for ; time.Duration(ai)*1024*time.Second/44100 < dts; ai++ {
			ad := time.Duration(ai) * 1024 * time.Second / 44100
			if err := w.add(&media.Unit{Track: a, DTS: ad, PTS: ad, KeyFrame: true, Payload: [][]byte{frame[:300]}}); err != nil {
				tb.Fatal(err)
			}
		}
		pl := [][]byte{{0x41, 0x9a}, frame}
		if i%60 == 0 {
			pl = [][]byte{v.SPS, v.PPS, {0x65, 0x88}, key}
		}
		if err := w.add(&media.Unit{Track: v, DTS: dts, PTS: dts, KeyFrame: i%60 == 0, Payload: pl}); err != nil {
			tb.Fatal(err)
		}
	}
}

func benchTracks() (*media.Track, *media.Track) {
	return &media.Track{ID: 0, Codec: media.CodecH264, SPS: testfixtures.H264SPS, PPS: testfixtures.H264PPS},
		&media.Track{ID: 1, Codec: media.CodecAAC, AudioConfig: []byte{0x12, 0x10}, SampleRate: 44100, Channels: 2}
}

// BenchmarkRecorderCPU is the recorder's CPU per second of a 2.7 Mbit/s
// stream (the fMP4 muxing, into memory: no disk). ns/op divided by 1e9
// is the share of one core one recorded stream takes.
func BenchmarkRecorderCPU(b *testing.B) {
	v, a := benchTracks()
	var mf memFile
	w, err := newSegWriter(&mf, "x.mp4", "live/x", []*media.Track{v, a}, 0, time.Now(), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(2_700_000 / 8)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		recordSynthetic(b, w, v, a, time.Duration(i)*time.Second, time.Second)
		mf.b = mf.b[:0]
	}
}

// BenchmarkExport remuxes 60 s of recorded 2.7 Mbit/s segments into one
// MP4 (to io.Discard); BenchmarkCat reads the same files: the MB/s of
// /get against cat.
func BenchmarkExport(b *testing.B) { benchExport(b, false, "mp4") }

// BenchmarkExportFMP4 is BenchmarkExport with format=fmp4.
func BenchmarkExportFMP4(b *testing.B) { benchExport(b, false, "fmp4") }

// BenchmarkCat is BenchmarkExport's baseline: the files read as they are.
func BenchmarkCat(b *testing.B) { benchExport(b, true, "") }

func benchExport(b *testing.B, cat bool, format string) {
	dir := b.TempDir()
	rec := New(Config{Directory: dir}, nil, nil)
	var err error
	if rec.root, err = os.OpenRoot(dir); err != nil {
		b.Fatal(err)
	}
	if rec.idx, err = OpenIndex(filepath.Join(dir, indexFile)); err != nil {
		b.Fatal(err)
	}
	defer rec.idx.Close()
	v, a := benchTracks()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var files []string
	var size int64
	for i := range 6 {
		start := t0.Add(time.Duration(i) * 10 * time.Second)
		name := segmentName(DefaultConfig().PathFormat, "live/x", start)
		os.MkdirAll(filepath.Join(dir, "live/x"), 0o750)
		f, _ := os.Create(filepath.Join(dir, name))
		off := time.Duration(i) * 10 * time.Second
		w, err := newSegWriter(f, name, "live/x", []*media.Track{v, a}, off, start, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		recordSynthetic(b, w, v, a, off, 10*time.Second)
		d, _ := w.close()
		rec.idx.Put(Segment{Path: "live/x", Start: start, End: start.Add(d), File: name, Size: w.size, Complete: true})
		files = append(files, filepath.Join(dir, name))
		size += w.size
	}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if cat {
			for _, n := range files {
				f, _ := os.Open(n)
				io.Copy(io.Discard, f)
				f.Close()
			}
			continue
		}
		if _, err := rec.export(io.Discard, "live/x", t0, time.Minute, format); err != nil {
			b.Fatal(err)
		}
	}
}
