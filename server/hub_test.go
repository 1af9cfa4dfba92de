package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

var (
	trackV = &media.Track{ID: 0, Codec: media.CodecH264, Width: 1280, Height: 720, SPS: []byte{0x67}, PPS: []byte{0x68}}
	trackA = &media.Track{ID: 1, Codec: media.CodecAAC, SampleRate: 48000, Channels: 2}
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func videoTracks() []*media.Track { return []*media.Track{trackV, trackA} }
func audioTracks() []*media.Track {
	return []*media.Track{{ID: 0, Codec: media.CodecAAC, SampleRate: 48000, Channels: 2}}
}

// testConf is a PathConfig for tests: roomy queue, long lag bound, no grace.
func testConf() PathConfig {
	c := DefaultPathConfig()
	c.ReaderQueue = 1 << 12
	c.ReaderLagBound = time.Minute
	c.GracePeriod = 0
	c.CatchUp = 0 // exact sequences; TestCatchUp covers the retiming
	return c
}

func newTestHub(t testing.TB, pc PathConfig) *Hub {
	t.Helper()
	h := NewHub(HubConfig{PathConfig: func(string) PathConfig { return pc }, Logger: discardLogger()})
	t.Cleanup(h.Close)
	return h
}

func mustPublish(t testing.TB, h *Hub, path string, tracks []*media.Track) *Publisher {
	t.Helper()
	p, err := h.PublishTrusted(path, tracks, PublishOptions{Protocol: "test", Remote: "local"})
	if err != nil {
		t.Fatalf("Publish(%q): %v", path, err)
	}
	return p
}

func mustRead(t testing.TB, h *Hub, path string) *Reader {
	t.Helper()
	r, err := h.ReadTrusted(context.Background(), path, ReadOptions{})
	if err != nil {
		t.Fatalf("Read(%q): %v", path, err)
	}
	t.Cleanup(r.Close)
	return r
}

// mkUnit makes a unit whose payload starts with seq, so readers can check
// for gaps and duplicates.
func mkUnit(tr *media.Track, seq uint64, key bool, dts time.Duration) *media.Unit {
	b := make([]byte, 100)
	binary.BigEndian.PutUint64(b, seq)
	pts := dts
	if tr.IsVideo() && !key {
		pts += 80 * time.Millisecond // B-frame style reordering: PTS > DTS
	}
	return &media.Unit{Track: tr, PTS: pts, DTS: dts, KeyFrame: key || !tr.IsVideo(), Payload: [][]byte{b}}
}

func seqOf(u *media.Unit) uint64 { return binary.BigEndian.Uint64(u.Payload[0]) }

// genUnits makes a source of frames video frames at 25 fps with a keyframe
// every gop frames, each followed by an audio unit when withAudio. Sequence
// numbers start at seq0 and are the units' order.
func genUnits(seq0 uint64, frames, gop int, withAudio bool) []*media.Unit {
	var out []*media.Unit
	seq := seq0
	for i := range frames {
		dts := time.Duration(i) * 40 * time.Millisecond
		out = append(out, mkUnit(trackV, seq, i%gop == 0, dts))
		seq++
		if withAudio {
			out = append(out, mkUnit(trackA, seq, true, dts+5*time.Millisecond))
			seq++
		}
	}
	return out
}

func writeAll(p *Publisher, units []*media.Unit) {
	for _, u := range units {
		p.Write(u)
	}
}

// readAll reads until an error and returns what it got.
func readAll(t testing.TB, r *Reader) ([]*media.Unit, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*media.Unit
	for {
		u, err := r.Next(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("reader still blocked after 10s with %d units read", len(out))
			}
			return out, err
		}
		out = append(out, u)
	}
}

func seqs(us []*media.Unit) []uint64 {
	out := make([]uint64, len(us))
	for i, u := range us {
		out[i] = seqOf(u)
	}
	return out
}

func firstVideo(us []*media.Unit) *media.Unit {
	for _, u := range us {
		if u.Track.IsVideo() {
			return u
		}
	}
	return nil
}

// checkMonotonic checks that DTS never decreases within a track and PTS >= DTS.
func checkMonotonic(t *testing.T, us []*media.Unit) {
	t.Helper()
	last := map[int]time.Duration{}
	for i, u := range us {
		if d, ok := last[u.Track.ID]; ok && u.DTS < d {
			t.Errorf("unit %d (seq %d, track %d): DTS %v after %v", i, seqOf(u), u.Track.ID, u.DTS, d)
		}
		if u.PTS < u.DTS {
			t.Errorf("unit %d (seq %d): PTS %v < DTS %v", i, seqOf(u), u.PTS, u.DTS)
		}
		last[u.Track.ID] = u.DTS
	}
}

func TestPublishAndRead(t *testing.T) {
	h := newTestHub(t, testConf())
	if _, err := h.ReadTrusted(context.Background(), "live/test", ReadOptions{}); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("Read before Publish = %v, want ErrStreamNotFound", err)
	}
	if _, err := h.PublishTrusted("live/test", nil, PublishOptions{}); !errors.Is(err, ErrNoTracks) {
		t.Fatalf("Publish without tracks = %v, want ErrNoTracks", err)
	}
	p := mustPublish(t, h, "live/test", videoTracks())
	r := mustRead(t, h, "live/test")
	if got := r.Tracks(); len(got) != 2 || got[0] != trackV || got[1] != trackA {
		t.Errorf("Tracks() = %v", got)
	}
	if r.Stream() != p.Stream() || h.Stream("live/test") != p.Stream() {
		t.Errorf("reader, publisher and hub disagree on the stream")
	}
	units := genUnits(0, 20, 10, true)
	writeAll(p, units)
	p.Close()
	got, err := readAll(t, r)
	if !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("after the publisher left: %v, want ErrStreamClosed", err)
	}
	if len(got) != len(units) {
		t.Fatalf("got %d units, want %d", len(got), len(units))
	}
	for i := range got {
		if got[i] != units[i] {
			t.Fatalf("unit %d: got seq %d, want the same *Unit as written (seq %d)", i, seqOf(got[i]), seqOf(units[i]))
		}
	}
	if st := r.Stats(); st.UnitsOut != uint64(len(units)) || st.Drops != 0 || st.Overruns != 0 {
		t.Errorf("reader stats %+v", st)
	}
	if units[0].Size != 100 {
		t.Errorf("Write did not fill Size: %d", units[0].Size)
	}
	if h.Stream("live/test") != nil {
		t.Errorf("stream still listed after its publisher left with no grace period")
	}
	if _, err := r.Next(context.Background()); !errors.Is(err, ErrStreamClosed) {
		t.Errorf("Next after end = %v, want sticky ErrStreamClosed", err)
	}
}

