package main

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// tag is one FLV tag with its PreviousTagSize.
func tag(typ byte, ts uint32, body []byte) []byte {
	b := make([]byte, 11, 11+len(body)+4)
	b[0] = typ
	b[1], b[2], b[3] = byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
	b[4], b[5], b[6], b[7] = byte(ts>>16), byte(ts>>8), byte(ts), byte(ts>>24)
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, uint32(11+len(body)))
}

// stream is an FLV stream: an AVC sequence header, an inter frame before
// any keyframe, then a keyframe at 1000 ms and pictures up to 2000 ms with
// AAC between them.
func stream() []byte {
	b := []byte{'F', 'L', 'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0}
	b = append(b, tag(9, 0, []byte{0x17, 0, 0, 0, 0, 1, 0x64})...) // sequence header
	b = append(b, tag(9, 900, []byte{0x27, 1, 0, 0, 0, 5})...)     // inter frame, no keyframe yet
	b = append(b, tag(9, 1000, append([]byte{0x17, 1, 0, 0, 0}, bytes.Repeat([]byte{7}, 3000)...))...)
	for ts := uint32(1033); ts <= 2000; ts += 33 {
		b = append(b, tag(8, ts, []byte{0xAF, 1, 9, 9})...)
		b = append(b, tag(9, ts, []byte{0x27, 1, 0, 0, 0, 5, 5})...)
	}
	return append(b, tag(9, 1990, []byte{0x27, 1, 0, 0, 0, 5})...) // older: not the newest
}

func TestTagWalkerFollowsTheTagsInAnyChunking(t *testing.T) {
	s := stream()
	for _, chunk := range []int{1, 2, 7, 11, 12, 100, 4096, len(s)} {
		var c mediaClock
		w := newTagWalker(&c)
		now := time.Unix(100, 0)
		for off := 0; off < len(s); off += chunk {
			if err := w.feed(s[off:min(off+chunk, len(s))], now); err != nil {
				t.Fatalf("chunks of %d: %v", chunk, err)
			}
		}
		if c.keyAt != now || c.first != 1000 || c.newest != 1990 {
			t.Errorf("chunks of %d: keyframe at %v, first %d, newest %d; want %v, 1000, 1990", chunk, c.keyAt, c.first, c.newest, now)
		}
		if r := c.rate(now.Add(time.Second)); r < 0.989 || r > 0.991 {
			t.Errorf("chunks of %d: rate over 1 s is %.3f, want 0.990", chunk, r)
		}
	}
}

func TestMediaClockLeavesTheCatchUpOut(t *testing.T) {
	s := stream()
	var c mediaClock
	w := newTagWalker(&c)
	t0 := time.Unix(100, 0)
	// The keyframe and a few pictures at once (a cached GOP), the rest
	// 3 s later: the rate is measured from then.
	half := len(s) / 2
	if err := w.feed(s[:half], t0); err != nil {
		t.Fatal(err)
	}
	at := c.newest
	if err := w.feed(s[half:], t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if c.refAt != t0.Add(3*time.Second) || c.ref <= at {
		t.Errorf("reference picture at %v (ts %d), want %v and a timestamp after %d", c.refAt, c.ref, t0.Add(3*time.Second), at)
	}
	want := float64(1990-c.ref) / 1000 / 0.5
	if r := c.rate(t0.Add(3500 * time.Millisecond)); r != want {
		t.Errorf("rate %.3f, want %.3f", r, want)
	}
}

func TestTagWalkerRefusesWhatIsNotFLV(t *testing.T) {
	var c mediaClock
	if err := newTagWalker(&c).feed([]byte("HTTP/1.1 200 OK"), time.Now()); err == nil {
		t.Error("a stream that does not start with FLV was walked")
	}
}

func TestMediaClockWithoutAKeyframeHasNoRate(t *testing.T) {
	var c mediaClock
	if r := c.rate(time.Now()); r != 0 {
		t.Errorf("rate without a keyframe: %v, want 0", r)
	}
}

// FuzzTagWalker feeds any bytes in two chunkings: the walker never
// panics, and where it errs and what it notes do not depend on how the
// bytes were cut.
func FuzzTagWalker(f *testing.F) {
	f.Add(stream(), 3)
	f.Add([]byte{'F', 'L', 'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0, 9, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}, 1)
	f.Add([]byte("FLV"), 2)
	f.Fuzz(func(t *testing.T, b []byte, chunk int) {
		chunk = 1 + abs(chunk)%64
		now := time.Unix(100, 0)
		var whole, cut mediaClock
		errWhole := newTagWalker(&whole).feed(b, now)
		w := newTagWalker(&cut)
		var errCut error
		for off := 0; off < len(b) && errCut == nil; off += chunk {
			errCut = w.feed(b[off:min(off+chunk, len(b))], now)
		}
		if (errWhole == nil) != (errCut == nil) || whole != cut {
			t.Errorf("whole: %v %+v; in chunks of %d: %v %+v", errWhole, whole, chunk, errCut, cut)
		}
	})
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
