package srt

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/streamhub/streamhub/internal/tsconv"
	"github.com/streamhub/streamhub/media"
)

// egressTracks are an H.264 and an AAC track of one publisher session.
func egressTracks(t testing.TB, session uint64) []*media.Track {
	t.Helper()
	asc, err := (&mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelCount: 2}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return []*media.Track{
		{ID: 0, Codec: media.CodecH264, Session: session},
		{ID: 1, Codec: media.CodecAAC, AudioConfig: asc, SampleRate: 48000, Channels: 2, Session: session},
	}
}

// egressUnits is 30 fps video with a keyframe every 10 pictures (size
// bytes each) and a 21 ms AAC frame after each picture.
func egressUnits(tracks []*media.Track, n, size int) []*media.Unit {
	var us []*media.Unit
	for i := range n {
		d := time.Duration(i) * time.Second / 30
		key := i%10 == 0
		nal := bytes.Repeat([]byte{byte(i)}, size)
		nal[0] = 0x41
		pl := [][]byte{nal}
		if key {
			nal[0] = 0x65
			pl = [][]byte{{0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x78, 0x02, 0x27, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20},
				{0x68, 0xcb, 0x83, 0xcb, 0x20}, nal}
		}
		us = append(us, &media.Unit{Track: tracks[0], PTS: d, DTS: d, KeyFrame: key, Payload: pl})
		us = append(us, &media.Unit{Track: tracks[1], PTS: d, DTS: d, KeyFrame: true, Payload: [][]byte{bytes.Repeat([]byte{0x21}, 300)}})
	}
	return us
}

// sink collects what a reader sends.
type sink struct{ bytes.Buffer }

func (s *sink) Write(p []byte) (int, error) { return s.Buffer.Write(p) }

// tsCheck walks TS packets: the PIDs in order of first appearance and the
// continuity-counter gaps after each PID's first packet.
func tsCheck(t *testing.T, b []byte) (pids []uint16, gaps int) {
	t.Helper()
	if len(b)%tsPacket != 0 {
		t.Fatalf("%d bytes: not whole TS packets", len(b))
	}
	last := map[uint16]int{}
	for p := b; len(p) > 0; p = p[tsPacket:] {
		if p[0] != 0x47 {
			t.Fatal("lost TS sync")
		}
		pid := uint16(p[1]&0x1f)<<8 | uint16(p[2])
		cc := int(p[3] & 0xf)
		l, seen := last[pid]
		if !seen {
			pids = append(pids, pid)
			if cc != 0 {
				t.Errorf("PID %d starts at counter %d, want 0", pid, cc)
			}
		} else if p[3]&0x10 != 0 && cc != (l+1)&0xf {
			gaps++
		}
		last[pid] = cc
	}
	return pids, gaps
}

