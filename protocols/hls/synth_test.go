package hls

// Shared by the tests of this package: a synthetic stream of hub units
// (real H264/H265 parameter sets, AAC or Opus audio), a strict parser of the
// media playlists the package renders and the RFC 8216bis rules every
// playlist and every fMP4 part must follow.

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
)

// aacConfig is an AudioSpecificConfig: AAC LC, 48 kHz, stereo.
var aacConfig = []byte{0x11, 0x90}

// wall0 is the wall time of DTS 0 of every synthetic stream.
var wall0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// synth generates the units of a live stream in DTS order: video at
// fpsNum/fpsDen frames per second with a keyframe every gop frames, and
// audio frames (AAC: 1024 samples at the track's sample rate, Opus: 20 ms). Timestamps go
// on across republishes (as the hub makes them).
type synth struct {
	video, audio   *media.Track
	fpsNum, fpsDen int64
	gop            int
	msRound        bool          // timestamps rounded to milliseconds, like RTMP
	ptsDelay       time.Duration // PTS - DTS of video (a reorder delay)

	vFrame, aFrame int           // next frame indexes within the session
	vBase, aBase   time.Duration // DTS of frame 0 of the session
	last           time.Duration // DTS of the last unit
	arrival        func(dts time.Duration) time.Duration
}

// wall returns the arrival time of the unit at dts.
func (s *synth) wall(dts time.Duration) time.Time {
	if s.arrival != nil {
		return wall0.Add(dts + s.arrival(dts))
	}
	return wall0.Add(dts)
}

type synthOpts struct {
	video    media.Codec // 0: no video
	audio    media.Codec // 0: no audio
	fps      float64     // 0: 30
	gop      time.Duration
	msRound  bool
	ptsDelay time.Duration
	// arrival, if set, returns how late (or early) the unit at dts
	// arrives after wall0.Add(dts): network jitter, a start-up burst.
	arrival func(dts time.Duration) time.Duration
}

func newSynth(o synthOpts) *synth {
	s := &synth{fpsNum: 30, fpsDen: 1, msRound: o.msRound, ptsDelay: o.ptsDelay, arrival: o.arrival}
	switch {
	case o.fps == 0:
	case o.fps == math.Trunc(o.fps):
		s.fpsNum = int64(o.fps)
	default: // 29.97, 23.976, 59.94
		s.fpsNum, s.fpsDen = int64(math.Round(o.fps*1001)), 1001
	}
	gop := o.gop
	if gop == 0 {
		gop = time.Second
	}
	s.gop = max(1, int(math.Round(gop.Seconds()*float64(s.fpsNum)/float64(s.fpsDen))))
	switch o.video {
	case media.CodecH264:
		s.video = &media.Track{ID: 0, Session: 1, Codec: media.CodecH264, SPS: testfixtures.H264SPS, PPS: testfixtures.H264PPS,
			Width: 320, Height: 240, FPS: float64(s.fpsNum) / float64(s.fpsDen)}
	case media.CodecH265:
		s.video = &media.Track{ID: 0, Session: 1, Codec: media.CodecH265, VPS: testfixtures.H265VPS, SPS: testfixtures.H265SPS,
			PPS: testfixtures.H265PPS, Width: 320, Height: 240, FPS: float64(s.fpsNum) / float64(s.fpsDen)}
	}
	id := 0
	if s.video != nil {
		id = 1
	}
	switch o.audio {
	case media.CodecAAC:
		s.audio = &media.Track{ID: id, Session: 1, Codec: media.CodecAAC, AudioConfig: aacConfig, SampleRate: 48000, Channels: 2}
	case media.CodecOpus:
		s.audio = &media.Track{ID: id, Session: 1, Codec: media.CodecOpus, SampleRate: 48000, Channels: 2}
	}
	return s
}

// tracks returns the current tracks, as Stream.Tracks does.
func (s *synth) tracks() []*media.Track {
	var out []*media.Track
	for _, t := range []*media.Track{s.video, s.audio} {
		if t != nil {
			out = append(out, t)
		}
	}
	return out
}

