package hls

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
)

// history checks what must hold across successive renders of one media
// playlist: media and discontinuity sequence numbers never go back, a
// segment or part once listed never changes, and a segment keeps its
// Discontinuity Sequence Number (RFC 8216bis §6.2.2) and its EXT-X-MAP. (An
// EXT-X-DISCONTINUITY tag may go from the first segment if
// EXT-X-DISCONTINUITY-SEQUENCE counts it: the numbers tell.)
type history struct {
	t        testing.TB
	n        int
	mediaSeq uint64
	discSeq  int
	segs     map[uint64]plSeg
	parts    map[string]plPart
	dsn      map[uint64]int
	maps     map[uint64]string
	prev     string // the previous render
	dsnBad   bool   // a DSN change was reported with both playlists
}

func newHistory(t testing.TB) *history {
	return &history{t: t, segs: map[uint64]plSeg{}, parts: map[string]plPart{}, dsn: map[uint64]int{}, maps: map[uint64]string{}}
}

func (h *history) add(pl *mediaPL) {
	t := h.t
	t.Helper()
	prev := h.prev
	h.prev = pl.raw
	if h.n > 0 {
		if pl.mediaSeq < h.mediaSeq {
			t.Errorf("EXT-X-MEDIA-SEQUENCE went back from %d to %d", h.mediaSeq, pl.mediaSeq)
		}
		if pl.discSeq < h.discSeq {
			t.Errorf("EXT-X-DISCONTINUITY-SEQUENCE went back from %d to %d", h.discSeq, pl.discSeq)
		}
	}
	h.n++
	h.mediaSeq, h.discSeq = pl.mediaSeq, pl.discSeq
	for _, s := range pl.segs {
		if d, ok := h.dsn[s.msn]; ok && d != s.dsn {
			if !h.dsnBad {
				t.Errorf("segment %d: Discontinuity Sequence Number changed from %d to %d between two renders (§6.2.2: it must remain unchanged)\nbefore:\n%s\nafter:\n%s",
					s.msn, d, s.dsn, prev, pl.raw)
			} else {
				t.Errorf("segment %d: Discontinuity Sequence Number changed from %d to %d", s.msn, d, s.dsn)
			}
			h.dsnBad = true
		}
		h.dsn[s.msn] = s.dsn
		if m, ok := h.maps[s.msn]; ok && s.mapURI != "" && m != s.mapURI {
			t.Errorf("segment %d: EXT-X-MAP changed from %s to %s", s.msn, m, s.mapURI)
		}
		if s.mapURI != "" {
			h.maps[s.msn] = s.mapURI
		}
		if s.complete {
			if old, ok := h.segs[s.msn]; ok && (old.uri != s.uri || old.dur != s.dur) {
				t.Errorf("segment %d changed: %+v -> %+v", s.msn, old, s)
			}
			h.segs[s.msn] = s
		}
		for _, p := range s.parts {
			if old, ok := h.parts[p.uri]; ok && old != p {
				t.Errorf("part %s changed: %+v -> %+v", p.uri, old, p)
			}
			h.parts[p.uri] = p
		}
	}
}