// Readers of one stream share the TS bytes of each unit (muxed once); each
// starts at a keyframe with the PAT and PMT, with its own continuity
// counters from 0 and no gap, also when it joins mid-stream.
func TestSharedTSReaders(t *testing.T) {
	tracks := egressTracks(t, 1)
	units := egressUnits(tracks, 40, 3000)
	sm := &streamMux{}
	get := func() []*media.Track { return tracks }
	var early, late sink
	a, err := newTSOut(&early, sm, tracks)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newTSOut(&late, sm, tracks)
	if err != nil {
		t.Fatal(err)
	}
	if a.layout != b.layout {
		t.Fatal("two readers of one stream got two muxers")
	}
	for i, u := range units {
		if err := a.write(u, get, time.Second); err != nil {
			t.Fatal(err)
		}
		// The late reader joins at unit 25, a delta frame: it must wait
		// for the keyframe at picture 20 → unit 40.
		if i >= 25 {
			if err := b.write(u, get, time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, s := range map[string]*sink{"first reader": &early, "late reader": &late} {
		pids, gaps := tsCheck(t, s.Bytes())
		if len(pids) < 4 || pids[0] != 0 || gaps != 0 {
			t.Errorf("%s: PIDs in order %v (want the PAT's 0, then the PMT's, first), %d counter gaps (want 0)", name, pids, gaps)
		}
	}
	// The late reader's first picture is the keyframe of picture 20.
	key := a.layout.unit(units[40])
	if !bytes.Contains(late.Bytes()[:len(key)+2*tsPacket], key[4:tsPacket]) {
		t.Error("the late reader does not start with the PAT, the PMT and the keyframe")
	}
	// Muxed once: every reader gets the same shared slice.
	if x, y := a.layout.unit(units[50]), b.layout.unit(units[50]); &x[0] != &y[0] {
		t.Error("a unit was muxed twice for one layout")
	}
	// Apart from the counters, both readers sent the same bytes from the
	// late reader's keyframe on.
	strip := func(b []byte) []byte {
		c := bytes.Clone(b)
		for i := 3; i < len(c); i += tsPacket {
			c[i] &= 0xf0
		}
		return c
	}
	tail := strip(late.Bytes()[2*tsPacket:])
	if e := strip(early.Bytes()); !bytes.HasSuffix(e, tail) {
		t.Error("the late reader's packets differ from the first reader's beyond the counters")
	}
}

// A full send queue leaves exactly one visible gap per PID (where data is
// missing), and a new layout after a republish with other codecs starts
// with its tables and a keyframe.
func TestSharedTSDropAndRepublish(t *testing.T) {
	tracks := egressTracks(t, 1)
	units := egressUnits(tracks, 30, 2000)
	fc := &fullConn{okUntil: 1 << 30}
	o, err := newTSOut(fc, &streamMux{}, tracks)
	if err != nil {
		t.Fatal(err)
	}
	get := func() []*media.Track { return tracks }
	for i, u := range units {
		if i == 12 {
			fc.okUntil = fc.n // full for one unit
		}
		if i == 13 {
			fc.okUntil = 1 << 30
		}
		if err := o.write(u, get, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if o.drops != 1 {
		t.Fatalf("drops %d, want 1", o.drops)
	}
	if _, gaps := tsCheck(t, fc.got.Bytes()); gaps != 2 {
		t.Errorf("%d counter gaps after one drop, want 2 (the video and the audio PID)", gaps)
	}

	// A republish with video only: another layout, tables first.
	video := []*media.Track{{ID: 0, Codec: media.CodecH264, Session: 2}}
	get = func() []*media.Track { return video }
	old := o.layout
	before := fc.got.Len()
	vu := egressUnits([]*media.Track{video[0], video[0]}, 11, 500)
	for _, u := range vu[1:] { // from a delta frame: skipped to the keyframe
		if u.Track.Codec == media.CodecH264 {
			if err := o.write(u, get, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	if o.layout == old {
		t.Fatal("a publisher with other codecs kept the old muxer")
	}
	got := fc.got.Bytes()[before:]
	if len(got) == 0 || got[1]&0x1f != 0 || got[2] != 0 {
		t.Error("the new layout does not start with a PAT")
	}
}

// The old egress, kept for the benchmark: a muxer per reader.
type perReaderTS struct {
	conn io.Writer
	mux  *tsconv.Muxer
}

func (p *perReaderTS) write(u *media.Unit, tracks func() []*media.Track) {
	b, _ := p.mux.Mux(u, tracks)
	for len(b) > 0 {
		n := min(len(b), PayloadSize)
		p.conn.Write(b[:n]) //nolint:errcheck
		b = b[n:]
	}
}

// BenchmarkTSPerReader is the MPEG-TS egress cost of one unit for each of
// 1 and 100 readers of a 720p30 2.7 Mbit/s stream (an 11 KB picture, then
// a 340-byte AAC frame), written to a discarding connection: "perReader"
// muxes for every reader (the egress before the shared muxer), "shared"
// muxes once per unit and each reader copies and numbers the packets.
// ns/op and allocs/op are per unit for all the readers; ns/reader-unit
// divides by the readers.
func BenchmarkTSPerReader(b *testing.B) {
	tracks := egressTracks(b, 1)
	get := func() []*media.Track { return tracks }
	tmpl := egressUnits(tracks, 30, 11000)
	for _, readers := range []int{1, 100} {
		b.Run(fmt.Sprintf("perReader/readers=%d", readers), func(b *testing.B) {
			outs := make([]*perReaderTS, readers)
			for i := range outs {
				m, err := tsconv.NewMuxer(tracks)
				if err != nil {
					b.Fatal(err)
				}
				outs[i] = &perReaderTS{conn: io.Discard, mux: m}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				t := tmpl[i%len(tmpl)]
				u := &media.Unit{Track: t.Track, PTS: t.PTS, DTS: t.DTS, KeyFrame: t.KeyFrame, Payload: t.Payload}
				for _, o := range outs {
					o.write(u, get)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*readers), "ns/reader-unit")
		})
		b.Run(fmt.Sprintf("shared/readers=%d", readers), func(b *testing.B) {
			sm := &streamMux{}
			outs := make([]*tsOut, readers)
			for i := range outs {
				o, err := newTSOut(discardMessages{}, sm, tracks)
				if err != nil {
					b.Fatal(err)
				}
				outs[i] = o
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				t := tmpl[i%len(tmpl)] // a fresh unit: nothing memoized yet
				u := &media.Unit{Track: t.Track, PTS: t.PTS, DTS: t.DTS, KeyFrame: t.KeyFrame, Payload: t.Payload}
				for _, o := range outs {
					o.write(u, get, time.Hour) //nolint:errcheck
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*readers), "ns/reader-unit")
		})
	}
}

type discardMessages struct{}

func (discardMessages) Write(p []byte) (int, error) { return len(p), nil }

// A joining reader's backlog (units that arrived long ago) is muxed for
// that reader alone; the first recent picture switches it to the shared
// packets, with no counter gap between.
func TestSharedTSBacklogPrivate(t *testing.T) {
	tracks := egressTracks(t, 1)
	units := egressUnits(tracks, 20, 1000)
	now := time.Now()
	for i, u := range units {
		u.Wall = now.Add(-10*time.Second + time.Duration(i)*time.Second/30)
		if i >= 30 || (i == 3 && u.Track.Codec == media.CodecAAC) {
			// Recent audio early in the backlog (as the join plan sends
			// it) does not make the reader live: only a recent picture.
			u.Wall = now
		}
	}
	var out sink
	o, err := newTSOut(&out, &streamMux{}, tracks)
	if err != nil {
		t.Fatal(err)
	}
	get := func() []*media.Track { return tracks }
	for i, u := range units {
		if err := o.write(u, get, time.Hour); err != nil {
			t.Fatal(err)
		}
		if live := i >= 30; o.live != live {
			t.Fatalf("unit %d: live %v, want %v", i, o.live, live)
		}
	}
	pids, gaps := tsCheck(t, out.Bytes())
	if len(pids) < 4 || gaps != 0 {
		t.Errorf("PIDs %v, %d counter gaps across the switch to shared packets (want 0)", pids, gaps)
	}
}
