package hls

import (
	"fmt"
	"maps"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/streamhub/streamhub/internal/audioframe"
	"github.com/streamhub/streamhub/media"
)

// part is one LL-HLS partial segment: a moof+mdat.
type part struct {
	index       int // within its segment
	data        []byte
	dur         time.Duration
	independent bool // starts with a keyframe (or is audio only)
}

// segment is a finished or growing media segment.
type segment struct {
	msn           uint64
	parts         []*part
	data          []byte // the parts concatenated, once complete
	dur           time.Duration
	startDTS      time.Duration
	start         time.Time // PROGRAM-DATE-TIME: about when its first unit arrived (programDateTime)
	init          int       // init version it needs
	discontinuity bool      // first segment after a republish or codec change
	complete      bool
	bytes         int
}

// trackOut is one fMP4 track of the current init.
type trackOut struct {
	hub       *media.Track
	fmp4ID    int
	timescale int64
	samples   []*fmp4.Sample
	base      int64       // DTS of samples[0], in timescale
	pend      *media.Unit // video: the last unit, waiting for the next one for its duration
	end       int64       // audio: where the last sample ended, in timescale (0: none yet)
}

// segmenter cuts one stream into fMP4 parts and segments. Video drives the
// cuts: a part ends before the frame that would make it longer than
// partTarget, a segment at the first keyframe after segmentMin. Audio-only
// streams are cut on audio time.
//
// Lock discipline: a segmenter is not safe for concurrent use and has no
// lock of its own. Its one writer is the muxer's reader goroutine, which
// calls add (and takes snapshot) under the muxer's write lock (muxer.mu);
// startAt is called once before that goroutine starts. Nothing else reads
// its fields: requests, the variant group and the multivariant playlist
// read the snapshot the muxer took after the last change (a *snapshot,
// immutable), never the segmenter itself. Tests may look inside it.
type segmenter struct {
	partTarget, segmentMin time.Duration
	// partTgt is the PART-TARGET announced: a whole number of frames as
	// close to partTarget as the frame rate allows, fixed at the first
	// frame pair (0 until then; audio-only streams use partTarget). Parts
	// are never longer, and never shorter than 85 % of it but at the end
	// of a segment, as the spec asks.
	partTgt time.Duration
	window  int // complete segments kept

	session uint64
	video   *trackOut
	audio   *trackOut
	inits   map[int][]byte
	initID  int
	origin  time.Duration // hub time that is 0 in the fMP4 timeline

	segs    []*segment // oldest first; the last is the growing one
	nextMSN uint64
	// firstMSN, if set, numbers the first segment (starting at dts) like
	// a sibling variant's, so that the variants of a ladder share media
	// sequence numbers: a player switching variants asks the new one for
	// the number it was at.
	firstMSN func(dts time.Duration) (uint64, bool)
	// anchor ties the timeline to the wall clock: a segment's
	// PROGRAM-DATE-TIME is the anchor's wall time moved on by the
	// segment's start (programDateTime). anchors, if set, returns the
	// sibling variants' anchors, which a new anchor is taken from when one
	// fits.
	anchor  wallAnchor
	anchors func() []wallAnchor
	// notBefore, if set, returns the earliest start of a sibling
	// variant's segments: the first segment starts no earlier (a backlog
	// reaching further back is dropped), so that firstMSN finds its
	// number among the siblings'.
	notBefore func() (time.Duration, bool)
	partSeq   uint32 // moof sequence number
	partStart time.Duration
	partKey   bool
	discont   bool // the next segment starts after a discontinuity
	started   bool
	maxDur    time.Duration // longest segment so far (target duration)
	discSeq   int           // discontinuities that left the window
	// rev counts the changes a snapshot shows (segments, parts, inits,
	// numbering, tracks): a muxer takes a new snapshot when it moved.
	rev uint64
}

func newSegmenter(partTarget, segmentMin time.Duration, window int) *segmenter {
	return &segmenter{partTarget: partTarget, segmentMin: segmentMin, window: window, inits: map[int][]byte{}}
}

