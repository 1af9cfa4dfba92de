package server

import (
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

func TestPlanJoin(t *testing.T) {
	ms := time.Millisecond
	v := func(dts time.Duration, key bool) *media.Unit { return mkUnit(trackV, 0, key, dts) }
	a := func(dts time.Duration) *media.Unit { return mkUnit(trackA, 0, true, dts) }
	type want struct {
		dts     []time.Duration // of the units, in order
		waitKey bool
		floorOn bool
		floor   time.Duration
	}
	for _, tc := range []struct {
		name     string
		gop      []*media.Unit
		hasVideo bool
		join     string
		window   time.Duration
		want     want
	}{
		{"live join waits for a keyframe", []*media.Unit{v(0, true), v(40*ms, false)}, true, JoinLive, 0,
			want{waitKey: true}},
		{"live join of audio only starts at once", []*media.Unit{a(0)}, false, JoinLive, 0,
			want{}},
		{"empty cache waits for a keyframe", nil, true, JoinCache, 0,
			want{waitKey: true}},
		{"cached GOP as it is", []*media.Unit{v(0, true), a(5 * ms), v(40*ms, false)}, true, JoinCache, 0,
			want{dts: []time.Duration{0, 5 * ms, 40 * ms}, floorOn: false, floor: 0}},
		{"audio before the first picture is dropped, the floor stays on", []*media.Unit{a(0), v(20*ms, true), v(60*ms, false)}, true, JoinCache, 0,
			want{dts: []time.Duration{20 * ms, 60 * ms}, floorOn: true, floor: 20 * ms}},
		{"audio-only cache: no floor", []*media.Unit{a(0), a(20 * ms)}, false, JoinCache, 0,
			want{dts: []time.Duration{0, 20 * ms}}},
		{"catch-up squeezes old video, drops old audio", []*media.Unit{v(0, true), a(5 * ms), v(1000*ms, false), a(1005 * ms), v(2000*ms, false)}, true, JoinCache, 500 * ms,
			want{dts: []time.Duration{1500 * ms, 1750 * ms, 2000 * ms}, floorOn: true, floor: 1500 * ms}},
		{"catch-up within the window changes nothing", []*media.Unit{v(0, true), a(5 * ms), v(400*ms, false)}, true, JoinCache, 500 * ms,
			want{dts: []time.Duration{0, 5 * ms, 400 * ms}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before []time.Duration
			for _, u := range tc.gop {
				before = append(before, u.DTS, u.PTS)
			}
			p := planJoin(tc.gop, tc.hasVideo, tc.join, tc.window, false)
			var dts []time.Duration
			for _, u := range p.units {
				dts = append(dts, u.DTS)
			}
			if len(dts) != len(tc.want.dts) {
				t.Fatalf("units at %v, want %v", dts, tc.want.dts)
			}
			for i := range dts {
				if dts[i] != tc.want.dts[i] {
					t.Fatalf("units at %v, want %v", dts, tc.want.dts)
				}
			}
			if p.waitKey != tc.want.waitKey || p.floorOn != tc.want.floorOn || (p.floorOn && p.audioFloor != tc.want.floor) {
				t.Fatalf("waitKey %v floorOn %v floor %s, want %v %v %s", p.waitKey, p.floorOn, p.audioFloor,
					tc.want.waitKey, tc.want.floorOn, tc.want.floor)
			}
			for i, u := range tc.gop {
				if u.DTS != before[2*i] || u.PTS != before[2*i+1] {
					t.Fatal("planJoin modified a cached unit: they are shared")
				}
			}
		})
	}
}

// Readers that join while the cache is unchanged share the retimed GOP's
// units, so each format serializes them once (Unit.Memo); a later join
// after a new unit gets a new plan.
func TestJoinStormSharesRetimedUnits(t *testing.T) {
	pc := testConf()
	pc.Join, pc.CatchUp = JoinCache, 100*time.Millisecond
	h := newTestHub(t, pc)
	p := mustPublish(t, h, "live/j", videoTracks())
	units := genUnits(0, 20, 50, true) // one GOP of 800 ms: catch-up retimes it
	writeAll(p, units)
	r1 := mustRead(t, h, "live/j")
	r2 := mustRead(t, h, "live/j")
	if len(r1.pending) == 0 || len(r1.pending) != len(r2.pending) {
		t.Fatalf("pending %d and %d units", len(r1.pending), len(r2.pending))
	}
	if r1.pending[0] == units[0] {
		t.Fatal("the GOP was not retimed: the test needs a GOP longer than catchUp")
	}
	for i := range r1.pending {
		if r1.pending[i] != r2.pending[i] {
			t.Fatalf("unit %d differs between two readers joining the same cache: serialized twice", i)
		}
	}
	p.Write(mkUnit(trackV, 100, false, 20*40*time.Millisecond))
	r3 := mustRead(t, h, "live/j")
	if len(r3.pending) > 0 && r3.pending[0] == r1.pending[0] {
		t.Fatal("a join after a new unit reused the old plan")
	}
}

// An MPEG-TS reader's backlog (audioEarly) gets the recent audio right
// after the first picture, even when the publisher's audio lags the
// pictures by more than the catch-up window.
func TestPlanJoinAudioEarly(t *testing.T) {
	ms := time.Millisecond
	var gop []*media.Unit
	for i := range 50 { // 2 s of video at 25 fps; audio lagging 400 ms behind
		gop = append(gop, mkUnit(trackV, 0, i == 0, time.Duration(i)*40*ms))
		if d := time.Duration(i)*40*ms - 400*ms; d >= 0 {
			gop = append(gop, mkUnit(trackA, 0, true, d))
		}
	}
	p := planJoin(gop, true, JoinCache, 100*ms, true)
	if !p.units[0].Track.IsVideo() || !p.units[0].KeyFrame {
		t.Fatal("the plan does not start with the keyframe")
	}
	if p.units[1].Track.IsVideo() {
		t.Fatal("no audio right after the first picture")
	}
	audio, video := 0, 0
	for _, u := range p.units {
		if u.Track.IsVideo() {
			video++
		} else {
			audio++
		}
	}
	if video != 50 || audio < 2 {
		t.Fatalf("%d pictures and %d audio units, want 50 and the audio of the last 100 ms", video, audio)
	}
	if p.floorOn || p.waitKey {
		t.Fatal("an audio floor or a keyframe wait would hold the audio back")
	}
}