func (s *synth) round(d time.Duration) time.Duration {
	if s.msRound {
		return d.Round(time.Millisecond)
	}
	return d
}

func (s *synth) videoDTS(i int) time.Duration {
	return s.vBase + s.round(time.Duration(int64(i)*s.fpsDen*int64(time.Second)/s.fpsNum))
}

func (s *synth) audioDTS(i int) time.Duration {
	if s.audio.Codec == media.CodecOpus {
		return s.aBase + s.round(time.Duration(i)*20*time.Millisecond)
	}
	return s.aBase + s.round(time.Duration(int64(i)*1024*int64(time.Second)/int64(s.audio.SampleRate)))
}

// peek returns the DTS of the next unit.
func (s *synth) peek() time.Duration {
	_, d := s.pick()
	return d
}

func (s *synth) pick() (video bool, dts time.Duration) {
	switch {
	case s.video == nil:
		return false, s.audioDTS(s.aFrame)
	case s.audio == nil:
		return true, s.videoDTS(s.vFrame)
	}
	v, a := s.videoDTS(s.vFrame), s.audioDTS(s.aFrame)
	if v <= a {
		return true, v
	}
	return false, a
}

// next returns the next unit in DTS order.
func (s *synth) next() *media.Unit {
	video, dts := s.pick()
	s.last = dts
	if video {
		i := s.vFrame
		s.vFrame++
		key := i%s.gop == 0
		return &media.Unit{Track: s.video, DTS: dts, PTS: dts + s.ptsDelay, KeyFrame: key,
			Payload: s.videoPayload(i, key), Wall: s.wall(dts)}
	}
	i := s.aFrame
	s.aFrame++
	p := []byte{0x21, 0x10, 0x04, byte(i), byte(i >> 8)}
	if s.audio.Codec == media.CodecOpus {
		p = []byte{0xf8, 0xff, 0xfe, byte(i)} // CELT FB 20 ms, one frame
	}
	return &media.Unit{Track: s.audio, DTS: dts, PTS: dts, KeyFrame: true, Payload: [][]byte{p}, Wall: s.wall(dts)}
}

func (s *synth) videoPayload(i int, key bool) [][]byte {
	body := bytes.Repeat([]byte{byte(i)}, 40+i%7)
	if s.video.Codec == media.CodecH265 {
		if key {
			return [][]byte{s.video.VPS, s.video.SPS, s.video.PPS, append([]byte{19 << 1, 0x01}, body...)}
		}
		return [][]byte{append([]byte{1 << 1, 0x01}, body...)}
	}
	if key {
		return [][]byte{s.video.SPS, s.video.PPS, append([]byte{0x65, 0x88}, body...)}
	}
	return [][]byte{append([]byte{0x41, 0x9a}, body...)}
}

// republish starts a new publisher session: new track objects (with the
// same IDs), timestamps going on after a 40 ms gap. change, if set, edits
// the new tracks.
func (s *synth) republish(change func(v, a *media.Track)) {
	s.newTracks(true, change)
	gap := s.last + 40*time.Millisecond
	s.vBase, s.aBase = gap, gap
	s.vFrame, s.aFrame = 0, 0
}

// newTracks replaces the tracks by copies: of the next session, or (same
// session) of the next generation.
func (s *synth) newTracks(newSession bool, change func(v, a *media.Track)) {
	var v, a *media.Track
	if s.video != nil {
		c := *s.video
		v = &c
	}
	if s.audio != nil {
		c := *s.audio
		a = &c
	}
	for _, t := range []*media.Track{v, a} {
		if t == nil {
			continue
		}
		if newSession {
			t.Session++
			t.Generation = 0
		}
	}
	if change != nil {
		change(v, a)
	}
	if !newSession {
		for i, t := range []*media.Track{v, a} {
			if t != nil && !t.SameParams([]*media.Track{s.video, s.audio}[i]) {
				t.Generation++
			}
		}
	}
	s.video, s.audio = v, a
}

