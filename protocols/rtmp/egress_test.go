package rtmp

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/internal/flv"
)

// encoderBatch is two batches of a player: a joiner's first (a retimed
// keyframe of 100 kB, over the chunk size, a retimed inter frame whose
// composition time the retiming changed, AAC),
// then live units (a keyframe over the chunk size, an inter frame, AAC).
func encoderBatch() (tracks []*media.Track, first, live []*media.Unit) {
	v := &media.Track{ID: 0, Codec: media.CodecH264, SPS: testfixtures.H264SPS, PPS: testfixtures.H264PPS}
	a := &media.Track{ID: 1, Codec: media.CodecAAC, AudioConfig: []byte{0x12, 0x10}, SampleRate: 44100, Channels: 2}
	idr := bytes.Repeat([]byte{0x65, 1, 2, 3}, 25000)
	key := &media.Unit{Track: v, PTS: 2 * time.Second, DTS: 2 * time.Second, KeyFrame: true, Payload: [][]byte{idr}}
	inter := &media.Unit{Track: v, PTS: 2100 * time.Millisecond, DTS: 2033 * time.Millisecond, Payload: [][]byte{{0x41, 9, 9}}}
	retimed := func(o *media.Unit, dts, cts time.Duration) *media.Unit {
		return &media.Unit{Track: o.Track, PTS: dts + cts, DTS: dts, KeyFrame: o.KeyFrame, Payload: o.Payload, Orig: o}
	}
	aac := &media.Unit{Track: a, PTS: 2010 * time.Millisecond, DTS: 2010 * time.Millisecond, KeyFrame: true, Payload: [][]byte{{0x21, 0, 0}}}
	first = []*media.Unit{retimed(key, 0, 0), retimed(inter, 33*time.Millisecond, 20*time.Millisecond),
		retimed(aac, 10*time.Millisecond, 0)}
	live = []*media.Unit{
		{Track: a, PTS: 2040 * time.Millisecond, DTS: 2040 * time.Millisecond, KeyFrame: true, Payload: [][]byte{{0x21, 1, 2}}},
		{Track: v, PTS: 4 * time.Second, DTS: 4 * time.Second, KeyFrame: true, Payload: [][]byte{idr}},
		{Track: v, PTS: 4033 * time.Millisecond, DTS: 4033 * time.Millisecond, Payload: [][]byte{{0x41, 7}}},
	}
	return []*media.Track{v, a}, first, live
}

// A player's batches read back with gortmplib's chunk reader: the
// configurations first, a joiner's retimed units at their new times with
// their bodies whole (over the chunk size), then the live units.
func TestPlayEncoderReadsBack(t *testing.T) {
	tracks, first, live := encoderBatch()
	e := newPlayEncoder(tracks)
	var wire bytes.Buffer
	for _, batch := range [][]*media.Unit{first, live} {
		nb := net.Buffers(e.encode(nil, batch))
		if _, err := nb.WriteTo(&wire); err != nil {
			t.Fatal(err)
		}
	}
	br := bytecounter.NewReader(&wire)
	r := rawmessage.NewReader(br, br, func(uint32) error { return nil })
	if err := r.SetChunkSize(outChunkSize); err != nil {
		t.Fatal(err)
	}
	type msg struct {
		typ  uint8
		ms   int64
		size int
	}
	var got []msg
	for wire.Len() > 0 {
		m, err := r.Read()
		if err != nil {
			t.Fatalf("after %d messages: %v", len(got), err)
		}
		if len(got) == 2 { // the retimed inter frame: its own composition time
			if want := flv.Body(flv.AppendUnitTag(nil, first[1], first[1].DTS)); !bytes.Equal(m.Body, want) {
				t.Errorf("retimed inter frame's body % x, want % x", m.Body, want)
			}
		}
		got = append(got, msg{m.Type, m.Timestamp.Milliseconds(), len(m.Body)})
	}
	idr := 5 + 4 + 100000 // FLV video body: header, NALU length, NALU
	want := []msg{
		{9, 0, -1}, {9, 0, idr}, {9, 33, 5 + 4 + 3}, // AVC configuration, retimed keyframe and inter frame
		{8, 10, -1}, {8, 10, 2 + 3}, // AAC configuration, then a frame
		{8, 2040, 2 + 3}, {9, 4000, idr}, {9, 4033, 5 + 4 + 2},
	}
	if len(got) != len(want) {
		t.Fatalf("messages %v, want %v", got, want)
	}
	for i, w := range want {
		if g := got[i]; g.typ != w.typ || g.ms != w.ms || (w.size >= 0 && g.size != w.size) {
			t.Errorf("message %d: %+v, want %+v", i, g, w)
		}
	}
}

// BenchmarkPlayEncode is one player's framing of a live batch (100 ms at
// 30 fps with AAC: three pictures, five audio frames) around the FLV tags
// every reader shares (made by the first encode).
func BenchmarkPlayEncode(b *testing.B) {
	tracks, _, _ := encoderBatch()
	v, a := tracks[0], tracks[1]
	var batch []*media.Unit
	for i := range 3 {
		d := time.Duration(i) * 33 * time.Millisecond
		batch = append(batch, &media.Unit{Track: v, PTS: d, DTS: d, KeyFrame: i == 0, Payload: [][]byte{make([]byte, 11000)}})
	}
	for i := range 5 {
		d := time.Duration(i) * 23 * time.Millisecond
		batch = append(batch, &media.Unit{Track: a, PTS: d, DTS: d, KeyFrame: true, Payload: [][]byte{make([]byte, 370)}})
	}
	e := newPlayEncoder(tracks)
	bufs := e.encode(nil, batch) // the configuration, and the shared messages made
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		bufs = e.encode(bufs[:0], batch)
		clear(bufs)
	}
}

// A player in step with the stream gets the shared framing: the same bytes
// as its own encoder's, from the batch after the one that sent the
// configurations; never before (sequence headers due), and never for a
// unit of a track it does not carry.
func TestSharedPlayEncodeMatchesOwn(t *testing.T) {
	tracks, first, live := encoderBatch()
	e := newPlayEncoder(tracks)
	if e.mux.Plain(first) {
		t.Fatal("a first batch is plain: its configurations would be skipped")
	}
	e.encode(nil, first)
	flat := func(bufs [][]byte) []byte { return bytes.Join(bufs, nil) }
	for _, batch := range [][]*media.Unit{live, first[1:]} { // live, and retimed units after the configurations
		if !e.mux.Plain(batch) {
			t.Fatal("a batch of carried, started tracks is not plain")
		}
		shared := flat(encodeShared(nil, batch))
		if own := flat(e.encode(nil, batch)); !bytes.Equal(shared, own) {
			t.Fatalf("shared framing (%d bytes) differs from the player's own (%d bytes)", len(shared), len(own))
		}
	}
	other := &media.Unit{Track: &media.Track{ID: 7, Codec: media.CodecAAC, AudioConfig: []byte{0x12, 0x10}, Session: tracks[0].Session},
		PTS: 5 * time.Second, DTS: 5 * time.Second, KeyFrame: true, Payload: [][]byte{{0x21}}}
	if e.mux.Plain([]*media.Unit{live[0], other}) {
		t.Error("a batch with a track the player does not carry is plain")
	}
}