// startAt sets where a new segmenter starts, before its first unit: the
// target duration it announces at least (maxDur, the GOP length: segments
// last at least a GOP), the discontinuity sequence it goes on from, and
// what its sibling variants tell (sib; zero: there are none).
func (s *segmenter) startAt(maxDur time.Duration, discSeq int, sib siblingInfo) {
	s.maxDur, s.discSeq = maxDur, discSeq
	s.firstMSN, s.anchors, s.notBefore = sib.firstMSN, sib.anchors, sib.notBefore
	s.rev++
}

// siblingInfo is what a segmenter asks of its sibling variants (the
// segmenter fields of the same names); any may be nil.
type siblingInfo struct {
	firstMSN  func(dts time.Duration) (uint64, bool)
	anchors   func() []wallAnchor
	notBefore func() (time.Duration, bool)
}

// wallAnchor is a point of the stream's timeline (dts) and the wall time
// it arrived at.
type wallAnchor struct {
	dts  time.Duration
	wall time.Time
}

// at returns the wall time of dts on the anchor's line.
func (a wallAnchor) at(dts time.Duration) time.Time { return a.wall.Add(dts - a.dts) }

// fits reports whether a unit at dts that arrived at wall is on the
// anchor's line, give or take maxWallSkew.
func (a wallAnchor) fits(dts time.Duration, wall time.Time) bool {
	if a.wall.IsZero() {
		return false
	}
	d := wall.Sub(a.at(dts))
	return d >= -maxWallSkew && d <= maxWallSkew
}

// maxWallSkew is how far from its anchor's line a segment's first unit may
// have arrived before the segmenter takes a new anchor: arrival jitter and
// a publisher's start-up burst (a few hundred milliseconds) stay on the
// line; a republish after a pause, or hours of drift between the
// publisher's clock and ours, move it.
const maxWallSkew = time.Second

// programDateTime returns the PROGRAM-DATE-TIME of a segment starting at
// dts whose first unit arrived at wall: on the anchor's line, so that
// PROGRAM-DATE-TIMEs go on exactly by the segments' durations. Players
// align playlists by them (hls.js realigns its timeline by their
// difference on reloads and variant switches); arrival times, jittered by
// the network and by a publisher's start-up burst, moved the timeline of
// hls.js by up to 0.4 s at each reload. A new anchor is the first sibling
// variant's that fits (the variants of a ladder then agree exactly), else
// this unit.
func (s *segmenter) programDateTime(dts time.Duration, wall time.Time) time.Time {
	if wall.IsZero() {
		return time.Time{}
	}
	if !s.anchor.fits(dts, wall) {
		s.anchor = wallAnchor{dts: dts, wall: wall}
		if s.anchors != nil {
			for _, a := range s.anchors() {
				if a.fits(dts, wall) {
					s.anchor = a
					break
				}
			}
		}
		s.rev++
	}
	return s.anchor.at(dts)
}

// revision changes whenever what a snapshot shows changes.
func (s *segmenter) revision() uint64 { return s.rev }

// snapshot is what requests see of a segmenter: its state after a change,
// copied out under the muxer's write lock. It is immutable once taken
// (complete segments never change, the growing one is a copy, inits is
// replaced, never modified, by the segmenter), so its readers need no lock
// and every request woken by a new part shares the same one.
type snapshot struct {
	segs       []*segment     // the window, oldest first; the last may be growing
	inits      map[int][]byte // the init segments the window needs, by version
	nextMSN    uint64         // the number of the segment after the growing one
	discSeq    int            // EXT-X-DISCONTINUITY-SEQUENCE
	partTarget time.Duration  // PART-TARGET
	maxDur     time.Duration  // the longest segment so far
	anchor     wallAnchor     // the PROGRAM-DATE-TIME line (zero: none yet)
	// video and audio are the tracks of the current init (nil if none).
	video, audio *media.Track
}

// snapshot copies out the state requests read.
func (s *segmenter) snapshot() *snapshot {
	segs := append([]*segment(nil), s.segs...)
	// The growing segment is copied too: its parts slice grows.
	if n := len(segs); n > 0 && !segs[n-1].complete {
		c := *segs[n-1]
		c.parts = append([]*part(nil), c.parts...)
		segs[n-1] = &c
	}
	v := &snapshot{segs: segs, inits: s.inits, nextMSN: s.nextMSN, discSeq: s.discSeq,
		partTarget: s.PartTarget(), maxDur: s.maxDur, anchor: s.anchor}
	if s.video != nil {
		v.video = s.video.hub
	}
	if s.audio != nil {
		v.audio = s.audio.hub
	}
	return v
}

