package media

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestMemoBuildsOncePerKeyAndSharesBytes(t *testing.T) {
	type keyA struct{}
	type keyB struct{}
	u := &Unit{Payload: [][]byte{{1, 2, 3}}}
	var builds atomic.Int32
	build := func(u *Unit) []byte {
		builds.Add(1)
		return append([]byte(nil), u.Payload[0]...)
	}
	var wg sync.WaitGroup
	results := make([][]byte, 64)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = u.Memo(keyA{}, build)
		}()
	}
	wg.Wait()
	for i, r := range results {
		if &r[0] != &results[0][0] {
			t.Fatalf("reader %d got its own copy: the bytes are not shared", i)
		}
	}
	// Racing readers may build more than once, but only one result is kept;
	// with no race left, a second call must not build.
	n := builds.Load()
	if n < 1 || n > 64 {
		t.Fatalf("%d builds", n)
	}
	u.Memo(keyA{}, build)
	if builds.Load() != n {
		t.Fatal("Memo built again for a cached key")
	}
	b := u.Memo(keyB{}, func(*Unit) []byte { return []byte("other") })
	if string(b) != "other" || string(u.Memo(keyA{}, build)) != "\x01\x02\x03" {
		t.Fatal("keys are not kept apart")
	}
}

func TestSameParams(t *testing.T) {
	a := &Track{Codec: CodecH264, SPS: []byte{1}, PPS: []byte{2}}
	b := &Track{Codec: CodecH264, SPS: []byte{1}, PPS: []byte{2}, Generation: 3}
	c := &Track{Codec: CodecH264, SPS: []byte{9}, PPS: []byte{2}}
	d := &Track{Codec: CodecAAC, AudioConfig: []byte{0x12, 0x10}, SampleRate: 44100, Channels: 2}
	e := &Track{Codec: CodecAAC, AudioConfig: []byte{0x11, 0x90}, SampleRate: 48000, Channels: 2}
	for _, tc := range []struct {
		x, y *Track
		want bool
	}{{a, a, true}, {a, b, true}, {a, c, false}, {a, nil, false}, {nil, nil, true}, {d, e, false}, {a, d, false}} {
		if got := tc.x.SameParams(tc.y); got != tc.want {
			t.Errorf("SameParams(%+v, %+v) = %v, want %v", tc.x, tc.y, got, tc.want)
		}
	}
}

func TestCodecString(t *testing.T) {
	if CodecH265.String() != "H265" || Codec(99).String() != "codec(99)" || !CodecAV1.IsVideo() || CodecOpus.IsVideo() {
		t.Fatal("codec names or kinds are wrong")
	}
}