// checkFMP4 parses every init, part and segment the segmenter holds and
// checks them against the playlist and the source: one moof per part, the
// part's samples adding up to its duration, INDEPENDENT=YES exactly on the
// parts whose first video sample is a sync sample, segments starting with
// one, the segment being its parts, and timestamps continuous from part to
// part.
func checkFMP4(t *testing.T, f *feeder, pl *mediaPL) {
	t.Helper()
	parts := f.allParts()
	listed := 0
	for _, s := range pl.segs {
		for _, p := range s.parts {
			if parts[p.uri] == nil {
				t.Errorf("%s is listed but the segmenter does not have it", p.uri)
				continue
			}
			if parts[p.uri].independent != p.independent {
				t.Errorf("%s: INDEPENDENT=%v in the playlist, %v in the segmenter", p.uri, p.independent, parts[p.uri].independent)
			}
			listed++
		}
	}
	if listed == 0 {
		t.Fatalf("no part listed in:\n%s", pl.raw)
	}
	type clock struct {
		next  uint64
		init  int
		valid bool
	}
	var vclk, aclk clock
	for _, seg := range f.seg.segs {
		init := parseInit(t, initURI("", seg.init), f.seg.inits[seg.init])
		vid, aid, vscale, ascale := 0, 0, uint32(0), uint32(0)
		for _, tr := range init.Tracks {
			if tr.Codec.IsVideo() {
				vid, vscale = tr.ID, tr.TimeScale
			} else {
				aid, ascale = tr.ID, tr.TimeScale
			}
		}
		var concat []byte
		for i, p := range seg.parts {
			name := partURI("", seg.msn, i)
			fp := parsePart(t, name, p.data)
			concat = append(concat, p.data...)
			for _, tr := range fp.Tracks {
				if tr.ID != vid && tr.ID != aid {
					t.Errorf("%s: track ID %d is not in init%d", name, tr.ID, seg.init)
				}
				if len(tr.Samples) == 0 {
					t.Errorf("%s: track %d has no samples", name, tr.ID)
				}
			}
			if vid != 0 {
				vt := partTrack(fp, vid)
				if vt == nil {
					t.Errorf("%s: no video samples", name)
					continue
				}
				sync := !vt.Samples[0].IsNonSyncSample
				if sync != p.independent {
					t.Errorf("%s: first video sample sync=%v but INDEPENDENT=%v (want INDEPENDENT=YES exactly on parts starting with a keyframe)", name, sync, p.independent)
				}
				if i == 0 && !sync {
					t.Errorf("segment %d does not start with a keyframe", seg.msn)
				}
				// The samples span the part's duration (±2 ticks of rounding).
				got := time.Duration(sampleDur(vt)) * time.Second / time.Duration(vscale)
				if d := got - p.dur; d < -25*time.Microsecond || d > 25*time.Microsecond {
					t.Errorf("%s: video samples last %s, the part %s", name, got, p.dur)
				}
				if vclk.valid && vclk.init == seg.init && vt.BaseTime != vclk.next {
					t.Errorf("%s: video baseMediaDecodeTime %d, want %d (the previous part's end)", name, vt.BaseTime, vclk.next)
				}
				vclk = clock{next: vt.BaseTime + sampleDur(vt), init: seg.init, valid: true}
				for _, smp := range vt.Samples {
					if want := int32(f.src.ptsDelay * time.Duration(vscale) / time.Second); smp.PTSOffset < want-1 || smp.PTSOffset > want+1 {
						t.Errorf("%s: composition offset %d, want %d", name, smp.PTSOffset, want)
						break
					}
				}
			} else if !p.independent {
				t.Errorf("%s: audio-only part without INDEPENDENT=YES", name)
			}
			if aid != 0 {
				at := partTrack(fp, aid)
				if at == nil {
					if vid == 0 {
						t.Errorf("%s: no audio samples in an audio-only part", name)
					}
					continue
				}
				if vid == 0 {
					got := time.Duration(sampleDur(at)) * time.Second / time.Duration(ascale)
					if d := got - p.dur; d < -time.Millisecond || d > time.Millisecond {
						t.Errorf("%s: audio samples last %s, the part %s", name, got, p.dur)
					}
				}
				// Audio goes on from part to part exactly, also when its
				// timestamps are rounded to ms (RTMP's): a browser has a
				// hole or an overlap otherwise.
				if aclk.valid && aclk.init == seg.init && at.BaseTime != aclk.next {
					t.Errorf("%s: audio baseMediaDecodeTime %d, want %d (the previous part's end)", name, at.BaseTime, aclk.next)
				}
				aclk = clock{next: at.BaseTime + sampleDur(at), init: seg.init, valid: true}
			}
		}
		if seg.complete && seg.init == f.seg.initID {
			// As many samples as the source made in the segment's time.
			var ps fmp4.Parts
			if err := ps.Unmarshal(seg.data); err == nil {
				nv, na := 0, 0
				for _, p := range ps {
					if tr := partTrack(p, vid); vid != 0 && tr != nil {
						nv += len(tr.Samples)
					}
					if tr := partTrack(p, aid); aid != 0 && tr != nil {
						na += len(tr.Samples)
					}
				}
				if vid != 0 {
					if want := int(seg.dur.Seconds()*float64(f.src.fpsNum)/float64(f.src.fpsDen) + 0.5); nv != want {
						t.Errorf("seg%d.mp4 (%s): %d video samples, want %d", seg.msn, seg.dur, nv, want)
					}
				}
				if aid != 0 {
					want := seg.dur.Seconds() * float64(ascale) / float64(sampleDur(partTrack(ps[0], aid))/uint64(max(1, len(partTrack(ps[0], aid).Samples))))
					if float64(na) < want-2 || float64(na) > want+2 {
						t.Errorf("seg%d.mp4 (%s): %d audio samples, want %.1f ± 2", seg.msn, seg.dur, na, want)
					}
				}
			}
		}
		if seg.complete {
			if !bytes.Equal(seg.data, concat) {
				t.Errorf("seg%d.mp4 is not its parts concatenated", seg.msn)
			}
			var ps fmp4.Parts
			if err := ps.Unmarshal(seg.data); err != nil || len(ps) != len(seg.parts) {
				t.Errorf("seg%d.mp4: %d moofs (err %v), want %d", seg.msn, len(ps), err, len(seg.parts))
			}
		}
	}
}