// hasPart reports whether segment msn has part idx (-1: is complete).
func (v *snapshot) hasPart(msn uint64, idx int) bool { return hasPart(v.segs, msn, idx) }

// hasCompleteSegment reports whether a playlist lists a segment.
func (v *snapshot) hasCompleteSegment() bool { return hasCompleteSegment(v.segs) }

// lastPart returns the number and index of the newest part, false if none.
func (v *snapshot) lastPart() (uint64, int, bool) { return lastPart(v.segs) }

// segmentData returns complete segment msn, nil if it is not in the window.
func (v *snapshot) segmentData(msn uint64) []byte {
	var data []byte
	for _, s := range v.segs {
		if s.msn == msn && s.complete {
			data = s.data
		}
	}
	return data
}

// partData returns part idx of segment msn, or gone when it will never
// exist (its segment ended with fewer parts, or left the window).
func (v *snapshot) partData(msn uint64, idx int) (d []byte, gone bool) {
	if len(v.segs) > 0 && msn < v.segs[0].msn {
		return nil, true
	}
	for _, s := range v.segs {
		if s.msn == msn {
			if idx < len(s.parts) {
				return s.parts[idx].data, false
			}
			return nil, s.complete
		}
	}
	return nil, false
}

// msnAt returns the number of the segment starting at dts, false if none
// in the window does.
func (v *snapshot) msnAt(dts time.Duration) (uint64, bool) {
	for _, s := range v.segs {
		if s.startDTS == dts {
			return s.msn, true
		}
	}
	return 0, false
}

// resumePoint is where a next muxer of the path goes on (resumePoint).
func (v *snapshot) resumePoint(at time.Time) resumePoint {
	rp := resumePoint{nextMSN: v.nextMSN, discSeq: v.discSeq + 1, at: at}
	for _, sg := range v.segs[min(1, len(v.segs)):] {
		if sg.discontinuity {
			rp.discSeq++
		}
	}
	return rp
}

// hasPart reports whether segment msn has part idx (or is complete with
// fewer parts, when idx is -1: the whole segment).
func hasPart(segs []*segment, msn uint64, idx int) bool {
	for i := len(segs) - 1; i >= 0; i-- {
		s := segs[i]
		if s.msn < msn {
			return false
		}
		if s.msn == msn {
			if idx < 0 {
				return s.complete
			}
			if idx < len(s.parts) {
				return true
			}
			// §6.2.5.2: a Part Index past the last part of a complete
			// segment asks for part 0 of the next one.
			return s.complete && hasPart(segs, msn+1, 0)
		}
	}
	return len(segs) > 0 && segs[0].msn > msn // already left the window
}

// hasCompleteSegment reports whether a playlist of segs lists a segment.
func hasCompleteSegment(segs []*segment) bool {
	for _, s := range segs {
		if s.complete {
			return true
		}
	}
	return false
}

// tsOf converts hub time to a timescale, relative to the origin.
func (s *segmenter) tsOf(d time.Duration, timescale int64) int64 {
	d -= s.origin
	return int64(d/time.Second)*timescale + int64(d%time.Second)*timescale/int64(time.Second)
}

// pickTracks returns the first video and audio track HLS carries.
func pickTracks(tracks []*media.Track) (v, a *media.Track) {
	for _, t := range tracks {
		switch {
		case v == nil && (t.Codec == media.CodecH264 || t.Codec == media.CodecH265):
			v = t
		case a == nil && (t.Codec == media.CodecAAC || t.Codec == media.CodecOpus):
			a = t
		}
	}
	return v, a
}

// errNoHLSTrack is returned for a stream without any track HLS carries.
var errNoHLSTrack = fmt.Errorf("hls: the stream has no track HLS carries (H264, H265, AAC, Opus)")