func TestStreamStats(t *testing.T) {
	h := newTestHub(t, testConf())
	p := mustPublish(t, h, "live/stats", videoTracks())
	mustRead(t, h, "live/stats")
	r2 := mustRead(t, h, "live/stats")
	units := genUnits(0, 15, 10, false) // GOP at frame 10: 5 cached
	writeAll(p, units)
	st := p.Stream().Stats()
	want := StreamStats{Path: "live/stats", Publishing: true, Publisher: "test local", Readers: 2, UnitsIn: 15, BytesIn: 1500, Publishes: 1, CachedGOP: 5,
		PublisherRole: RoleMain}
	st.Uptime = 0
	if len(st.ReadersByProtocol) != 0 {
		t.Errorf("readers by protocol %v, want none (no reader said who it is)", st.ReadersByProtocol)
	}
	st.ReadersByProtocol = nil
	if !reflect.DeepEqual(st, want) {
		t.Errorf("Stats() = %+v, want %+v", st, want)
	}
	r2.Close()
	r2.Close() // twice is fine
	if n := p.Stream().Stats().Readers; n != 1 {
		t.Errorf("Readers after a Close = %d, want 1", n)
	}
	if len(h.Streams()) != 1 || h.Streams()[0] != p.Stream() {
		t.Errorf("Streams() = %v", h.Streams())
	}
}

// A reader joining mid-stream gets the cached GOP and then live units with
// no gap and no duplicate, however joins and writes interleave.
func TestAtomicJoinConcurrent(t *testing.T) {
	for _, join := range []string{JoinCache, JoinLive} {
		t.Run(join, func(t *testing.T) {
			pc := testConf()
			pc.Join = join
			pc.ReaderQueue = 1 << 14 // larger than the whole run: no reader may overrun
			h := newTestHub(t, pc)
			const path = "live/join"
			p := mustPublish(t, h, path, videoTracks())
			units := genUnits(0, 3000, 25, true)

			const joiners = 24
			type result struct {
				got []*media.Unit
				err error
				r   *Reader
			}
			results := make([]result, joiners)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for j := range joiners {
				wg.Go(func() {
					<-start
					// Join at a random moment while the publisher writes.
					time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
					r, err := h.ReadTrusted(context.Background(), path, ReadOptions{})
					if err != nil {
						results[j].err = err
						return
					}
					defer r.Close()
					got, err := readAll(t, r)
					results[j] = result{got, err, r}
				})
			}
			wg.Go(func() {
				<-start
				for i, u := range units {
					p.Write(u)
					if i%64 == 0 {
						time.Sleep(200 * time.Microsecond)
					}
				}
				p.Close()
			})
			close(start)
			wg.Wait()

			for j, res := range results {
				if !errors.Is(res.err, ErrStreamClosed) {
					t.Errorf("joiner %d ended with %v, want ErrStreamClosed", j, res.err)
					continue
				}
				got := res.got
				if len(got) == 0 {
					t.Errorf("joiner %d got nothing", j)
					continue
				}
				fv := firstVideo(got)
				if fv == nil || !fv.KeyFrame {
					t.Errorf("joiner %d: first video unit is not a keyframe", j)
					continue
				}
				// From the first video keyframe on, sequence numbers are consecutive
				// up to the last unit written. In cache mode the reader starts
				// exactly at it; in live mode only audio may come before it.
				i0 := 0
				for got[i0] != fv {
					if join == JoinCache {
						t.Errorf("joiner %d (cache join): unit %d before the first keyframe", j, i0)
					}
					i0++
				}
				for i := i0 + 1; i < len(got); i++ {
					if a, b := seqOf(got[i-1]), seqOf(got[i]); b != a+1 {
						t.Fatalf("joiner %d: seq %d followed by %d (gap or duplicate)", j, a, b)
					}
				}
				if last := seqOf(got[len(got)-1]); last != uint64(len(units)-1) {
					t.Errorf("joiner %d: last seq %d, want %d", j, last, len(units)-1)
				}
				if st := res.r.Stats(); st.Drops != 0 && join == JoinCache {
					t.Errorf("joiner %d: %d drops with a queue larger than the stream", j, st.Drops)
				}
				checkMonotonic(t, got)
			}
		})
	}
}

// The first video unit a reader gets is a keyframe, wherever it joins.
func TestFirstVideoUnitIsKeyframe(t *testing.T) {
	V := func(key bool) func(seq uint64, i int) *media.Unit {
		return func(seq uint64, i int) *media.Unit {
			return mkUnit(trackV, seq, key, time.Duration(i)*40*time.Millisecond)
		}
	}
	A := func(seq uint64, i int) *media.Unit {
		return mkUnit(trackA, seq, true, time.Duration(i)*40*time.Millisecond)
	}
	type mk = func(uint64, int) *media.Unit
	before := []mk{V(false), A, V(false), A}
	gop := []mk{V(true), A, V(false), A, V(false)}
	tests := []struct {
		name      string
		maxFrames int
		before    []mk // written before the reader joins
		after     []mk // written after
		wantFirst int  // index in before+after of the first video unit delivered
	}{
		{"join before anything", 1200, nil, append(append([]mk{}, before...), gop...), 4},
		{"join before the first keyframe", 1200, before, gop, 4},
		{"join mid-GOP", 1200, append(append([]mk{}, gop...), V(false), A), gop, 0},
		{"join right after a keyframe", 1200, append(append([]mk{}, gop...), V(true)), gop, 5},
		{"join after the GOP cache overflowed", 3, gop, append([]mk{V(false), A}, gop...), 7},
	}
	for _, join := range []string{JoinCache, JoinLive} {
		for _, tc := range tests {
			t.Run(join+"/"+tc.name, func(t *testing.T) {
				pc := testConf()
				pc.Join = join
				pc.GOPCache.MaxFrames = tc.maxFrames
				h := newTestHub(t, pc)
				p := mustPublish(t, h, "live/key", videoTracks())
				var all []*media.Unit
				for i, f := range append(append([]mk{}, tc.before...), tc.after...) {
					all = append(all, f(uint64(i), i))
				}
				writeAll(p, all[:len(tc.before)])
				r := mustRead(t, h, "live/key")
				writeAll(p, all[len(tc.before):])
				p.Close()
				got, err := readAll(t, r)
				if !errors.Is(err, ErrStreamClosed) {
					t.Fatalf("err = %v", err)
				}
				fv := firstVideo(got)
				if fv == nil {
					t.Fatalf("no video delivered: %v", seqs(got))
				}
				if !fv.KeyFrame {
					t.Errorf("first video unit delivered (seq %d) is not a keyframe; got %v", seqOf(fv), seqs(got))
				}
				want := uint64(tc.wantFirst)
				if join == JoinLive && tc.wantFirst < len(tc.before) {
					// Live join waits for the next keyframe written after it.
					want = 0
					for i := len(tc.before); i < len(all); i++ {
						if all[i].KeyFrame && all[i].Track.IsVideo() {
							want = uint64(i)
							break
						}
					}
				}
				if seqOf(fv) != want {
					t.Errorf("first video unit seq %d, want %d; got %v", seqOf(fv), want, seqs(got))
				}
			})
		}
	}
}