// TestSegmenterPlaylists drives the segmenter with synthetic streams and
// checks every playlist rendered after each new part against RFC 8216bis,
// and the fMP4 bytes.
func TestSegmenterPlaylists(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts synthOpts
	}{
		{"H264+AAC 30fps 1s GOP", synthOpts{video: media.CodecH264, audio: media.CodecAAC}},
		{"H264+AAC 25fps 2s GOP ms timestamps", synthOpts{video: media.CodecH264, audio: media.CodecAAC, fps: 25, gop: 2 * time.Second, msRound: true}},
		{"H264+AAC 60fps B-frames", synthOpts{video: media.CodecH264, audio: media.CodecAAC, fps: 60, ptsDelay: 50 * time.Millisecond}},
		{"H264+Opus 30fps", synthOpts{video: media.CodecH264, audio: media.CodecOpus}},
		{"H264 only", synthOpts{video: media.CodecH264}},
		{"H265+AAC", synthOpts{video: media.CodecH265, audio: media.CodecAAC}},
		{"H265 only 0.5s GOP", synthOpts{video: media.CodecH265, gop: 500 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newSynth(tc.opts)
			f := newFeeder(t, testConfig(), src)
			h := newHistory(t)
			renders := 0
			f.onPart = func() {
				pl := f.render(false)
				h.add(pl)
				renders++
			}
			f.until(15 * time.Second)
			if t.Failed() {
				t.FailNow()
			}
			pl := f.render(false)
			// 15 s of 1 or 2 s segments: the window is full.
			if n := len(pl.complete()); n != f.conf.Window {
				t.Errorf("%d complete segments listed, want window %d", n, f.conf.Window)
			}
			if renders < 60 {
				t.Errorf("only %d parts in 15 s, want about 75", renders)
			}
			// PROGRAM-DATE-TIME is the wall time of each segment's first unit.
			for _, s := range pl.segs {
				for _, ss := range f.seg.segs {
					if ss.msn == s.msn {
						want := wall0.Add(ss.startDTS).Truncate(time.Millisecond)
						if !s.pdt.Equal(want) {
							t.Errorf("segment %d: PROGRAM-DATE-TIME %s, want %s", s.msn, s.pdt.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
						}
					}
				}
			}
			checkFMP4(t, f, pl)

			// The init carries the tracks with their parameters.
			in := parseInit(t, "init", f.seg.inits[f.seg.initID])
			want := len(src.tracks())
			if len(in.Tracks) != want {
				t.Fatalf("init has %d tracks, want %d", len(in.Tracks), want)
			}
			for _, tr := range in.Tracks {
				switch c := tr.Codec.(type) {
				case *mp4codecs.H264:
					if !bytes.Equal(c.SPS, testfixtures.H264SPS) || !bytes.Equal(c.PPS, testfixtures.H264PPS) || tr.TimeScale != 90000 {
						t.Errorf("init H264 track: SPS/PPS differ or timescale %d", tr.TimeScale)
					}
				case *mp4codecs.H265:
					if !bytes.Equal(c.SPS, testfixtures.H265SPS) || !bytes.Equal(c.VPS, testfixtures.H265VPS) || tr.TimeScale != 90000 {
						t.Errorf("init H265 track: parameter sets differ or timescale %d", tr.TimeScale)
					}
				case *mp4codecs.MPEG4Audio:
					if c.Config.Type != mpeg4audio.ObjectTypeAACLC || c.Config.SampleRate != 48000 || c.Config.ChannelCount != 2 || tr.TimeScale != 48000 {
						t.Errorf("init AAC track: config %+v, timescale %d", c.Config, tr.TimeScale)
					}
				case *mp4codecs.Opus:
					if tr.TimeScale != 48000 {
						t.Errorf("init Opus track: timescale %d", tr.TimeScale)
					}
				default:
					t.Errorf("init track of codec %T", c)
				}
			}
		})
	}
}