// restartGOP makes the next video frame a keyframe (an encoder restarts
// its GOP on a parameter change).
func (s *synth) restartGOP() {
	if s.video == nil {
		return
	}
	d := s.videoDTS(s.vFrame)
	s.vBase, s.vFrame = d, 0
	// Audio keeps its own clock: rebase it on its next frame.
	if s.audio != nil {
		a := s.audioDTS(s.aFrame)
		s.aBase, s.aFrame = a, 0
	}
}

// feeder drives a segmenter with a synth and records every playlist
// rendered after each part.
type feeder struct {
	t    testing.TB
	conf Config
	seg  *segmenter
	src  *synth
	m    *muxer // for playlist(): the real copy-out code
	// failed is set once a render broke a rule: later renders are not
	// checked (one report per test, not one per part).
	failed bool
	// onPart, if set, is called after every add that finished a part.
	onPart func()
}

func testConfig() Config {
	return Config{PartTarget: 200 * time.Millisecond, SegmentMin: time.Second, Window: 7,
		IdleTimeout: time.Minute, BlockTimeout: 5 * time.Second, ShareWindow: time.Hour}
}

func newFeeder(t testing.TB, conf Config, src *synth) *feeder {
	seg := newSegmenter(conf.PartTarget, conf.SegmentMin, conf.Window)
	return &feeder{t: t, conf: conf, seg: seg, src: src,
		m: &muxer{h: &Handler{conf: conf}, conf: conf, prefix: "ab12cd34_", seg: seg}}
}

// until adds every unit with a DTS before end (on the stream timeline).
func (f *feeder) until(end time.Duration) {
	f.t.Helper()
	for f.src.peek() < end {
		f.add(f.src.next())
	}
}

// forDur adds d more of the stream.
func (f *feeder) forDur(d time.Duration) { f.until(f.src.peek() + d) }

func (f *feeder) add(u *media.Unit) {
	f.t.Helper()
	cut, err := f.seg.add(u, f.src.tracks)
	if err != nil {
		f.t.Fatalf("segmenter.add(%s unit at %s): %v", u.Track.Codec, u.DTS, err)
	}
	if cut && f.onPart != nil {
		f.onPart()
	}
}

// render renders the media playlist as the server would, and parses and
// checks it.
func (f *feeder) render(skip bool) *mediaPL {
	f.t.Helper()
	body := string(f.m.playlist(f.seg.snapshot()).render(skip))
	pl := parseMedia(f.t, body)
	if !f.failed {
		if problems := mediaProblems(pl, f.conf); len(problems) > 0 {
			f.failed = true
			f.t.Errorf("media playlist (the first of the renders that break a rule; later ones are not checked):\n  %s\n%s",
				strings.Join(problems, "\n  "), pl.raw)
		}
	}
	return pl
}

// allParts returns every part the segmenter holds, by name.
func (f *feeder) allParts() map[string]*part {
	out := map[string]*part{}
	for _, s := range f.seg.segs {
		for _, p := range s.parts {
			out[partURI(f.m.prefix, s.msn, p.index)] = p
		}
	}
	return out
}

// --- media playlist parsing ---

type plPart struct {
	uri         string
	dur         float64
	independent bool
}

type plSeg struct {
	msn      uint64
	uri      string  // "" for the growing segment (parts only)
	dur      float64 // EXTINF
	parts    []plPart
	disc     bool
	dsn      int    // Discontinuity Sequence Number
	mapURI   string // the EXT-X-MAP in force ("" in a delta update before any MAP)
	ownMap   bool   // an EXT-X-MAP right before it
	pdt      time.Time
	complete bool
}

type mediaPL struct {
	raw                                  string
	version, target                      int
	partTarget, partHoldBack, canSkipTil float64
	canBlock                             bool
	mediaSeq                             uint64
	discSeq                              int
	skipped                              int
	segs                                 []plSeg
	hint                                 string
}

func (p *mediaPL) complete() []plSeg {
	var out []plSeg
	for _, s := range p.segs {
		if s.complete {
			out = append(out, s)
		}
	}
	return out
}