// A reader that does not read while more than ReaderQueue units are written
// skips to the next keyframe and counts what it skipped.
func TestReaderOverflowResync(t *testing.T) {
	tests := []struct {
		name       string
		audio      bool
		frames     int
		gop        int
		wantFirst  int64 // seq of the first unit delivered; -1: nothing
		wantDrops  uint64
		wantVideo1 uint64 // seq of the first video unit delivered
	}{
		// 40 video units, ring 16: oldest is 24, key at 30; 24 overrun + 6 non-key skipped.
		{"video only", false, 40, 10, 30, 30, 30},
		// 80 units (video even seqs, audio odd), keys at seqs 0,20,40,60; ring 16: oldest 64.
		// Video 64..78 has no keyframe: all 16 units skipped (audio waits for
		// the picture too); 64 overrun + 16 = 80 drops, nothing delivered.
		{"audio and video, no keyframe after the overrun", true, 40, 10, -1, 80, 0},
		// 120 units, gop 9: keys at seqs 0,18,...,108; ring 16: oldest 104.
		// 104..107 skipped (audio too), keyframe at 108; 104 + 4 = 108 drops.
		{"audio and video", true, 60, 9, 108, 108, 108},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pc := testConf()
			pc.ReaderQueue = 16
			pc.Join = JoinLive
			h := newTestHub(t, pc)
			p := mustPublish(t, h, "live/slow", videoTracks())
			r := mustRead(t, h, "live/slow")
			units := genUnits(0, tc.frames, tc.gop, tc.audio)
			writeAll(p, units)
			p.Close()
			got, err := readAll(t, r)
			if !errors.Is(err, ErrStreamClosed) {
				t.Fatalf("err = %v, want ErrStreamClosed (the lag bound is a minute)", err)
			}
			if tc.wantFirst < 0 {
				if len(got) != 0 {
					t.Fatalf("delivered %v, want nothing", seqs(got))
				}
				if st := r.Stats(); st.Drops != tc.wantDrops {
					t.Errorf("Drops = %d, want %d", st.Drops, tc.wantDrops)
				}
				return
			}
			if len(got) == 0 {
				t.Fatalf("nothing delivered")
			}
			if s := seqOf(got[0]); int64(s) != tc.wantFirst {
				t.Errorf("first unit after the overrun: seq %d, want %d", s, tc.wantFirst)
			}
			fv := firstVideo(got)
			if tc.wantVideo1 == 0 {
				if fv != nil {
					t.Errorf("video seq %d delivered without a keyframe after the overrun", seqOf(fv))
				}
			} else if fv == nil || !fv.KeyFrame || seqOf(fv) != tc.wantVideo1 {
				t.Errorf("first video after the overrun = %v, want keyframe seq %d", seqs(got), tc.wantVideo1)
			}
			if last := seqOf(got[len(got)-1]); last != uint64(len(units)-1) {
				t.Errorf("last seq %d, want %d", last, len(units)-1)
			}
			st := r.Stats()
			if st.Drops != tc.wantDrops {
				t.Errorf("Drops = %d, want %d", st.Drops, tc.wantDrops)
			}
			if st.Overruns != 1 {
				t.Errorf("Overruns = %d, want 1", st.Overruns)
			}
			if st.UnitsOut != uint64(len(got)) {
				t.Errorf("UnitsOut = %d, delivered %d", st.UnitsOut, len(got))
			}
			if st.Drops+st.UnitsOut != uint64(len(units)) {
				t.Errorf("Drops %d + UnitsOut %d != written %d", st.Drops, st.UnitsOut, len(units))
			}
		})
	}
}

// Exactly ReaderQueue units behind is not an overrun.
func TestReaderQueueBoundary(t *testing.T) {
	pc := testConf()
	pc.ReaderQueue = 16
	h := newTestHub(t, pc)
	p := mustPublish(t, h, "live/q", videoTracks())
	r := mustRead(t, h, "live/q")
	writeAll(p, genUnits(0, 16, 4, false))
	p.Close()
	got, err := readAll(t, r)
	if !errors.Is(err, ErrStreamClosed) || len(got) != 16 || r.Stats().Drops != 0 {
		t.Errorf("got %d units, err %v, stats %+v; want 16 units and no drops", len(got), err, r.Stats())
	}
}

// A reader that has been overrun and has not caught up with live for
// ReaderLagBound is closed with ErrReaderTooSlow.
func TestReaderLagClose(t *testing.T) {
	pc := testConf()
	pc.ReaderQueue = 16
	pc.ReaderLagBound = 50 * time.Millisecond
	h := newTestHub(t, pc)
	p := mustPublish(t, h, "live/lag", videoTracks())
	defer p.Close()

	fast := mustRead(t, h, "live/lag") // reads right away: never too slow
	slow := mustRead(t, h, "live/lag")
	units := genUnits(0, 100, 10, false)
	writeAll(p, units[:10])
	ctx := context.Background()
	for range 10 {
		if _, err := fast.Next(ctx); err != nil {
			t.Fatalf("fast reader: %v", err)
		}
	}
	time.Sleep(120 * time.Millisecond)
	writeAll(p, units[10:])
	if _, err := slow.Next(ctx); !errors.Is(err, ErrReaderTooSlow) {
		t.Fatalf("slow reader after %v overrun = %v, want ErrReaderTooSlow", 120*time.Millisecond, err)
	}
	if _, err := slow.Next(ctx); !errors.Is(err, ErrReaderTooSlow) {
		t.Errorf("ErrReaderTooSlow is not sticky: %v", err)
	}
	if slow.Stats().Drops == 0 {
		t.Errorf("slow reader counted no drops")
	}
	// The fast reader was caught up 120ms ago too, but it is overrun as well:
	// it lagged past the bound and is closed the same way.
	if _, err := fast.Next(ctx); !errors.Is(err, ErrReaderTooSlow) {
		t.Errorf("fast reader overrun after %v = %v, want ErrReaderTooSlow", 120*time.Millisecond, err)
	}
}