// TestAudioOnly: an AAC-only and an Opus-only stream are cut on audio
// time; every part is INDEPENDENT and no longer than PART-TARGET.
func TestAudioOnly(t *testing.T) {
	for _, codec := range []media.Codec{media.CodecAAC, media.CodecOpus} {
		t.Run(codec.String(), func(t *testing.T) {
			src := newSynth(synthOpts{audio: codec})
			f := newFeeder(t, testConfig(), src)
			h := newHistory(t)
			f.onPart = func() { h.add(f.render(false)) }
			f.until(12 * time.Second)
			pl := f.render(false)
			if n := len(pl.complete()); n != f.conf.Window {
				t.Errorf("%d complete segments, want %d", n, f.conf.Window)
			}
			for _, s := range pl.segs {
				for _, p := range s.parts {
					if !p.independent {
						t.Errorf("%s: audio-only part without INDEPENDENT=YES", p.uri)
					}
				}
			}
			checkFMP4(t, f, pl)
		})
	}
}

// TestPartDurationBounds: at common frame rates every part is at most
// PART-TARGET and, unless INDEPENDENT or final in its segment, at least 85%
// of it (RFC 8216bis §4.4.4.9, both MUSTs).
func TestPartDurationBounds(t *testing.T) {
	for _, fps := range []float64{25, 30, 50, 60, 24, 29.97, 23.976, 59.94} {
		t.Run(fmt.Sprintf("%gfps", fps), func(t *testing.T) {
			src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC, fps: fps, gop: 2 * time.Second, msRound: true})
			f := newFeeder(t, testConfig(), src)
			f.until(8 * time.Second)
			f.render(false) // checkMedia checks the bounds
		})
	}
}

// TestPartHoldBack: PART-HOLD-BACK is hls.partHoldBack part targets (3
// when unset), of the part target the
// playlist announces (rounded to whole frames), and never under twice it.
func TestPartHoldBack(t *testing.T) {
	for _, tc := range []struct {
		conf float64
		fps  float64
		want float64 // in PART-TARGETs
	}{
		{0, 30, 3}, {2, 30, 2}, {2.5, 25, 2.5}, {3, 30, 3}, {3, 29.97, 3}, {10, 60, 10},
	} {
		t.Run(fmt.Sprintf("%g at %gfps", tc.conf, tc.fps), func(t *testing.T) {
			conf := testConfig()
			conf.PartHoldBack = tc.conf
			f := newFeeder(t, conf, newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC, fps: tc.fps}))
			f.until(3 * time.Second)
			pl := f.render(false) // mediaProblems also checks it against conf
			if got := pl.partHoldBack / pl.partTarget; math.Abs(got-tc.want) > 0.001 {
				t.Errorf("PART-HOLD-BACK %v = %v × PART-TARGET %v, want %v ×", pl.partHoldBack, got, pl.partTarget, tc.want)
			}
			if !strings.Contains(pl.raw, fmt.Sprintf("PART-HOLD-BACK=%s,", seconds(time.Duration(tc.want*float64(f.seg.PartTarget()))))) {
				t.Errorf("playlist does not advertise PART-HOLD-BACK=%s:\n%s", seconds(time.Duration(tc.want*float64(f.seg.PartTarget()))), pl.raw)
			}
		})
	}
	// Below the spec's minimum is refused by the config check.
	for _, v := range []float64{1, 1.99, 10.5} {
		c := testConfig()
		c.PartHoldBack = v
		errs := c.Validate("hls")
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "hls.partHoldBack") {
			t.Errorf("partHoldBack %g: Validate = %v, want one error naming hls.partHoldBack", v, errs)
		}
	}
	c := testConfig()
	c.PartHoldBack = 2
	if errs := c.Validate("hls"); len(errs) != 0 {
		t.Errorf("partHoldBack 2: Validate = %v", errs)
	}
}

