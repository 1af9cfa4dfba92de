package gopcache

import (
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

var (
	video = &media.Track{ID: 0, Codec: media.CodecH264}
	audio = &media.Track{ID: 1, Codec: media.CodecAAC}
)

// unit builds a unit the way the hub hands it to the cache (Size filled).
func unit(t *media.Track, key bool, dts time.Duration, size int) *media.Unit {
	u := &media.Unit{Track: t, PTS: dts, DTS: dts, KeyFrame: key || !t.IsVideo(), Payload: [][]byte{make([]byte, size)}}
	u.Size = u.PayloadSize()
	return u
}

// step is one unit offered to the cache in a table.
type step struct {
	track *media.Track
	key   bool
	dts   time.Duration
	size  int
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestCacheVideo(t *testing.T) {
	V := func(key bool, d, size int) step { return step{video, key, ms(d), size} }
	A := func(d, size int) step { return step{audio, true, ms(d), size} }
	tests := []struct {
		name      string
		limits    Limits
		steps     []step
		want      []int // indexes into steps of the cached units, oldest first
		overflows int
	}{
		{
			name:  "empty",
			steps: nil,
			want:  nil,
		},
		{
			name:   "units before the first keyframe are not cached",
			limits: Limits{MaxFrames: 100, MaxBytes: 1 << 20},
			steps:  []step{V(false, 0, 10), A(10, 5), V(false, 40, 10), A(30, 5)},
			want:   nil,
		},
		{
			name:   "cache starts at the first keyframe",
			limits: Limits{MaxFrames: 100, MaxBytes: 1 << 20},
			steps:  []step{V(false, 0, 10), A(10, 5), V(true, 40, 10), V(false, 80, 10)},
			want:   []int{2, 3},
		},
		{
			name:   "audio interleaved after a keyframe is cached",
			limits: Limits{MaxFrames: 100, MaxBytes: 1 << 20},
			steps:  []step{V(true, 0, 10), A(0, 5), A(21, 5), V(false, 40, 10), A(42, 5)},
			want:   []int{0, 1, 2, 3, 4},
		},
		{
			name:   "keyframe resets the cache",
			limits: Limits{MaxFrames: 100, MaxBytes: 1 << 20},
			steps:  []step{V(true, 0, 10), A(0, 5), V(false, 40, 10), V(true, 80, 10), A(80, 5), V(false, 120, 10)},
			want:   []int{3, 4, 5},
		},
		{
			name:   "audio keyframes do not reset a video stream's cache",
			limits: Limits{MaxFrames: 100, MaxBytes: 1 << 20},
			steps:  []step{V(true, 0, 10), A(0, 5), A(20, 5), A(40, 5)},
			want:   []int{0, 1, 2, 3},
		},
		{
			name:      "exceeding MaxFrames drops the GOP",
			limits:    Limits{MaxFrames: 3, MaxBytes: 1 << 20},
			steps:     []step{V(true, 0, 10), V(false, 40, 10), V(false, 80, 10), V(false, 120, 10)},
			want:      nil,
			overflows: 1,
		},
		{
			name:   "exactly MaxFrames is kept",
			limits: Limits{MaxFrames: 3, MaxBytes: 1 << 20},
			steps:  []step{V(true, 0, 10), V(false, 40, 10), V(false, 80, 10)},
			want:   []int{0, 1, 2},
		},
		{
			name:      "after a MaxFrames overflow caching resumes at the next keyframe",
			limits:    Limits{MaxFrames: 3, MaxBytes: 1 << 20},
			steps:     []step{V(true, 0, 10), V(false, 40, 10), V(false, 80, 10), V(false, 120, 10), V(false, 160, 10), A(170, 5), V(true, 200, 10), A(210, 5)},
			want:      []int{6, 7},
			overflows: 1,
		},
		{
			name:      "exceeding MaxBytes drops the GOP",
			limits:    Limits{MaxFrames: 100, MaxBytes: 100},
			steps:     []step{V(true, 0, 60), V(false, 40, 30), V(false, 80, 30)},
			want:      nil,
			overflows: 1,
		},
		{
			name:   "exactly MaxBytes is kept",
			limits: Limits{MaxFrames: 100, MaxBytes: 100},
			steps:  []step{V(true, 0, 60), V(false, 40, 20), A(50, 20)},
			want:   []int{0, 1, 2},
		},
		{
			name:      "after a MaxBytes overflow caching resumes at the next keyframe",
			limits:    Limits{MaxFrames: 100, MaxBytes: 100},
			steps:     []step{V(true, 0, 60), V(false, 40, 60), V(false, 80, 10), V(true, 120, 10), V(false, 160, 10)},
			want:      []int{3, 4},
			overflows: 1,
		},
		{
			name:      "a keyframe alone larger than MaxBytes is not kept",
			limits:    Limits{MaxFrames: 100, MaxBytes: 100},
			steps:     []step{V(true, 0, 200), V(false, 40, 10)},
			want:      nil,
			overflows: 1,
		},
		{
			name:   "zero limits mean unbounded",
			limits: Limits{},
			steps:  []step{V(true, 0, 1000), V(false, 40, 1000), V(false, 80, 1000), V(false, 120, 1000)},
			want:   []int{0, 1, 2, 3},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New(tc.limits, true)
			units := make([]*media.Unit, len(tc.steps))
			for i, s := range tc.steps {
				units[i] = unit(s.track, s.key, s.dts, s.size)
				c.Add(units[i])
			}
			got := c.AppendTo(nil)
			if len(got) != len(tc.want) {
				t.Fatalf("cached %d units, want %d (%v)", len(got), len(tc.want), tc.want)
			}
			wantBytes := 0
			for i, w := range tc.want {
				if got[i] != units[w] {
					t.Errorf("cached[%d] = unit DTS %v, want step %d (DTS %v)", i, got[i].DTS, w, units[w].DTS)
				}
				wantBytes += units[w].Size
			}
			if c.Len() != len(tc.want) {
				t.Errorf("Len() = %d, want %d", c.Len(), len(tc.want))
			}
			if c.Bytes() != wantBytes {
				t.Errorf("Bytes() = %d, want %d", c.Bytes(), wantBytes)
			}
			if c.Overflows() != tc.overflows {
				t.Errorf("Overflows() = %d, want %d", c.Overflows(), tc.overflows)
			}
			assertFirstVideoIsKey(t, got)
		})
	}
}

func assertFirstVideoIsKey(t *testing.T, got []*media.Unit) {
	t.Helper()
	for _, u := range got {
		if u.Track.IsVideo() {
			if !u.KeyFrame {
				t.Errorf("first cached video unit (DTS %v) is not a keyframe", u.DTS)
			}
			return
		}
	}
}

// A source that never sends another keyframe must not grow the cache without bound.
func TestCacheNoKeyframeStaysBounded(t *testing.T) {
	for _, l := range []Limits{{MaxFrames: 50, MaxBytes: 1 << 30}, {MaxFrames: 1 << 30, MaxBytes: 5000}} {
		c := New(l, true)
		c.Add(unit(video, true, 0, 100))
		maxLen, maxBytes := 0, 0
		for i := 1; i < 10000; i++ {
			c.Add(unit(video, false, ms(40*i), 100))
			c.Add(unit(audio, true, ms(40*i+5), 10))
			maxLen = max(maxLen, c.Len())
			maxBytes = max(maxBytes, c.Bytes())
		}
		if maxLen > l.MaxFrames {
			t.Errorf("%+v: cache reached %d units", l, maxLen)
		}
		if maxBytes > l.MaxBytes {
			t.Errorf("%+v: cache reached %d bytes", l, maxBytes)
		}
		if c.Len() != 0 {
			t.Errorf("%+v: %d units cached without a keyframe after the overflow", l, c.Len())
		}
		if c.Overflows() != 1 {
			t.Errorf("%+v: Overflows() = %d, want 1 (one GOP dropped, then nothing cached until a keyframe)", l, c.Overflows())
		}
	}
}

func TestCacheAudioOnly(t *testing.T) {
	tests := []struct {
		name     string
		limits   Limits
		n        int // audio units at 20ms spacing, size 10
		wantLen  int
		wantFrom time.Duration // DTS of the oldest cached unit
	}{
		{"window keeps trailing audio", Limits{MaxFrames: 1000, MaxBytes: 1 << 20, AudioOnlyWindow: ms(100)}, 50, 6, ms(49*20 - 100)},
		{"fewer units than the window", Limits{MaxFrames: 1000, MaxBytes: 1 << 20, AudioOnlyWindow: ms(500)}, 3, 3, 0},
		{"MaxFrames bounds the window", Limits{MaxFrames: 4, MaxBytes: 1 << 20, AudioOnlyWindow: ms(10000)}, 50, 4, ms(46 * 20)},
		{"MaxBytes bounds the window", Limits{MaxFrames: 1000, MaxBytes: 35, AudioOnlyWindow: ms(10000)}, 50, 3, ms(47 * 20)},
		{"zero window keeps the newest unit playable", Limits{MaxFrames: 1000, MaxBytes: 1 << 20}, 50, 1, ms(49 * 20)},
		{"a unit larger than MaxBytes is still kept alone", Limits{MaxFrames: 1000, MaxBytes: 5, AudioOnlyWindow: ms(1000)}, 10, 1, ms(9 * 20)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New(tc.limits, false)
			var last *media.Unit
			for i := range tc.n {
				last = unit(audio, true, ms(20*i), 10)
				c.Add(last)
				if c.Len() < 1 {
					t.Fatalf("after unit %d the audio-only cache is empty: a new reader could not start", i)
				}
			}
			got := c.AppendTo(nil)
			if len(got) != tc.wantLen {
				t.Fatalf("cached %d units, want %d", len(got), tc.wantLen)
			}
			if got[0].DTS != tc.wantFrom {
				t.Errorf("oldest cached DTS = %v, want %v", got[0].DTS, tc.wantFrom)
			}
			if got[len(got)-1] != last {
				t.Errorf("newest cached unit is not the last one added")
			}
			for i := 1; i < len(got); i++ {
				if got[i].DTS <= got[i-1].DTS {
					t.Errorf("cached units out of order at %d", i)
				}
			}
			if c.Bytes() != 10*len(got) {
				t.Errorf("Bytes() = %d, want %d", c.Bytes(), 10*len(got))
			}
		})
	}
}