// An overrun within the lag bound only resyncs.
func TestReaderLagWithinBound(t *testing.T) {
	pc := testConf()
	pc.ReaderQueue = 16
	pc.ReaderLagBound = 5 * time.Second
	h := newTestHub(t, pc)
	p := mustPublish(t, h, "live/lag", videoTracks())
	defer p.Close()
	r := mustRead(t, h, "live/lag")
	writeAll(p, genUnits(0, 100, 10, false))
	u, err := r.Next(context.Background())
	if err != nil {
		t.Fatalf("Next = %v, want a resync", err)
	}
	if !u.KeyFrame || seqOf(u) != 90 {
		t.Errorf("resynced at seq %d key %v, want keyframe 90", seqOf(u), u.KeyFrame)
	}
}

// A new publisher within the grace period continues the stream for the
// existing readers, with timestamps continuing after the old ones.
func TestRepublishWithinGrace(t *testing.T) {
	tests := []struct {
		name  string
		dts0  time.Duration // where the second publisher's clock starts
		audio bool
	}{
		{"clock restarts at zero", 0, false},
		{"clock restarts at zero with audio", 0, true},
		{"clock far ahead", time.Hour, true},
		{"clock behind", -3 * time.Second, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pc := testConf()
			pc.GracePeriod = 500 * time.Millisecond // short: the readers end when it expires
			h := newTestHub(t, pc)
			const path = "live/re"
			p1 := mustPublish(t, h, path, videoTracks())
			r := mustRead(t, h, path)
			first := genUnits(0, 10, 5, tc.audio)
			writeAll(p1, first)
			lastDTS := first[len(first)-1].DTS
			p1.Close()

			s := h.Stream(path)
			if s == nil || s.Stats().Publishing {
				t.Fatalf("stream in grace: %v", s)
			}
			// A reader may join during the grace period.
			r2 := mustRead(t, h, path)

			tracks2 := []*media.Track{{ID: 0, Codec: media.CodecH264, Generation: 0, Width: 640, Height: 360}, trackA}
			p2 := mustPublish(t, h, path, tracks2)
			if p2.Stream() != s {
				t.Fatalf("republish made a new stream: readers would be orphaned")
			}
			second := genUnits(uint64(len(first)), 10, 5, tc.audio)
			orig2 := make([]time.Duration, len(second))
			for i, u := range second {
				u.DTS += tc.dts0
				u.PTS += tc.dts0
				orig2[i] = u.DTS
			}
			writeAll(p2, second)
			p1.Write(mkUnit(trackV, 9999, true, 0)) // the old publisher is gone
			p1.Close()                              // and closing it again does nothing
			if !s.Stats().Publishing {
				t.Fatalf("closing the old publisher detached the new one")
			}
			p2.Close()

			got, err := readAll(t, r)
			if !errors.Is(err, ErrStreamClosed) {
				t.Fatalf("err = %v", err)
			}
			if n := len(first) + len(second); len(got) != n {
				t.Fatalf("reader got %d units, want %d: %v", len(got), n, seqs(got))
			}
			for i, u := range got {
				if seqOf(u) != uint64(i) {
					t.Fatalf("unit %d has seq %d", i, seqOf(u))
				}
			}
			checkMonotonic(t, got)
			if d := got[len(first)].DTS; d != lastDTS+republishGap {
				t.Errorf("first DTS of the new publisher = %v, want %v", d, lastDTS+republishGap)
			}
			for i, u := range got[len(first):] {
				if u.DTS-got[len(first)].DTS != orig2[i]-orig2[0] {
					t.Errorf("offset not constant at unit %d", i)
					break
				}
			}
			if st := s.Stats(); st.Publishes != 2 {
				t.Errorf("Publishes = %d, want 2", st.Publishes)
			}
			// It starts at the old publisher's cached GOP and continues
			// into the new one's units with no gap.
			got2, _ := readAll(t, r2)
			if len(got2) < len(second) || !got2[0].KeyFrame || seqOf(got2[len(got2)-1]) != uint64(len(first)+len(second)-1) {
				t.Errorf("reader joined in grace got %v", seqs(got2))
			}
			for i := 1; i < len(got2); i++ {
				if seqOf(got2[i]) != seqOf(got2[i-1])+1 {
					t.Errorf("reader joined in grace: gap at %d: %v", i, seqs(got2))
					break
				}
			}
			if r3, err := h.ReadTrusted(context.Background(), path, ReadOptions{}); err == nil {
				r3.Close()
				t.Errorf("Read after the stream ended succeeded")
			}
		})
	}
}

// A new publisher whose first video unit is not a keyframe must not hand
// existing readers undecodable video.
func TestRepublishStartsAtKeyframe(t *testing.T) {
	pc := testConf()
	pc.GracePeriod = 5 * time.Second
	h := newTestHub(t, pc)
	p1 := mustPublish(t, h, "live/re", videoTracks())
	r := mustRead(t, h, "live/re")
	first := genUnits(0, 10, 5, true)
	writeAll(p1, first)
	p1.Close()
	p2 := mustPublish(t, h, "live/re", videoTracks())
	// The new source was already running: it starts mid-GOP.
	second := genUnits(100, 20, 10, true)[6:]
	writeAll(p2, second)
	p2.Close()
	h.Close()
	got, err := readAll(t, r)
	if !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("err = %v", err)
	}
	var after []*media.Unit
	for _, u := range got {
		if seqOf(u) >= 100 {
			after = append(after, u)
		}
	}
	fv := firstVideo(after)
	if fv == nil || !fv.KeyFrame {
		t.Errorf("after the republish the first video unit is not a keyframe: %v", seqs(after))
	}
	checkMonotonic(t, got)
}