// TestTargetDurationConstant: EXT-X-TARGETDURATION must not change over
// the life of a media playlist (RFC 8216bis §6.2.1), here for a 2 s GOP
// stream with segmentMin 1s, from the first playlist with a complete
// segment on (the server serves none before: TestFirstPlaylistHasSegment).
func TestTargetDurationConstant(t *testing.T) {
	src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC, gop: 2 * time.Second})
	f := newFeeder(t, testConfig(), src)
	seen := map[int]string{}
	f.onPart = func() {
		pl := f.render(false)
		if _, ok := seen[pl.target]; !ok && len(pl.complete()) > 0 {
			seen[pl.target] = pl.raw
		}
	}
	f.until(10 * time.Second)
	if len(seen) != 1 {
		var b strings.Builder
		for td, raw := range seen {
			fmt.Fprintf(&b, "--- with EXT-X-TARGETDURATION:%d:\n%s", td, raw)
		}
		t.Errorf("EXT-X-TARGETDURATION took %d values over one stream (§6.2.1: it MUST NOT change):\n%s", len(seen), b.String())
	}
}

// TestIndependentParts: with keyframes every 0.5 s and segments of at
// least 1 s, keyframes also fall inside segments; INDEPENDENT=YES marks
// exactly the parts that start with one.
func TestIndependentParts(t *testing.T) {
	src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC, gop: 400 * time.Millisecond})
	f := newFeeder(t, testConfig(), src)
	f.until(6 * time.Second)
	pl := f.render(false)
	checkFMP4(t, f, pl)
	// Some part that does not start a segment is independent.
	mid := 0
	for _, s := range pl.segs {
		for i, p := range s.parts {
			if i > 0 && p.independent {
				mid++
			}
		}
	}
	if mid == 0 {
		t.Errorf("no INDEPENDENT part inside a segment with 0.4 s GOPs:\n%s", pl.raw)
	}
}

// TestDeltaUpdate: _HLS_skip=YES leaves out the segments older than
// CAN-SKIP-UNTIL, says how many with EXT-X-SKIP, and the rest is the full
// playlist's.
func TestDeltaUpdate(t *testing.T) {
	conf := testConfig()
	conf.Window = 20
	src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC})
	f := newFeeder(t, conf, src)
	f.until(15 * time.Second)
	f.src.republish(nil) // a discontinuity and a new init in the skipped span
	f.until(30 * time.Second)
	full := f.render(false)
	delta := f.render(true)
	if delta.skipped == 0 {
		t.Fatalf("no EXT-X-SKIP in the delta update:\n%s", delta.raw)
	}
	if delta.mediaSeq != full.mediaSeq || delta.discSeq != full.discSeq || delta.target != full.target {
		t.Errorf("delta header (MEDIA-SEQUENCE %d, DISCONTINUITY-SEQUENCE %d, TARGETDURATION %d) differs from the full playlist's (%d, %d, %d)",
			delta.mediaSeq, delta.discSeq, delta.target, full.mediaSeq, full.discSeq, full.target)
	}
	if delta.skipped+len(delta.segs) != len(full.segs) {
		t.Fatalf("delta: %d skipped + %d segments, full playlist %d segments", delta.skipped, len(delta.segs), len(full.segs))
	}
	// Only segments ending at least CAN-SKIP-UNTIL before the end of the
	// last segment are skipped.
	var total, acc float64
	for _, s := range full.complete() {
		total += s.dur
	}
	for _, s := range full.segs[:delta.skipped] {
		acc += s.dur
		if total-acc < full.canSkipTil-0.00001 {
			t.Errorf("segment %d is skipped but ends %.3f s before the end, less than CAN-SKIP-UNTIL %v", s.msn, total-acc, full.canSkipTil)
		}
	}
	if next := full.segs[delta.skipped]; total-acc-next.dur >= full.canSkipTil+0.5 {
		t.Errorf("segment %d ends %.3f s before the end but is not skipped (CAN-SKIP-UNTIL %v)", next.msn, total-acc-next.dur, full.canSkipTil)
	}
	// What follows EXT-X-SKIP is the full playlist's remainder: merged with
	// the skipped segments (a client's previous copy), each segment has the
	// same URI, duration, parts, discontinuity, Discontinuity Sequence Number
	// and EXT-X-MAP.
	skippedDisc := 0
	for _, s := range full.segs[:delta.skipped] {
		if s.disc {
			skippedDisc++
		}
	}
	lastMap := full.segs[delta.skipped-1].mapURI
	for i, d := range delta.segs {
		w := full.segs[delta.skipped+i]
		if d.ownMap {
			lastMap = d.mapURI
		}
		if d.msn != w.msn || d.uri != w.uri || d.dur != w.dur || d.disc != w.disc || d.complete != w.complete || len(d.parts) != len(w.parts) {
			t.Errorf("delta segment %d = %+v, full playlist has %+v", i, d, w)
		}
		if got := d.dsn + skippedDisc; got != w.dsn {
			t.Errorf("segment %d: Discontinuity Sequence Number %d after merging the delta update, %d in the full playlist", w.msn, got, w.dsn)
		}
		if lastMap != w.mapURI {
			t.Errorf("segment %d: EXT-X-MAP %s after merging the delta update, %s in the full playlist", w.msn, lastMap, w.mapURI)
		}
	}
	if delta.hint != full.hint {
		t.Errorf("delta hint %q, full %q", delta.hint, full.hint)
	}
}