// The audio-only cache stays bounded in length and bytes over a long run,
// and does not keep growing its backing array.
func TestCacheAudioOnlyBounded(t *testing.T) {
	c := New(Limits{MaxFrames: 1000, MaxBytes: 1 << 20, AudioOnlyWindow: ms(200)}, false)
	for i := range 100000 {
		c.Add(unit(audio, true, ms(20*i), 10))
		if c.Len() > 11 {
			t.Fatalf("after %d units the cache holds %d (window 200ms at 20ms spacing)", i, c.Len())
		}
	}
	if cap(c.units) > 64 {
		t.Errorf("backing array grew to %d", cap(c.units))
	}
}

func TestCacheReset(t *testing.T) {
	c := New(Limits{MaxFrames: 100, MaxBytes: 1 << 20, AudioOnlyWindow: ms(100)}, true)
	c.Add(unit(video, true, 0, 10))
	c.Add(unit(video, false, ms(40), 10))
	if c.Len() != 2 {
		t.Fatalf("Len() = %d, want 2", c.Len())
	}

	// Reset to audio-only: audio is now cached without a video keyframe.
	c.Reset(false)
	if c.Len() != 0 || c.Bytes() != 0 || len(c.AppendTo(nil)) != 0 {
		t.Fatalf("after Reset: Len %d, Bytes %d", c.Len(), c.Bytes())
	}
	c.Add(unit(audio, true, 0, 10))
	if c.Len() != 1 {
		t.Errorf("audio-only after Reset(false): Len() = %d, want 1", c.Len())
	}

	// Reset back to video: non-key units wait for a keyframe again.
	c.Reset(true)
	if c.Len() != 0 || c.Bytes() != 0 {
		t.Fatalf("after Reset(true): Len %d, Bytes %d", c.Len(), c.Bytes())
	}
	c.Add(unit(audio, true, 0, 10))
	c.Add(unit(video, false, 0, 10))
	if c.Len() != 0 {
		t.Errorf("Reset(true): cached %d units before a keyframe", c.Len())
	}
	c.Add(unit(video, true, ms(40), 10))
	if c.Len() != 1 {
		t.Errorf("Reset(true): Len() = %d after a keyframe, want 1", c.Len())
	}
}