// growing returns the segment with parts but no EXTINF yet, or nil.
func (p *mediaPL) growing() *plSeg {
	if n := len(p.segs); n > 0 && !p.segs[n-1].complete {
		return &p.segs[n-1]
	}
	return nil
}

// attrs parses an attribute list (A=B,C="x,y").
func attrs(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				v, rest = rest[1:], ""
			} else {
				v, rest = rest[1:1+end], rest[2+end:]
			}
			rest = strings.TrimPrefix(rest, ",")
		} else {
			v, rest, _ = strings.Cut(rest, ",")
		}
		out[k] = v
		s = rest
	}
	return out
}

func mustFloat(t testing.TB, what, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%s: %q is not a number", what, s)
	}
	return f
}

// headerTags are the tags that must come before the first Media Segment
// and appear at most once.
var headerTags = map[string]bool{
	"#EXT-X-VERSION": true, "#EXT-X-TARGETDURATION": true, "#EXT-X-SERVER-CONTROL": true,
	"#EXT-X-PART-INF": true, "#EXT-X-MEDIA-SEQUENCE": true, "#EXT-X-DISCONTINUITY-SEQUENCE": true,
	"#EXT-X-SKIP": true, "#EXT-X-INDEPENDENT-SEGMENTS": true,
}

// parseMedia parses a media playlist, failing the test on any structural
// error (tag order, repeated tags, unknown lines).
func parseMedia(t testing.TB, body string) *mediaPL {
	t.Helper()
	pl := &mediaPL{raw: body}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("media playlist: "+format+"\n%s", append(args, body)...)
	}
	if !strings.HasSuffix(body, "\n") {
		fail("does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if lines[0] != "#EXTM3U" {
		fail("first line %q, want #EXTM3U", lines[0])
	}
	seen := map[string]int{}
	var cur plSeg
	var curMap string
	inSegments := false // a media segment tag was seen
	discTags := 0
	hasCur := false
	for i, line := range lines[1:] {
		name, val, _ := strings.Cut(line, ":")
		if headerTags[name] {
			seen[name]++
			if seen[name] > 1 {
				fail("line %d: %s appears twice", i+2, name)
			}
			if inSegments {
				fail("line %d: %s after the first media segment tag", i+2, name)
			}
		}
		if pl.hint != "" && !strings.HasPrefix(line, "#EXT-X-RENDITION-REPORT") {
			fail("line %d: %q after EXT-X-PRELOAD-HINT", i+2, line)
		}
		switch name {
		case "#EXT-X-VERSION":
			pl.version, _ = strconv.Atoi(val)
		case "#EXT-X-TARGETDURATION":
			v, err := strconv.Atoi(val)
			if err != nil {
				fail("EXT-X-TARGETDURATION %q is not a decimal-integer", val)
			}
			pl.target = v
		case "#EXT-X-SERVER-CONTROL":
			a := attrs(val)
			pl.canBlock = a["CAN-BLOCK-RELOAD"] == "YES"
			if v, ok := a["PART-HOLD-BACK"]; ok {
				pl.partHoldBack = mustFloat(t, "PART-HOLD-BACK", v)
			}
			if v, ok := a["CAN-SKIP-UNTIL"]; ok {
				pl.canSkipTil = mustFloat(t, "CAN-SKIP-UNTIL", v)
			}
		case "#EXT-X-PART-INF":
			pl.partTarget = mustFloat(t, "PART-TARGET", attrs(val)["PART-TARGET"])
		case "#EXT-X-MEDIA-SEQUENCE":
			v, err := strconv.ParseUint(val, 10, 64)
			if err != nil {
				fail("EXT-X-MEDIA-SEQUENCE %q", val)
			}
			pl.mediaSeq = v
		case "#EXT-X-DISCONTINUITY-SEQUENCE":
			v, err := strconv.Atoi(val)
			if err != nil {
				fail("EXT-X-DISCONTINUITY-SEQUENCE %q", val)
			}
			if discTags > 0 {
				fail("EXT-X-DISCONTINUITY-SEQUENCE after an EXT-X-DISCONTINUITY")
			}
			pl.discSeq = v
		case "#EXT-X-SKIP":
			v, err := strconv.Atoi(attrs(val)["SKIPPED-SEGMENTS"])
			if err != nil || v <= 0 {
				fail("EXT-X-SKIP %q", val)
			}
			pl.skipped = v
		case "#EXT-X-DISCONTINUITY":
			if len(cur.parts) > 0 {
				fail("line %d: EXT-X-DISCONTINUITY after the segment's first EXT-X-PART", i+2)
			}
			inSegments, hasCur = true, true
			cur.disc = true
			discTags++
		case "#EXT-X-MAP":
			if len(cur.parts) > 0 {
				fail("line %d: EXT-X-MAP after the segment's first EXT-X-PART", i+2)
			}
			inSegments, hasCur = true, true
			curMap = attrs(val)["URI"]
			cur.ownMap = true
		case "#EXT-X-PROGRAM-DATE-TIME":
			if len(cur.parts) > 0 {
				fail("line %d: EXT-X-PROGRAM-DATE-TIME after the segment's first EXT-X-PART", i+2)
			}
			inSegments, hasCur = true, true
			ts, err := time.Parse(time.RFC3339Nano, val)
			if err != nil {
				fail("EXT-X-PROGRAM-DATE-TIME %q: %v", val, err)
			}
			if !strings.Contains(val, ".") {
				fail("EXT-X-PROGRAM-DATE-TIME %q has no fraction of a second", val)
			}
			cur.pdt = ts
		case "#EXT-X-PART":
			inSegments, hasCur = true, true
			a := attrs(val)
			if a["URI"] == "" || a["DURATION"] == "" {
				fail("line %d: EXT-X-PART without URI or DURATION: %q", i+2, line)
			}
			cur.parts = append(cur.parts, plPart{uri: a["URI"], dur: mustFloat(t, "EXT-X-PART DURATION", a["DURATION"]), independent: a["INDEPENDENT"] == "YES"})
		case "#EXTINF":
			inSegments, hasCur = true, true
			d, _, _ := strings.Cut(val, ",")
			cur.dur = mustFloat(t, "EXTINF", d)
			cur.complete = true
		case "#EXT-X-PRELOAD-HINT":
			a := attrs(val)
			if a["TYPE"] != "PART" {
				fail("EXT-X-PRELOAD-HINT TYPE %q, want PART", a["TYPE"])
			}
			pl.hint = a["URI"]
		case "#EXT-X-RENDITION-REPORT":
		case "#EXT-X-INDEPENDENT-SEGMENTS":
		default:
			switch {
			case strings.HasPrefix(line, "#"):
				fail("line %d: unexpected tag %q", i+2, line)
			case line == "":
				fail("line %d: empty line", i+2)
			default: // a segment URI
				if !cur.complete {
					fail("line %d: URI %q without EXTINF", i+2, line)
				}
				cur.uri = line
				cur.mapURI = curMap
				cur.dsn = pl.discSeq + discTags
				cur.msn = pl.mediaSeq + uint64(pl.skipped+len(pl.segs))
				pl.segs = append(pl.segs, cur)
				cur, hasCur = plSeg{}, false
			}
		}
	}
	if hasCur { // the growing segment: parts (maybe none yet) and no URI
		if cur.complete {
			fail("EXTINF without a URI at the end")
		}
		cur.mapURI = curMap
		cur.dsn = pl.discSeq + discTags
		cur.msn = pl.mediaSeq + uint64(pl.skipped+len(pl.segs))
		pl.segs = append(pl.segs, cur)
	}
	for _, tag := range []string{"#EXT-X-VERSION", "#EXT-X-TARGETDURATION", "#EXT-X-SERVER-CONTROL", "#EXT-X-PART-INF", "#EXT-X-MEDIA-SEQUENCE"} {
		if seen[tag] == 0 {
			fail("no %s", tag)
		}
	}
	if pl.hint == "" {
		fail("no EXT-X-PRELOAD-HINT")
	}
	return pl
}