// setup makes a new init for tracks. It returns false while the video track
// has no parameter sets yet (nothing to play).
func (s *segmenter) setup(tracks []*media.Track) (bool, error) {
	v, a := pickTracks(tracks)
	if v == nil && a == nil {
		return false, errNoHLSTrack
	}
	init := fmp4.Init{}
	var video, audio *trackOut
	if v != nil {
		if v.SPS == nil || v.PPS == nil || (v.Codec == media.CodecH265 && v.VPS == nil) {
			return false, nil
		}
		var c mp4codecs.Codec = &mp4codecs.H264{SPS: v.SPS, PPS: v.PPS}
		if v.Codec == media.CodecH265 {
			c = &mp4codecs.H265{VPS: v.VPS, SPS: v.SPS, PPS: v.PPS}
		}
		video = &trackOut{hub: v, fmp4ID: 1, timescale: 90000}
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: 1, TimeScale: 90000, Codec: c})
	}
	if a != nil {
		var c mp4codecs.Codec
		rate := int64(a.SampleRate)
		if a.Codec == media.CodecOpus {
			c, rate = &mp4codecs.Opus{ChannelCount: max(a.Channels, 1)}, 48000
		} else {
			var asc mpeg4audio.AudioSpecificConfig
			if err := asc.Unmarshal(a.AudioConfig); err != nil {
				return false, fmt.Errorf("hls: AAC config: %w", err)
			}
			c = &mp4codecs.MPEG4Audio{Config: asc}
		}
		if rate > 0 {
			audio = &trackOut{hub: a, fmp4ID: len(init.Tracks) + 1, timescale: rate}
			init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: audio.fmp4ID, TimeScale: uint32(rate), Codec: c})
		}
	}
	var buf seekablebuffer.Buffer
	if err := init.Marshal(&buf); err != nil {
		return false, fmt.Errorf("hls: init: %w", err)
	}
	s.video, s.audio = video, audio
	s.initID++
	inits := maps.Clone(s.inits) // a snapshot may hold the old map
	inits[s.initID] = buf.Bytes()
	s.inits = inits
	s.rev++
	return true, nil
}

// layoutChanged reports whether u needs a new init: a new publisher, or
// other codec parameters on its track.
func (s *segmenter) layoutChanged(u *media.Unit) bool {
	if u.Track.Session != s.session {
		return true
	}
	to := s.audio
	if u.Track.IsVideo() {
		to = s.video
	}
	return to != nil && to.hub.ID == u.Track.ID && to.hub != u.Track && !to.hub.SameParams(u.Track)
}

// add takes the next unit of the stream (each track in DTS order) with the
// stream's current tracks. It reports whether a part was finished.
func (s *segmenter) add(u *media.Unit, tracks func() []*media.Track) (bool, error) {
	cut := false
	if !s.started || s.layoutChanged(u) {
		if u.Track.IsVideo() && !u.KeyFrame {
			return false, nil // a timeline starts at a keyframe
		}
		if len(s.segs) == 0 && s.notBefore != nil {
			if t, ok := s.notBefore(); ok && u.DTS < t {
				return false, nil // backlog older than the siblings' window
			}
		}
		if s.started {
			cut = s.endSegment()
			s.discont = true
			s.started = false
		}
		ts := tracks()
		if v, _ := pickTracks(ts); v != nil && !u.Track.IsVideo() {
			return cut, nil // with video, begin at its keyframe (one new init, not one per audio frame)
		}
		ok, err := s.setup(ts)
		if err != nil || !ok {
			return cut, err
		}
		if s.initID == 1 {
			// One origin for every muxer: the variants of a ladder carry
			// the source's timestamps, and a player switching between
			// them needs equal times in their fragments. The 10 s leave
			// room for audio a little ahead of the video at the start.
			s.origin = min(-10*time.Second, u.DTS-10*time.Second)
		}
		s.session = u.Track.Session
		s.started = true
		s.startSegment(u.DTS, u.Wall, u.KeyFrame || s.video == nil)
	}
	switch {
	case s.video != nil && u.Track.ID == s.video.hub.ID && u.Track.IsVideo():
		if u.Track != s.video.hub && s.video.hub.SameParams(u.Track) {
			s.video.hub = u.Track
			s.rev++
		}
		return s.addVideo(u) || cut, nil
	case s.audio != nil && u.Track.ID == s.audio.hub.ID && !u.Track.IsVideo():
		return s.addAudio(u) || cut, nil
	}
	return cut, nil
}