// Without a new publisher, the grace period ends the stream; readers get
// ErrStreamClosed after draining what was queued.
func TestGraceExpiry(t *testing.T) {
	pc := testConf()
	pc.GracePeriod = 50 * time.Millisecond
	h := newTestHub(t, pc)
	const path = "live/grace"
	p := mustPublish(t, h, path, videoTracks())
	queued := mustRead(t, h, path)  // does not read until the end
	waiting := mustRead(t, h, path) // blocked in Next when the grace ends
	units := genUnits(0, 5, 5, false)
	writeAll(p, units)
	for range units {
		if _, err := waiting.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	if h.Stream(path) == nil {
		t.Fatalf("stream gone at once despite a grace period and readers")
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := waiting.Next(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStreamClosed) {
			t.Errorf("waiting reader got %v, want ErrStreamClosed", err)
		}
		if el := time.Since(start); el < 40*time.Millisecond {
			t.Errorf("waiting reader ended after %v, before the grace period", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("waiting reader not woken by the end of the grace period")
	}
	if h.Stream(path) != nil {
		t.Errorf("stream still listed after the grace period")
	}
	if _, err := h.ReadTrusted(context.Background(), path, ReadOptions{}); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("Read after grace = %v, want ErrStreamNotFound", err)
	}
	got, err := readAll(t, queued)
	if !errors.Is(err, ErrStreamClosed) || len(got) != len(units) {
		t.Errorf("queued reader got %d units then %v; want %d then ErrStreamClosed", len(got), err, len(units))
	}
	// A new publisher makes a new stream; the old readers stay closed.
	p2 := mustPublish(t, h, path, videoTracks())
	defer p2.Close()
	if p2.Stream() == p.Stream() {
		t.Errorf("publish after grace reused the ended stream")
	}
	p2.Write(mkUnit(trackV, 50, true, 0))
	if _, err := queued.Next(context.Background()); !errors.Is(err, ErrStreamClosed) {
		t.Errorf("old reader after a new publish = %v", err)
	}
}

// With no readers, a publisher leaving ends the stream at once, grace or not.
func TestNoReadersNoGrace(t *testing.T) {
	pc := testConf()
	pc.GracePeriod = time.Hour
	h := newTestHub(t, pc)
	p := mustPublish(t, h, "live/x", videoTracks())
	p.Close()
	if h.Stream("live/x") != nil {
		t.Errorf("stream without readers kept for the grace period")
	}
}

func TestPublishRefusals(t *testing.T) {
	pc := testConf()
	pc.MaxReaders = 2
	keyed := pc
	keyed.PublishKey = "s3cret"
	h := NewHub(HubConfig{Logger: discardLogger(), PathConfig: func(p string) PathConfig {
		if p == "secure/cam" {
			return keyed
		}
		return pc
	}})
	defer h.Close()

	p := mustPublish(t, h, "live/busy", videoTracks())
	for _, key := range []string{"", "s3cret"} {
		if _, err := h.PublishTrusted("live/busy", videoTracks(), PublishOptions{Key: key}); !errors.Is(err, ErrPathBusy) {
			t.Errorf("second publisher (key %q) = %v, want ErrPathBusy", key, err)
		}
	}
	p.Write(mkUnit(trackV, 0, true, 0))
	if st := p.Stream().Stats(); st.UnitsIn != 1 || !st.Publishing {
		t.Errorf("the refused publisher disturbed the first: %+v", st)
	}

	keys := []struct {
		key  string
		want error
	}{
		{"", ErrUnauthorized},
		{"wrong", ErrUnauthorized},
		{"s3cre", ErrUnauthorized},
		{"s3cret ", ErrUnauthorized},
		{"S3CRET", ErrUnauthorized},
		{"s3cret", nil},
	}
	for _, k := range keys {
		pub, err := h.PublishTrusted("secure/cam", videoTracks(), PublishOptions{Key: k.key})
		if !errors.Is(err, k.want) {
			t.Errorf("Publish with key %q = %v, want %v", k.key, err, k.want)
		}
		if err == nil {
			pub.Close()
		} else if h.Stream("secure/cam") != nil {
			t.Errorf("a refused publish left a stream behind")
		}
	}
	// Paths without a key accept any.
	if pub, err := h.PublishTrusted("live/open", videoTracks(), PublishOptions{Key: "anything"}); err != nil {
		t.Errorf("Publish on a path without key: %v", err)
	} else {
		pub.Close()
	}

	r1 := mustRead(t, h, "live/busy")
	mustRead(t, h, "live/busy")
	if _, err := h.ReadTrusted(context.Background(), "live/busy", ReadOptions{}); !errors.Is(err, ErrTooManyReaders) {
		t.Errorf("third reader = %v, want ErrTooManyReaders", err)
	}
	r1.Close()
	if r, err := h.ReadTrusted(context.Background(), "live/busy", ReadOptions{}); err != nil {
		t.Errorf("reader after one left = %v", err)
	} else {
		r.Close()
	}
}

// Catch-up squeezes the cached GOP into the window, keeps DTS monotonic,
// drops old audio and leaves the cached units untouched.
func TestCatchUp(t *testing.T) {
	tests := []struct {
		name    string
		catchUp time.Duration
		frames  int // video frames in the cached GOP, 40ms apart, audio after each
	}{
		{"2s GOP into 200ms", 200 * time.Millisecond, 50},
		{"4s GOP into 1s", time.Second, 100},
		{"GOP shorter than the window is untouched", 2 * time.Second, 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pc := testConf()
			pc.CatchUp = tc.catchUp
			h := newTestHub(t, pc)
			p := mustPublish(t, h, "live/cu", videoTracks())
			defer p.Close()
			units := genUnits(0, tc.frames, 1000, true)
			writeAll(p, units)
			type ts struct{ pts, dts time.Duration }
			orig := make([]ts, len(units))
			for i, u := range units {
				orig[i] = ts{u.PTS, u.DTS}
			}
			// The squeeze is anchored on the newest video unit; audio
			// after it keeps its time.
			last := units[len(units)-1].DTS
			newest := last
			for i := len(units) - 1; i >= 0; i-- {
				if units[i].Track.IsVideo() {
					newest = units[i].DTS
					break
				}
			}
			span := newest - units[0].DTS

			r := mustRead(t, h, "live/cu")
			got, err := r.NextBatch(context.Background(), make([]*media.Unit, 0, 4096))
			if err != nil {
				t.Fatal(err)
			}
			for i, u := range units {
				if u.PTS != orig[i].pts || u.DTS != orig[i].dts {
					t.Fatalf("catch-up modified cached unit %d", i)
				}
			}
			if !got[0].KeyFrame || !got[0].Track.IsVideo() {
				t.Errorf("first catch-up unit is not the video keyframe")
			}
			checkMonotonic(t, got)

			nv, na := 0, 0
			for _, u := range got {
				if u.Track.IsVideo() {
					nv++
				} else {
					na++
				}
			}
			if nv != tc.frames {
				t.Errorf("%d video units, want all %d", nv, tc.frames)
			}
			if span <= tc.catchUp {
				if len(got) != len(units) {
					t.Fatalf("got %d units, want %d", len(got), len(units))
				}
				for i := range got {
					if got[i] != units[i] {
						t.Errorf("unit %d was copied although nothing needed retiming", i)
					}
				}
				return
			}
			const eps = time.Microsecond // float rounding in the squeeze
			if first := got[0].DTS; first < newest-tc.catchUp-eps || first > newest-tc.catchUp+eps {
				t.Errorf("first DTS %v, want newest-catchUp = %v", first, newest-tc.catchUp)
			}
			for _, u := range got {
				if u.DTS < newest-tc.catchUp-eps || u.DTS > last {
					t.Errorf("seq %d DTS %v outside the window [%v, %v]", seqOf(u), u.DTS, newest-tc.catchUp, last)
				}
				if !u.Track.IsVideo() {
					if newest-u.DTS > tc.catchUp {
						t.Errorf("audio seq %d older than the window kept", seqOf(u))
					}
					if u != units[seqOf(u)] {
						t.Errorf("kept audio seq %d was copied", seqOf(u))
					}
				} else if u == units[seqOf(u)] && u.DTS != newest {
					t.Errorf("retimed video seq %d is the cached unit itself", seqOf(u))
				}
			}
			wantAudio := 0
			for _, u := range units {
				if !u.Track.IsVideo() && newest-u.DTS <= tc.catchUp {
					wantAudio++
				}
			}
			if na != wantAudio {
				t.Errorf("%d audio units, want %d", na, wantAudio)
			}
			// Live units follow without going back in time.
			live := mkUnit(trackV, uint64(len(units)), false, newest+40*time.Millisecond)
			p.Write(live)
			u, err := r.Next(context.Background())
			if err != nil || u != live {
				t.Fatalf("live unit after catch-up: %v %v", u, err)
			}
			checkMonotonic(t, append(got, u))
		})
	}
}

func TestCatchUpEdgeCases(t *testing.T) {
	if got := catchUp(nil, time.Second); len(got) != 0 {
		t.Errorf("catchUp(nil) = %v", got)
	}
	one := []*media.Unit{mkUnit(trackV, 0, true, 0)}
	if got := catchUp(one, time.Millisecond); len(got) != 1 || got[0] != one[0] {
		t.Errorf("catchUp of one unit changed it")
	}
}

func TestNextBatch(t *testing.T) {
	tests := []struct {
		name    string
		join    string
		written int // units written before the first NextBatch (10 per GOP, cached or live)
		capDst  int
		prefix  int // units already in dst
		want    []int
	}{
		{"live units at once", JoinLive, 10, 64, 0, []int{10}},
		{"live units bounded by cap", JoinLive, 10, 4, 0, []int{4, 4, 2}},
		{"full dst still gets one", JoinLive, 3, 0, 0, []int{1, 1, 1}},
		{"prefix kept", JoinLive, 10, 8, 3, []int{5, 5}},
		{"cached GOP at once", JoinCache, 10, 64, 0, []int{10}},
		{"cached GOP bounded by cap", JoinCache, 10, 3, 0, []int{3, 3, 3, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pc := testConf()
			pc.Join = tc.join
			h := newTestHub(t, pc)
			p := mustPublish(t, h, "live/b", videoTracks())
			defer p.Close()
			units := genUnits(0, tc.written, 10, false)
			var r *Reader
			if tc.join == JoinLive {
				r = mustRead(t, h, "live/b")
				writeAll(p, units)
			} else {
				writeAll(p, units)
				r = mustRead(t, h, "live/b")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var next uint64
			for i, want := range tc.want {
				dst := make([]*media.Unit, tc.prefix, tc.capDst)
				out, err := r.NextBatch(ctx, dst)
				if err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
				if n := len(out) - tc.prefix; n != want {
					t.Errorf("batch %d: %d units, want %d", i, n, want)
				}
				for _, u := range out[tc.prefix:] {
					if seqOf(u) != next {
						t.Errorf("batch %d: seq %d, want %d", i, seqOf(u), next)
					}
					next++
				}
				for j := range tc.prefix {
					if out[j] != nil {
						t.Errorf("prefix entry %d changed", j)
					}
				}
			}
			if next != uint64(tc.written) {
				t.Errorf("read %d units, want %d", next, tc.written)
			}
		})
	}
}

func TestNextContextCancel(t *testing.T) {
	h := newTestHub(t, testConf())
	p := mustPublish(t, h, "live/ctx", videoTracks())
	defer p.Close()
	r := mustRead(t, h, "live/ctx")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.Next(ctx)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Next after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("cancel did not unblock Next")
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := r.Next(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next with a deadline = %v, want DeadlineExceeded", err)
	}

	// A cancelled wait does not break the reader.
	u := mkUnit(trackV, 0, true, 0)
	p.Write(u)
	got, err := r.Next(context.Background())
	if err != nil || got != u {
		t.Errorf("Next after a cancelled wait = %v, %v", got, err)
	}
}

// Write wakes every waiting reader.
func TestWriteWakesAllWaiting(t *testing.T) {
	h := newTestHub(t, testConf())
	p := mustPublish(t, h, "live/wake", videoTracks())
	defer p.Close()
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range n {
		r := mustRead(t, h, "live/wake")
		wg.Go(func() {
			for want := range uint64(3) {
				u, err := r.Next(ctx)
				if err != nil {
					errs <- err
					return
				}
				if seqOf(u) != want {
					errs <- fmt.Errorf("seq %d, want %d", seqOf(u), want)
					return
				}
			}
		})
	}
	for i := range 3 {
		time.Sleep(10 * time.Millisecond)
		p.Write(mkUnit(trackV, uint64(i), i == 0, time.Duration(i)*40*time.Millisecond))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestReaderClose(t *testing.T) {
	for _, join := range []string{JoinCache, JoinLive} {
		t.Run(join, func(t *testing.T) {
			pc := testConf()
			pc.Join = join
			h := newTestHub(t, pc)
			p := mustPublish(t, h, "live/rc", videoTracks())
			defer p.Close()
			writeAll(p, genUnits(0, 5, 5, true)) // a cached GOP for cache joins
			r := mustRead(t, h, "live/rc")
			writeAll(p, genUnits(10, 5, 5, true)) // live units queued
			r.Close()
			if _, err := r.Next(context.Background()); !errors.Is(err, ErrReaderClosed) {
				t.Errorf("Next after Close = %v, want ErrReaderClosed", err)
			}
			if _, err := r.NextBatch(context.Background(), make([]*media.Unit, 0, 16)); !errors.Is(err, ErrReaderClosed) {
				t.Errorf("NextBatch after Close = %v, want ErrReaderClosed", err)
			}
			if n := p.Stream().Stats().Readers; n != 0 {
				t.Errorf("Readers = %d after Close", n)
			}
		})
	}
}

func TestHubClose(t *testing.T) {
	pc := testConf()
	pc.GracePeriod = time.Hour
	h := NewHub(HubConfig{PathConfig: func(string) PathConfig { return pc }, Logger: discardLogger()})
	p := mustPublish(t, h, "live/a", videoTracks())
	pGrace := mustPublish(t, h, "live/b", videoTracks())
	waiting := mustRead(t, h, "live/a")
	queued := mustRead(t, h, "live/a")
	inGrace := mustRead(t, h, "live/b")
	pGrace.Close() // live/b is in its grace period

	units := genUnits(0, 3, 3, false)
	writeAll(p, units)
	for range units {
		if _, err := waiting.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := waiting.Next(context.Background())
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	h.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStreamClosed) {
			t.Errorf("waiting reader got %v, want ErrStreamClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Hub.Close did not wake a waiting reader")
	}
	got, err := readAll(t, queued)
	if !errors.Is(err, ErrStreamClosed) || len(got) != len(units) {
		t.Errorf("queued reader: %d units then %v", len(got), err)
	}
	if _, err := readAll(t, inGrace); !errors.Is(err, ErrStreamClosed) {
		t.Errorf("reader in grace: %v", err)
	}
	p.Write(mkUnit(trackV, 99, true, time.Second)) // no effect, no panic
	p.Close()
	if _, err := h.PublishTrusted("live/c", videoTracks(), PublishOptions{}); !errors.Is(err, ErrHubClosed) {
		t.Errorf("Publish after Close = %v, want ErrHubClosed", err)
	}
	if _, err := h.ReadTrusted(context.Background(), "live/a", ReadOptions{}); !errors.Is(err, ErrHubClosed) {
		t.Errorf("Read after Close = %v, want ErrHubClosed", err)
	}
	if n := len(h.Streams()); n != 0 {
		t.Errorf("%d streams after Close", n)
	}
	h.Close() // twice is fine
}

// A publisher leaving and a new one arriving at the same moment: the new one
// must end up live on the hub, never attached to a stream that is being ended.
func TestPublisherCloseRacesPublish(t *testing.T) {
	h := newTestHub(t, testConf())
	const path = "live/race"
	for i := range 300 {
		p1 := mustPublish(t, h, path, videoTracks())
		var p2 *Publisher
		var wg sync.WaitGroup
		wg.Go(p1.Close)
		wg.Go(func() {
			for {
				p, err := h.PublishTrusted(path, videoTracks(), PublishOptions{})
				if errors.Is(err, ErrPathBusy) {
					continue
				}
				if err != nil {
					t.Errorf("Publish: %v", err)
				}
				p2 = p
				return
			}
		})
		wg.Wait()
		if p2 == nil {
			t.FailNow()
		}
		if h.Stream(path) != p2.Stream() || !p2.Stream().Stats().Publishing {
			t.Fatalf("iteration %d: the new publisher is attached to a stream the hub dropped", i)
		}
		r := mustRead(t, h, path)
		u := mkUnit(trackV, 1, true, 0)
		p2.Write(u)
		if got, err := r.Next(context.Background()); err != nil || got != u {
			t.Fatalf("iteration %d: reader of the new publisher got %v, %v", i, got, err)
		}
		r.Close()
		p2.Close()
	}
}

// Audio-only streams: readers join on the trailing audio window.
func TestAudioOnlyStream(t *testing.T) {
	pc := testConf()
	pc.GOPCache.AudioOnlyWindow = 100 * time.Millisecond
	h := newTestHub(t, pc)
	tracks := audioTracks()
	p := mustPublish(t, h, "live/radio", tracks)
	for i := range 50 {
		p.Write(mkUnit(tracks[0], uint64(i), true, time.Duration(i)*20*time.Millisecond))
	}
	r := mustRead(t, h, "live/radio")
	p.Write(mkUnit(tracks[0], 50, true, time.Second))
	p.Close()
	got, err := readAll(t, r)
	if !errors.Is(err, ErrStreamClosed) {
		t.Fatal(err)
	}
	// Window 100ms before DTS 980ms: 880..980 = 6 units, then unit 50.
	if want := []uint64{44, 45, 46, 47, 48, 49, 50}; fmt.Sprint(seqs(got)) != fmt.Sprint(want) {
		t.Errorf("audio-only join got %v, want %v", seqs(got), want)
	}
}

func TestUpdateTrack(t *testing.T) {
	h := newTestHub(t, testConf())
	p := mustPublish(t, h, "live/ut", videoTracks())
	defer p.Close()
	r1 := mustRead(t, h, "live/ut")
	v2 := &media.Track{ID: 0, Generation: 1, Codec: media.CodecH264, Width: 1920, Height: 1080}
	p.UpdateTrack(v2)
	p.UpdateTrack(&media.Track{ID: 7, Codec: media.CodecH264}) // out of range: ignored
	r2 := mustRead(t, h, "live/ut")
	if r1.Tracks()[0] != trackV {
		t.Errorf("an existing reader's Tracks changed")
	}
	if got := r2.Tracks(); len(got) != 2 || got[0] != v2 {
		t.Errorf("new reader's Tracks = %v, want the new generation", got)
	}
	if got := p.Stream().Tracks(); got[0] != v2 {
		t.Errorf("Stream.Tracks = %v", got)
	}
}

// Write allocates nothing per reader, waiting or not.
func TestWriteAllocs(t *testing.T) {
	h := newTestHub(t, testConf())
	p := mustPublish(t, h, "live/alloc", videoTracks())
	defer p.Close()
	for range 100 {
		mustRead(t, h, "live/alloc")
	}
	units := genUnits(0, 100, 25, false)
	writeAll(p, units) // the GOP cache reaches its high-water mark
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		p.Write(units[i%len(units)])
		i++
	})
	if allocs != 0 {
		t.Errorf("Write with 100 idle readers allocates %v times", allocs)
	}
}

// Audio that arrives ahead of the video (ffmpeg's RTSP publisher sends it
// in bursts) must not pull the squeezed video past the next live picture.
func TestCatchUpAudioAhead(t *testing.T) {
	pc := testConf()
	pc.CatchUp = 100 * time.Millisecond
	h := newTestHub(t, pc)
	p := mustPublish(t, h, "live/ahead", videoTracks())
	defer p.Close()
	var seq uint64
	for i := range 50 { // a 2 s GOP, audio 85 ms ahead of each picture
		dts := time.Duration(i) * 40 * time.Millisecond
		p.Write(mkUnit(trackV, seq, i == 0, dts))
		p.Write(mkUnit(trackA, seq+1, true, dts+85*time.Millisecond))
		seq += 2
	}
	r := mustRead(t, h, "live/ahead")
	p.Write(mkUnit(trackV, seq, false, 50*40*time.Millisecond)) // the next live picture
	got, err := r.NextBatch(context.Background(), make([]*media.Unit, 0, 4096))
	if err != nil {
		t.Fatal(err)
	}
	more, err := r.NextBatch(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var last time.Duration = -1
	for _, u := range append(got, more...) {
		if !u.Track.IsVideo() {
			continue
		}
		if u.DTS <= last {
			t.Fatalf("video DTS %v after %v: the catch-up overtook live", u.DTS, last)
		}
		last = u.DTS
	}
}

// Audio that arrives late (MPEG-TS publishers pack ~370 ms of audio per
// PES) must not reach a joining reader from before its first picture, in
// either join mode.
func TestNoAudioBeforeFirstPicture(t *testing.T) {
	for _, join := range []string{JoinCache, JoinLive} {
		t.Run(join, func(t *testing.T) {
			pc := testConf()
			pc.Join = join
			h := newTestHub(t, pc)
			p := mustPublish(t, h, "live/late", videoTracks())
			defer p.Close()
			var seq uint64
			write := func(from, to int) {
				for i := from; i < to; i++ { // audio 300 ms behind the video it arrives with
					dts := time.Duration(i) * 40 * time.Millisecond
					p.Write(mkUnit(trackV, seq, i%25 == 0, dts))
					if dts >= 300*time.Millisecond {
						p.Write(mkUnit(trackA, seq+1, true, dts-300*time.Millisecond))
					}
					seq += 2
				}
			}
			write(0, 40) // the cached GOP starts at frame 25 (1 s)
			r := mustRead(t, h, "live/late")
			write(40, 80)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var first time.Duration = -1
			for n := 0; n < 40; n++ {
				u, err := r.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if u.Track.IsVideo() && first < 0 {
					first = u.DTS
				}
				if !u.Track.IsVideo() && (first < 0 || u.DTS < first) {
					t.Fatalf("audio at %v before the first picture at %v", u.DTS, first)
				}
			}
		})
	}
}

// TestBacklogRealTiming: a NoCatchUp reader asking for a backlog gets the
// earlier cached GOPs with their real timing (an HLS segmenter cuts them
// into complete segments at once); a reader of a path without catch-up
// does not (it would play that far behind live).
func TestBacklogRealTiming(t *testing.T) {
	pc := testConf()
	pc.GOPCache.Backlog = 3 * time.Second
	h := newTestHub(t, pc)
	p := mustPublish(t, h, "live/bl", videoTracks())
	defer p.Close()
	units := genUnits(0, 130, 25, true) // 1 s GOPs, 5.2 s
	writeAll(p, units)
	first := func(opts ReadOptions) (*media.Unit, int) {
		r, err := h.ReadTrusted(context.Background(), "live/bl", opts)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got, err := r.NextBatch(context.Background(), make([]*media.Unit, 0, 4096))
		if err != nil {
			t.Fatal(err)
		}
		return got[0], len(got)
	}
	// The newest keyframe is at 5 s; at least 1 s back: 4 s.
	u, n := first(ReadOptions{NoCatchUp: true, Backlog: time.Second})
	if !u.KeyFrame || u.DTS != 4*time.Second {
		t.Errorf("NoCatchUp with a 1 s backlog starts at %s (key %v), want the keyframe at 4s", u.DTS, u.KeyFrame)
	}
	if n != 60 { // 30 pictures and their audio, as written
		t.Errorf("%d units, want 60 with their real timing", n)
	}
	for _, opts := range []ReadOptions{{NoCatchUp: true}, {Backlog: time.Second}} {
		if u, _ := first(opts); u.DTS != 5*time.Second {
			t.Errorf("%+v starts at %s, want the newest keyframe (5s)", opts, u.DTS)
		}
	}
}

// TestWaitStream: WaitStream returns when the path is published (woken by
// the publish, not by time), false when its context ends first, and at
// once for a live path.
func TestWaitStream(t *testing.T) {
	h := newTestHub(t, DefaultPathConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if h.WaitStream(ctx, "live/w") {
		t.Fatal("WaitStream said a path nobody publishes has a stream")
	}
	done := make(chan bool, 1)
	go func() { done <- h.WaitStream(context.Background(), "live/w") }()
	if _, err := h.PublishTrusted("live/other", videoTracks(), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		t.Fatal("WaitStream returned for another path's publish")
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := h.PublishTrusted("live/w", videoTracks(), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("WaitStream said false after the path was published")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitStream did not return after the publish")
	}
	if !h.WaitStream(context.Background(), "live/w") {
		t.Fatal("WaitStream on a live path said false")
	}
}