var (
	partRE = regexp.MustCompile(`^(.*)part(\d+)\.(\d+)\.mp4$`)
	segRE  = regexp.MustCompile(`^(.*)seg(\d+)\.mp4$`)
	initRE = regexp.MustCompile(`^(.*)init(\d+)\.mp4$`)
)

// checkMedia asserts the RFC 8216bis rules on a parsed media playlist of a
// server configured with conf.
func checkMedia(t testing.TB, pl *mediaPL, conf Config) {
	t.Helper()
	if problems := mediaProblems(pl, conf); len(problems) > 0 {
		t.Errorf("media playlist:\n  %s\n%s", strings.Join(problems, "\n  "), pl.raw)
	}
}

// mediaProblems returns what in pl breaks the RFC 8216bis rules.
func mediaProblems(pl *mediaPL, conf Config) []string {
	var problems []string
	errorf := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	const eps = 0.000005 // the playlist's precision: 5 decimals
	if pl.version < 9 {
		errorf("EXT-X-VERSION %d: EXT-X-SKIP and _HLS_skip need 9", pl.version)
	}
	if pl.target < 1 {
		errorf("EXT-X-TARGETDURATION %d < 1", pl.target)
	}
	if !pl.canBlock {
		errorf("EXT-X-SERVER-CONTROL without CAN-BLOCK-RELOAD=YES")
	}
	// PART-TARGET is hls.partTarget, or near it (a server may round it to
	// whole frames).
	if want := conf.PartTarget.Seconds(); pl.partTarget < want*0.8 || pl.partTarget > want*1.25 {
		errorf("PART-TARGET %v, want about %v (hls.partTarget)", pl.partTarget, want)
	}
	// §4.4.3.8: at least twice PART-TARGET (MUST; three times is a
	// SHOULD, and Apple's authoring spec asks for it: hls.partHoldBack 3),
	// and what hls.partHoldBack says.
	if pl.partHoldBack < 2*pl.partTarget-eps {
		errorf("PART-HOLD-BACK %v < 2 × PART-TARGET %v", pl.partHoldBack, pl.partTarget)
	}
	if want := conf.partHoldBack() * pl.partTarget; math.Abs(pl.partHoldBack-want) > 2*eps {
		errorf("PART-HOLD-BACK %v, want %v (hls.partHoldBack %v × PART-TARGET %v)", pl.partHoldBack, want, conf.partHoldBack(), pl.partTarget)
	}
	if pl.canSkipTil < 6*float64(pl.target)-eps {
		errorf("CAN-SKIP-UNTIL %v < 6 × EXT-X-TARGETDURATION %d", pl.canSkipTil, pl.target)
	}
	if len(pl.segs) == 0 {
		errorf("no segment and no part")
		return problems
	}
	if pl.skipped == 0 && !pl.segs[0].ownMap {
		errorf("no EXT-X-MAP before the first segment")
	}
	prefix := ""
	for i, s := range pl.segs {
		if s.complete {
			m := segRE.FindStringSubmatch(s.uri)
			if m == nil || m[2] != strconv.FormatUint(s.msn, 10) {
				errorf("segment %d has URI %q, want ...seg%d.mp4 (media sequence numbers continuous)", i, s.uri, s.msn)
			} else if prefix == "" {
				prefix = m[1]
			} else if m[1] != prefix {
				errorf("segment URI %q has another prefix than %q", s.uri, prefix)
			}
			// §4.4.3.1: EXTINF rounded to the nearest integer <= target.
			if int(math.Round(s.dur)) > pl.target {
				errorf("segment %d: EXTINF %v rounds above EXT-X-TARGETDURATION %d", s.msn, s.dur, pl.target)
			}
			if len(s.parts) > 0 {
				var sum float64
				for _, p := range s.parts {
					sum += p.dur
				}
				if math.Abs(sum-s.dur) > 0.001 {
					errorf("segment %d: EXTINF %v but its parts add up to %v", s.msn, s.dur, sum)
				}
				if !s.parts[0].independent {
					errorf("segment %d: its first part is not INDEPENDENT=YES (segments start with a keyframe)", s.msn)
				}
			}
		}
		if s.mapURI != "" && !initRE.MatchString(s.mapURI) {
			errorf("EXT-X-MAP URI %q", s.mapURI)
		}
		if i > 0 && !s.pdt.IsZero() && !pl.segs[i-1].pdt.IsZero() && pl.segs[i-1].complete && !s.disc {
			// PROGRAM-DATE-TIME goes on by the previous segment's duration.
			want := pl.segs[i-1].pdt.Add(time.Duration(pl.segs[i-1].dur * float64(time.Second)))
			if d := s.pdt.Sub(want); d < -2*time.Millisecond || d > 2*time.Millisecond {
				errorf("segment %d: PROGRAM-DATE-TIME %s, want %s (previous one + its EXTINF)", s.msn, s.pdt.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
			}
		}
		if !s.complete && i != len(pl.segs)-1 {
			errorf("segment %d has no EXTINF but is not the last", s.msn)
		}
		for j, p := range s.parts {
			m := partRE.FindStringSubmatch(p.uri)
			if m == nil || m[2] != strconv.FormatUint(s.msn, 10) || m[3] != strconv.Itoa(j) {
				errorf("part %d of segment %d has URI %q, want ...part%d.%d.mp4", j, s.msn, p.uri, s.msn, j)
			}
			// §4.4.4.9: <= PART-TARGET; >= 85% of it, except INDEPENDENT
			// parts and a parent segment's final part.
			if p.dur > pl.partTarget+eps {
				errorf("part %s: DURATION %v > PART-TARGET %v", p.uri, p.dur, pl.partTarget)
			}
			final := j == len(s.parts)-1 && s.complete
			last := j == len(s.parts)-1 && !s.complete // may turn out final
			if p.dur < 0.85*pl.partTarget-eps && !p.independent && !final && !last {
				errorf("part %s: DURATION %v < 85%% of PART-TARGET %v (not INDEPENDENT, not final)", p.uri, p.dur, pl.partTarget)
			}
			if p.dur <= 0 {
				errorf("part %s: DURATION %v", p.uri, p.dur)
			}
		}
	}
	// The preload hint names the next part.
	last := pl.segs[len(pl.segs)-1]
	want := fmt.Sprintf("%spart%d.%d.mp4", prefix, last.msn, len(last.parts))
	if last.complete {
		want = fmt.Sprintf("%spart%d.0.mp4", prefix, last.msn+1)
	}
	if prefix != "" && pl.hint != want {
		errorf("EXT-X-PRELOAD-HINT URI %q, want %q (the next part)", pl.hint, want)
	}
	return problems
}

// dsnByMSN maps each segment's media sequence number to its Discontinuity
// Sequence Number.
func dsnByMSN(pl *mediaPL) map[uint64]int {
	out := map[uint64]int{}
	for _, s := range pl.segs {
		out[s.msn] = s.dsn
	}
	return out
}

// --- fMP4 ---

// parsePart parses one part (a moof+mdat) and fails the test when it is
// not exactly one.
func parsePart(t testing.TB, name string, data []byte) *fmp4.Part {
	t.Helper()
	var ps fmp4.Parts
	if err := ps.Unmarshal(data); err != nil {
		t.Fatalf("%s: fmp4 Parts.Unmarshal: %v", name, err)
	}
	if len(ps) != 1 {
		t.Fatalf("%s: %d moof boxes, want 1", name, len(ps))
	}
	return ps[0]
}

func parseInit(t testing.TB, name string, data []byte) *fmp4.Init {
	t.Helper()
	var in fmp4.Init
	if err := in.Unmarshal(bytes.NewReader(data)); err != nil {
		t.Fatalf("%s: fmp4 Init.Unmarshal: %v", name, err)
	}
	return &in
}

func partTrack(p *fmp4.Part, id int) *fmp4.PartTrack {
	for _, tr := range p.Tracks {
		if tr.ID == id {
			return tr
		}
	}
	return nil
}

func sampleDur(tr *fmp4.PartTrack) uint64 {
	var d uint64
	if tr == nil {
		return 0
	}
	for _, s := range tr.Samples {
		d += uint64(s.Duration)
	}
	return d
}