// AppendTo appends to dst and does not alias the cache's storage.
func TestCacheAppendTo(t *testing.T) {
	c := New(Limits{MaxFrames: 100, MaxBytes: 1 << 20}, true)
	k := unit(video, true, 0, 10)
	p := unit(video, false, ms(40), 10)
	c.Add(k)
	c.Add(p)
	pre := unit(audio, true, 0, 1)
	got := c.AppendTo([]*media.Unit{pre})
	if len(got) != 3 || got[0] != pre || got[1] != k || got[2] != p {
		t.Fatalf("AppendTo = %v", got)
	}
	got[1] = nil
	c.Add(unit(video, true, ms(80), 10)) // reset clears the cache's slots
	if got[2] != p {
		t.Errorf("a reset of the cache changed a slice returned by AppendTo")
	}
}

func TestCacheAddDoesNotAllocateInSteadyState(t *testing.T) {
	c := New(Limits{MaxFrames: 1000, MaxBytes: 1 << 30}, true)
	units := make([]*media.Unit, 50)
	for i := range units {
		units[i] = unit(video, i%25 == 0, ms(40*i), 10)
	}
	for _, u := range units { // reach the high-water mark
		c.Add(u)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, u := range units {
			c.Add(u)
		}
	})
	if allocs != 0 {
		t.Errorf("Add allocates %v times per 50 units in steady state", allocs)
	}
}