// checkDiscontinuity checks the playlist after one republish or codec
// parameter change (before is a playlist from before it): exactly one
// EXT-X-DISCONTINUITY, on a segment with a new EXT-X-MAP, a
// PROGRAM-DATE-TIME and an INDEPENDENT first part, after complete segments.
func checkDiscontinuity(t *testing.T, f *feeder, h *history, before *mediaPL) *mediaPL {
	t.Helper()
	pl := f.render(false)
	h.add(pl)
	var disc []plSeg
	for _, s := range pl.segs {
		if s.disc {
			disc = append(disc, s)
		}
	}
	if len(disc) != 1 {
		t.Fatalf("%d segments with EXT-X-DISCONTINUITY, want 1:\n%s", len(disc), pl.raw)
	}
	d := disc[0]
	if !d.ownMap || d.mapURI == before.segs[0].mapURI {
		t.Errorf("segment %d after the discontinuity has EXT-X-MAP %q (own %v), want a new one (was %q)", d.msn, d.mapURI, d.ownMap, before.segs[0].mapURI)
	}
	if d.pdt.IsZero() {
		t.Errorf("segment %d after the discontinuity has no EXT-X-PROGRAM-DATE-TIME (§6.2.1 SHOULD)", d.msn)
	}
	for _, s := range pl.segs {
		if s.msn < d.msn && !s.complete {
			t.Errorf("segment %d before the discontinuity is not complete", s.msn)
		}
	}
	if len(d.parts) == 0 || !d.parts[0].independent {
		t.Errorf("segment %d after the discontinuity: first part not INDEPENDENT", d.msn)
	}
	checkFMP4(t, f, pl)
	return pl
}

// TestRepublish: a new publisher session gives EXT-X-DISCONTINUITY and a
// new EXT-X-MAP, whether its audio comes before its first keyframe (as the
// hub delivers a republish) or not.
func TestRepublish(t *testing.T) {
	for _, audioFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("audioFirst=%v", audioFirst), func(t *testing.T) {
			src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC, msRound: true})
			f := newFeeder(t, testConfig(), src)
			h := newHistory(t)
			f.onPart = func() { h.add(f.render(false)) }
			f.until(3500 * time.Millisecond)
			before := f.render(false)
			src.republish(nil)
			if audioFirst {
				// The hub drops the new publisher's video until its first
				// keyframe; its audio starts 100 ms earlier.
				src.vBase += 100 * time.Millisecond
				for src.audioDTS(src.aFrame) < src.vBase {
					f.add(src.next())
				}
			}
			f.forDur(3 * time.Second)
			checkDiscontinuity(t, f, h, before)
			in := parseInit(t, "new init", f.seg.inits[f.seg.initID])
			if len(in.Tracks) != 2 {
				t.Errorf("new init has %d tracks, want 2", len(in.Tracks))
			}
		})
	}
}

