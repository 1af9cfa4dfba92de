package media

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMemoBuildsOncePerKeyAndSharesBytes(t *testing.T) {
	type keyA struct{}
	type keyB struct{}
	u := &Unit{Payload: [][]byte{{1, 2, 3}}}
	var builds atomic.Int32
	start := make(chan struct{})
	build := func(u *Unit) []byte {
		builds.Add(1)
		<-start // slow enough that every reader asks while it runs
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
	time.Sleep(10 * time.Millisecond) // the readers are waiting on the build
	close(start)
	wg.Wait()
	for i, r := range results {
		if &r[0] != &results[0][0] {
			t.Fatalf("reader %d got its own copy: the bytes are not shared", i)
		}
	}
	// Racing readers wait for the one build (a thousand readers woken by
	// one unit must not each serialize it).
	if n := builds.Load(); n != 1 {
		t.Fatalf("%d builds for 64 racing readers", n)
	}
	u.Memo(keyA{}, build)
	if builds.Load() != 1 {
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