func (s *segmenter) startSegment(dts time.Duration, wall time.Time, key bool) {
	if len(s.segs) == 0 && s.nextMSN == 0 && s.firstMSN != nil {
		if n, ok := s.firstMSN(dts); ok {
			s.nextMSN = n
		}
	}
	s.segs = append(s.segs, &segment{msn: s.nextMSN, startDTS: dts, start: s.programDateTime(dts, wall), init: s.initID,
		discontinuity: s.discont})
	s.nextMSN++
	s.discont = false
	s.partStart, s.partKey = dts, key
	// Keep the window: complete segments beyond it go, with their inits.
	for len(s.segs) > s.window+1 {
		s.segs = s.segs[1:]
		// The first segment's EXT-X-DISCONTINUITY is not rendered:
		// EXT-X-DISCONTINUITY-SEQUENCE counts it instead.
		if s.segs[0].discontinuity {
			s.discSeq++
		}
	}
	for id := range s.inits {
		if id < s.segs[0].init {
			s.inits = maps.Clone(s.inits) // a snapshot may hold the old map
			maps.DeleteFunc(s.inits, func(id int, _ []byte) bool { return id < s.segs[0].init })
			break
		}
	}
	s.rev++
}

func (s *segmenter) cur() *segment { return s.segs[len(s.segs)-1] }

// addVideo adds the video unit that came before u (whose duration u tells)
// and cuts before u where needed.
func (s *segmenter) addVideo(u *media.Unit) bool {
	v := s.video
	p := v.pend
	v.pend = u
	if p == nil {
		return false
	}
	d := u.DTS - p.DTS
	if s.partTgt == 0 && d > 0 {
		s.partTgt = wholeFrames(s.partTarget, frameDuration(p.Track, d))
		s.rev++
	}
	s.appendVideo(p, d)
	switch {
	case u.KeyFrame && u.DTS-s.cur().startDTS >= s.segmentMin,
		u.DTS-s.cur().startDTS >= s.segmentMax():
		// A segment ends at a keyframe; a source that sends none
		// (intra refresh, a huge GOP) is cut anyway, so memory and
		// part numbers stay bounded.
		s.cutPart(u.DTS)
		s.finishSegment()
		s.startSegment(u.DTS, u.Wall, u.KeyFrame)
		return true
	case u.DTS-s.partStart+d > s.partTgt:
		s.cutPart(u.DTS)
		s.partStart, s.partKey = u.DTS, u.KeyFrame
		return true
	}
	return false
}

// segmentMax is the longest a segment grows without a keyframe.
func (s *segmenter) segmentMax() time.Duration { return max(10*s.segmentMin, 20*time.Second) }

// frameDuration is a video track's frame duration: from its frame rate
// when the parameter sets give one (exact, where timestamps may be rounded
// to milliseconds), else the first frame interval seen.
func frameDuration(t *media.Track, seen time.Duration) time.Duration {
	if t.FPS > 1 && t.FPS < 1000 {
		return time.Duration(float64(time.Second) / t.FPS)
	}
	return seen
}

// wholeFrames returns the part target for frames of duration fd: the
// whole number of frames nearest target, rounded up to the millisecond,
// plus a millisecond for timestamps rounded to milliseconds (29.97 fps
// over RTMP gives 33 and 34 ms frames).
func wholeFrames(target, fd time.Duration) time.Duration {
	n := max(1, int((target+fd/2)/fd))
	return (time.Duration(n)*fd+time.Millisecond-1)/time.Millisecond*time.Millisecond + time.Millisecond
}

// PartTarget returns the PART-TARGET to announce.
func (s *segmenter) PartTarget() time.Duration {
	if s.partTgt > 0 {
		return s.partTgt
	}
	return s.partTarget
}