// TestCodecChange: new codec parameters within one session (a new SPS, a
// new AudioSpecificConfig) give EXT-X-DISCONTINUITY and a new EXT-X-MAP
// with the new parameters.
func TestCodecChange(t *testing.T) {
	t.Run("H264 SPS", func(t *testing.T) {
		src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC})
		f := newFeeder(t, testConfig(), src)
		h := newHistory(t)
		f.onPart = func() { h.add(f.render(false)) }
		f.until(3500 * time.Millisecond)
		before := f.render(false)
		src.newTracks(false, func(v, _ *media.Track) { v.SPS = testfixtures.H264SPS2 })
		src.restartGOP()
		f.forDur(3 * time.Second)
		checkDiscontinuity(t, f, h, before)
		in := parseInit(t, "new init", f.seg.inits[f.seg.initID])
		if c, ok := in.Tracks[0].Codec.(*mp4codecs.H264); !ok || !bytes.Equal(c.SPS, testfixtures.H264SPS2) {
			t.Errorf("new init does not carry the new SPS: %#v", in.Tracks[0].Codec)
		}
		if got := codecString(f.seg.video.hub); got != "avc1.42c028" {
			t.Errorf("codec string after the change %q, want avc1.42c028", got)
		}
	})
	t.Run("AAC config", func(t *testing.T) {
		src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC})
		f := newFeeder(t, testConfig(), src)
		h := newHistory(t)
		f.onPart = func() { h.add(f.render(false)) }
		f.until(3500 * time.Millisecond)
		before := f.render(false)
		// HE-AAC would change the codec string; a new sample rate (and so
		// timescale) is the harder case: 44.1 kHz stereo.
		src.newTracks(false, func(_, a *media.Track) { a.AudioConfig = []byte{0x12, 0x10}; a.SampleRate = 44100 })
		src.restartGOP()
		f.forDur(3 * time.Second)
		checkDiscontinuity(t, f, h, before)
		in := parseInit(t, "new init", f.seg.inits[f.seg.initID])
		if c, ok := in.Tracks[1].Codec.(*mp4codecs.MPEG4Audio); !ok || c.Config.SampleRate != 44100 || in.Tracks[1].TimeScale != 44100 {
			t.Errorf("new init audio track: %#v timescale %d, want 44.1 kHz", in.Tracks[1].Codec, in.Tracks[1].TimeScale)
		}
	})
}

// TestDiscontinuitySequence: once the segment after a republish leaves the
// window, EXT-X-DISCONTINUITY-SEQUENCE counts it, and no segment's
// Discontinuity Sequence Number changes on the way (§6.2.2).
func TestDiscontinuitySequence(t *testing.T) {
	conf := testConfig()
	conf.Window = 3
	src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC})
	f := newFeeder(t, conf, src)
	h := newHistory(t)
	f.onPart = func() { h.add(f.render(false)) }
	f.until(4500 * time.Millisecond)
	src.republish(nil)
	f.forDur(8 * time.Second)
	pl := f.render(false)
	if pl.discSeq != 1 {
		t.Errorf("EXT-X-DISCONTINUITY-SEQUENCE %d after the only discontinuity left the window, want 1:\n%s", pl.discSeq, pl.raw)
	}
	for _, s := range pl.segs {
		if s.dsn != 1 {
			t.Errorf("segment %d: Discontinuity Sequence Number %d, want 1", s.msn, s.dsn)
		}
	}
}

// TestCodecStrings checks the RFC 6381 strings of the multivariant
// playlist's CODECS.
func TestCodecStrings(t *testing.T) {
	for _, tc := range []struct {
		track *media.Track
		want  string
	}{
		{&media.Track{Codec: media.CodecH264, SPS: testfixtures.H264SPS}, "avc1.64000c"},
		{&media.Track{Codec: media.CodecH264, SPS: testfixtures.H264SPS2}, "avc1.42c028"},
		// Main 10 (profile 2, compatibility flag 2 → 0x4 reversed), Main
		// tier, level 4.1 (123), progressive/non-packed/frame-only (0xB0).
		{&media.Track{Codec: media.CodecH265, VPS: testfixtures.H265VPS, SPS: testfixtures.H265SPS, PPS: testfixtures.H265PPS}, "hvc1.2.4.L123.B0"},
		{&media.Track{Codec: media.CodecAAC, AudioConfig: aacConfig}, "mp4a.40.2"},
		{&media.Track{Codec: media.CodecAAC, AudioConfig: []byte{0x2b, 0x92, 0x08, 0x00}}, "mp4a.40.5"}, // HE-AAC (SBR)
		{&media.Track{Codec: media.CodecOpus}, "opus"},
	} {
		if got := codecString(tc.track); got != tc.want {
			t.Errorf("codecString(%s %x) = %q, want %q", tc.track.Codec, tc.track.SPS, got, tc.want)
		}
	}
	mv := string(renderMultivariant([]variant{{uri: "stream.m3u8", bandwidth: 500000, average: 400000,
		codecs: []string{"avc1.64000c", "mp4a.40.2"}, width: 320, height: 240, fps: 30}}))
	want := "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=500000,AVERAGE-BANDWIDTH=400000,CODECS=\"avc1.64000c,mp4a.40.2\",RESOLUTION=320x240,FRAME-RATE=30.000\nstream.m3u8\n"
	if mv != want {
		t.Errorf("multivariant playlist:\n%s\nwant:\n%s", mv, want)
	}
}

