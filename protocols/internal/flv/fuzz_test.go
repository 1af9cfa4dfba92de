package flv

import (
	"bytes"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

// FuzzReader feeds arbitrary bytes to NewReader and Read: it must never
// panic, never return a body over MaxTagSize, and never hold a buffer larger
// than one tag of MaxTagSize.
func FuzzReader(f *testing.F) {
	tr := &media.Track{ID: 0, Codec: media.CodecH264, SPS: h264SPS, PPS: h264PPS}
	cfg, _ := ConfigTag(tr, 0)
	stream := append(FileHeader(true, true), AppendTag(nil, TagScript, 0, MetadataBody([]*media.Track{tr}))...)
	stream = append(stream, cfg...)
	stream = AppendUnitTag(stream, &media.Unit{Track: tr, KeyFrame: true, Payload: [][]byte{{0x65, 1, 2}}}, 1<<24+1)
	f.Add(stream)
	f.Add(FileHeader(false, false))
	f.Add([]byte("FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\x09\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("FLV\x01\x05\x00\x00\x04\x00"))
	f.Add([]byte("not an flv"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		for i := 0; i < len(data); i++ { // each successful Read consumes at least 15 bytes
			tag, err := r.Read()
			if cap(r.buf) > MaxTagSize+TrailerSize {
				t.Fatalf("reader buffer grew to %d bytes", cap(r.buf))
			}
			if err != nil {
				return
			}
			if len(tag.Body) > MaxTagSize {
				t.Fatalf("tag body of %d bytes", len(tag.Body))
			}
			_ = tag.IsConfig()
			_ = tag.IsVideoKeyFrame()
		}
		t.Fatal("Read never ended")
	})
}

// FuzzUnitTag checks that AppendUnitTag output always reads back as one tag
// with the unit's timestamp, whatever the payload.
func FuzzUnitTag(f *testing.F) {
	f.Add(byte(1), int64(0), int64(40), true, []byte{0x65, 1, 2})
	f.Add(byte(4), int64(1<<24), int64(1<<24), true, []byte{0x21})
	f.Add(byte(2), int64(1<<33), int64(1<<33-5), false, []byte{0x02, 1})
	f.Fuzz(func(t *testing.T, codec byte, dtsMS, ptsMS int64, key bool, payload []byte) {
		c := media.Codec(int(codec) % 7)
		tr := &media.Track{Codec: c}
		u := &media.Unit{Track: tr, DTS: time.Duration(dtsMS) * time.Millisecond, PTS: time.Duration(ptsMS) * time.Millisecond,
			KeyFrame: key, Payload: [][]byte{payload}}
		raw := AppendUnitTag(nil, u, u.DTS)
		if len(raw) == 0 {
			return
		}
		r, err := NewReader(bytes.NewReader(append(FileHeader(true, true), raw...)))
		if err != nil {
			t.Fatal(err)
		}
		tag, err := r.Read()
		if err != nil {
			t.Fatalf("%s tag does not read back: %v", c, err)
		}
		if tag.Timestamp != Timestamp(u.DTS) || !bytes.Equal(tag.Body, Body(raw)) {
			t.Fatalf("timestamp %d want %d", tag.Timestamp, Timestamp(u.DTS))
		}
		if c.IsVideo() && tag.IsVideoKeyFrame() != key {
			t.Fatalf("IsVideoKeyFrame %v, want %v", tag.IsVideoKeyFrame(), key)
		}
	})
}