func BenchmarkCacheAdd(b *testing.B) {
	c := New(Limits{MaxFrames: 1200, MaxBytes: 32 << 20}, true)
	units := make([]*media.Unit, 120)
	for i := range units {
		if i%2 == 0 {
			units[i] = unit(video, i%60 == 0, ms(40*i), 1000)
		} else {
			units[i] = unit(audio, true, ms(40*i), 100)
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Add(units[i%len(units)])
	}
}

// With a backlog, earlier GOPs are kept so the cache reaches that far back
// from its newest unit, and no further; AppendTo still gives the latest
// GOP only; the limits bound the history too.
func TestCacheBacklog(t *testing.T) {
	c := New(Limits{MaxFrames: 1000, MaxBytes: 1 << 20, Backlog: 3 * time.Second}, true)
	// 1 s GOPs of 25 frames, 10 s.
	for i := range 250 {
		c.Add(unit(video, i%25 == 0, ms(i*40), 100))
	}
	newest := ms(249 * 40)
	got := c.AppendBacklog(nil, 3*time.Second)
	assertFirstVideoIsKey(t, got)
	if span := newest - got[0].DTS; span < 3*time.Second || span >= 4*time.Second {
		t.Fatalf("backlog reaches back %s, want 3 s to the next keyframe", span)
	}
	if n := len(c.AppendTo(nil)); n != 25 {
		t.Fatalf("AppendTo gives %d units, want the latest GOP (25)", n)
	}
	if n := len(c.AppendBacklog(nil, time.Second)); n != 50 {
		t.Fatalf("a 1 s backlog gives %d units, want the two latest GOPs (50)", n)
	}
	// Bounded by MaxFrames: a history over it drops its oldest GOPs.
	small := New(Limits{MaxFrames: 60, MaxBytes: 1 << 20, Backlog: time.Minute}, true)
	for i := range 250 {
		small.Add(unit(video, i%25 == 0, ms(i*40), 100))
	}
	if n := len(small.AppendBacklog(nil, time.Minute)); n > 60+25 {
		t.Fatalf("the history holds %d units past MaxFrames 60", n)
	}
}