// TestProgramDateTimeLine: PROGRAM-DATE-TIMEs go on exactly by the
// segments' durations although units arrive with jitter and a start-up
// burst (players realign their timelines by them on every reload), stay
// within maxWallSkew of the arrival times, and move to the new arrival
// times after a pause longer than that; a segmenter starting beside a
// sibling variant takes the sibling's line.
func TestProgramDateTimeLine(t *testing.T) {
	// The first 12 pictures come 400 ms late (an encoder starting up),
	// then every unit arrives up to 30 ms late; from 9 s on, 5 s later (a
	// stalled link that came back with the same timestamps going on).
	arrival := func(dts time.Duration) time.Duration {
		late := time.Duration((dts/time.Millisecond*7919)%31) * time.Millisecond
		switch {
		case dts < 400*time.Millisecond:
			late += 400*time.Millisecond - dts
		case dts >= 9*time.Second:
			late += 5 * time.Second
		}
		return late
	}
	src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC, msRound: true, arrival: arrival})
	f := newFeeder(t, testConfig(), src)
	h := newHistory(t)
	f.onPart = func() { h.add(f.render(false)) }
	f.until(8 * time.Second)
	first := f.seg.anchor
	if want := (wallAnchor{dts: 0, wall: src.wall(0)}); first != want {
		t.Errorf("anchor %+v, want the first keyframe's arrival %+v", first, want)
	}
	f.render(false) // mediaProblems checks that each PROGRAM-DATE-TIME is the last one + its EXTINF
	// After the pause the line moves, which the rules above do not allow
	// without EXT-X-DISCONTINUITY; they are not checked past it.
	f.onPart = nil
	f.until(14 * time.Second)
	pl := parseMedia(t, string(f.m.playlist(f.seg.snapshot()).render(false)))
	for _, s := range pl.segs {
		for _, ss := range f.seg.segs {
			if ss.msn != s.msn {
				continue
			}
			if d := s.pdt.Sub(src.wall(ss.startDTS)); d < -maxWallSkew || d > maxWallSkew {
				t.Errorf("segment %d: PROGRAM-DATE-TIME %s is %s from its arrival", s.msn, s.pdt.Format(time.RFC3339Nano), d)
			}
			if ss.startDTS >= 10*time.Second && !ss.start.Equal(f.seg.anchor.at(ss.startDTS)) {
				t.Errorf("segment %d after the pause: PROGRAM-DATE-TIME %s, not on the new line", s.msn, ss.start)
			}
		}
	}
	if f.seg.anchor == first {
		t.Errorf("anchor unchanged after units came 5 s later than its line")
	}

	// A sibling variant's line is taken when it fits this one's arrivals,
	// not when it is a pause away.
	sib := wallAnchor{dts: 2 * time.Second, wall: src.wall(0).Add(2*time.Second + 150*time.Millisecond)}
	far := wallAnchor{dts: 0, wall: wall0.Add(-time.Hour)}
	src2 := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC, msRound: true, arrival: arrival})
	f2 := newFeeder(t, testConfig(), src2)
	f2.seg.startAt(time.Second, 0, siblingInfo{anchors: func() []wallAnchor { return []wallAnchor{far, sib} }})
	f2.until(3 * time.Second)
	if f2.seg.anchor != sib {
		t.Errorf("anchor %+v beside the sibling's %+v, want the sibling's", f2.seg.anchor, sib)
	}
	for _, ss := range f2.seg.segs {
		if !ss.start.Equal(sib.at(ss.startDTS)) {
			t.Errorf("segment %d: PROGRAM-DATE-TIME %s, want the sibling's line %s", ss.msn, ss.start, sib.at(ss.startDTS))
		}
	}
}

// TestNotBefore: a segmenter whose sibling variants' segments start at 2 s
// drops its backlog before that (it could not number it like them).
func TestNotBefore(t *testing.T) {
	src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC})
	f := newFeeder(t, testConfig(), src)
	f.seg.startAt(time.Second, 0, siblingInfo{notBefore: func() (time.Duration, bool) { return 2 * time.Second, true }})
	f.until(4 * time.Second)
	if got := f.seg.segs[0].startDTS; got != 2*time.Second {
		t.Errorf("first segment starts at %s, want 2s (the siblings' first)", got)
	}
}