func (s *segmenter) appendVideo(u *media.Unit, dur time.Duration) {
	v := s.video
	payload, err := h264.AVCC(u.Payload).Marshal() // 4-byte lengths: the same layout for H265
	if err != nil {
		return
	}
	dts := s.tsOf(u.DTS, v.timescale)
	if len(v.samples) == 0 {
		v.base = dts
	}
	v.samples = append(v.samples, &fmp4.Sample{
		Duration:        uint32(s.tsOf(u.DTS+dur, v.timescale) - dts),
		PTSOffset:       int32(s.tsOf(u.PTS, v.timescale) - dts),
		IsNonSyncSample: !u.KeyFrame,
		Payload:         payload,
	})
}

func (s *segmenter) addAudio(u *media.Unit) bool {
	a := s.audio
	if len(u.Payload) != 1 || len(u.Payload[0]) == 0 {
		return false
	}
	fd := audioframe.Duration(a.hub.Codec, u.Payload[0])
	if len(a.samples) == 0 {
		// A part's audio starts where the last part's ended when its
		// timestamp is within half a frame of that.
		a.base = audioframe.Start(s.tsOf(u.DTS, a.timescale), a.end, fd)
		a.end = a.base
	}
	a.samples = append(a.samples, &fmp4.Sample{Duration: uint32(fd), Payload: u.Payload[0]})
	a.end += fd
	if s.video != nil {
		return false
	}
	// Audio only: cut on audio time; every part is independent.
	fdur := time.Duration(fd) * time.Second / time.Duration(a.timescale)
	end := u.DTS + fdur
	switch {
	case end-s.cur().startDTS >= s.segmentMin:
		s.cutPart(end)
		s.finishSegment()
		s.startSegment(end, u.Wall.Add(fdur), true) // the wall time of end
		return true
	case end+fdur-s.partStart > s.partTarget: // the next frame would not fit
		s.cutPart(end)
		s.partStart, s.partKey = end, true
		return true
	}
	return false
}

// cutPart ends the current part at hub time end with the samples gathered.
func (s *segmenter) cutPart(end time.Duration) {
	p := fmp4.Part{SequenceNumber: s.partSeq}
	for _, t := range []*trackOut{s.video, s.audio} {
		if t != nil && len(t.samples) > 0 {
			p.Tracks = append(p.Tracks, &fmp4.PartTrack{ID: t.fmp4ID, BaseTime: uint64(t.base), Samples: t.samples})
		}
	}
	if len(p.Tracks) == 0 {
		return
	}
	var buf seekablebuffer.Buffer
	if err := p.Marshal(&buf); err != nil {
		return
	}
	for _, t := range []*trackOut{s.video, s.audio} {
		if t != nil {
			t.samples = nil
		}
	}
	s.partSeq++
	seg := s.cur()
	seg.parts = append(seg.parts, &part{index: len(seg.parts), data: buf.Bytes(), dur: end - s.partStart, independent: s.partKey})
	seg.bytes += buf.Len()
	s.rev++
}

// finishSegment completes the growing segment.
func (s *segmenter) finishSegment() {
	seg := s.cur()
	seg.complete = true
	for _, p := range seg.parts {
		seg.dur += p.dur
		seg.data = append(seg.data, p.data...)
	}
	s.maxDur = max(s.maxDur, seg.dur)
	s.rev++
}

// endSegment closes the growing segment where the stream stops (republish,
// codec change): the pending video frame gets the last frame's duration.
// It reports whether anything was cut.
func (s *segmenter) endSegment() bool {
	if len(s.segs) == 0 || s.cur().complete {
		// Nothing growing (a republish already ended it and nothing
		// started since): completing it again would double its bytes
		// under snapshots that share it.
		return false
	}
	if v := s.video; v != nil && v.pend != nil {
		d := 40 * time.Millisecond
		if n := len(v.samples); n > 0 {
			d = time.Duration(v.samples[n-1].Duration) * time.Second / time.Duration(v.timescale)
		}
		end := v.pend.DTS + d
		s.appendVideo(v.pend, d)
		v.pend = nil
		s.cutPart(end)
	} else {
		s.cutPart(s.partStart + s.partTarget)
	}
	seg := s.cur()
	if len(seg.parts) == 0 {
		s.segs = s.segs[:len(s.segs)-1] // nothing in it: its number is not used
		s.nextMSN--
		s.rev++
		return false
	}
	s.finishSegment()
	return true
}
