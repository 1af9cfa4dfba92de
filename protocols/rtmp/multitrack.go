package rtmp

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/bluenviron/gortmplib"
	rtmpcodecs "github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"

	"github.com/streamhub/streamhub/internal/units"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// Enhanced RTMP v2 multitrack (OBS 30.2+ "multitrack video"): the encoder
// sends several renditions of one picture as video tracks of one
// connection, each message tagged with a track id. They become a free
// ladder, no transcoding:
//
//	track 0 (the lowest id) + audio ──▶ <path>            (the source)
//	track 1 (H264/H265, 720 lines)   ──▶ <path>/720p      (a derived stream, like a ladder rung)
//	track 2 (H264/H265, 480 lines)   ──▶ <path>/480p      (… with a copy of the source's first audio)
//
// Each rung keeps its track's own RTMP timestamps (the encoder's, shared
// with the source), so the variants line up in LL-HLS like the FFmpeg
// ladder's. What the publisher does wrong ends one rung, never the
// connection, and says why once:
//
//   - a track whose timestamps stray more than maxTrackSkew from the
//     source's: its rung ends (a timestamp going back is dropped);
//   - a track that stops (sends nothing for trackSilence of the source's
//     media, or a sequence end): its rung ends, the others go on;
//   - a track id never announced in the probe (garbage, or a track added
//     later), or a track we cannot carry: its messages are dropped before
//     gortmplib sees them (it would end the connection, or call a nil
//     callback), logged once per id.

const (
	// maxTrackSkew is how far a rung's timestamps may be from the
	// source's last picture.
	maxTrackSkew = 2 * time.Second
	// trackSilence is how much of the source's media a rung may go
	// without a picture before it is taken as dropped.
	trackSilence = 3 * time.Second
	// maxIgnoredLogs bounds the lines about ignored track ids per
	// connection.
	maxIgnoredLogs = 4
)

// rung is one rendition the publisher sends as a further video track.
type rung struct {
	id     uint8 // the RTMP track id
	name   string
	path   string
	lib    *gortmplib.Track
	video  *units.Video
	tracks []*media.Track // video, then a copy of the source's audio (if any)
	unwrap units.Unwrapper
	pub    *server.Publisher
	// last is the DTS of the last picture written (seen: one was);
	// from is the source's DTS when the rung was published.
	last, from time.Duration
	seen       bool
	ended      bool
	backwards  int // pictures dropped for a timestamp going back
}

// trackIDs is what the probe learned of the publisher's track ids: the
// video and audio ids with a sequence start (a legacy config is video 0).
type trackIDs struct {
	video, audio map[uint8]bool
}

func newTrackIDs() trackIDs {
	return trackIDs{video: map[uint8]bool{}, audio: map[uint8]bool{}}
}

// admit reports whether the probe hands msg to gortmplib: a multitrack
// message of a track whose sequence start did not come first (gortmplib
// would refuse the whole publisher: "track N not configured") and a
// second sequence start of a track ("already setupped") are dropped.
func (ids trackIDs) admit(msg message.Message) bool {
	switch m := msg.(type) {
	case *message.Video:
		if m.Type == message.VideoTypeConfig && (m.Codec == message.CodecH264 || m.Codec == message.CodecH265) {
			ids.video[0] = true
		}
	case *message.VideoExSequenceStart:
		if ids.video[0] {
			return false
		}
		ids.video[0] = true
	case *message.VideoExMultitrack:
		if _, ok := m.Wrapped.(*message.VideoExSequenceStart); ok {
			if ids.video[m.TrackID] {
				return false
			}
			ids.video[m.TrackID] = true
			return true
		}
		return ids.video[m.TrackID]
	case *message.AudioExMultitrack:
		switch w := m.Wrapped.(type) {
		case *message.AudioExSequenceStart:
			if ids.audio[m.TrackID] {
				return false
			}
			ids.audio[m.TrackID] = true
			return true
		case *message.AudioExCodedFrames:
			if w.FourCC == message.FourCCMP3 { // needs no sequence start
				ids.audio[m.TrackID] = true
			}
			return ids.audio[m.TrackID]
		}
		return ids.audio[m.TrackID]
	}
	return true
}

// sortedIDs returns the keys of m in order.
func sortedIDs(m map[uint8]bool) []uint8 {
	out := make([]uint8, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// trackFilter is how the reader reads the publisher after the probe: it
// drops the multitrack messages of track ids not carried (never announced,
// or not kept) and tells a rung's sequence end.
type trackFilter struct {
	gortmplib.Conn
	video, audio map[uint8]bool    // ids the reader has callbacks for
	onEnd        func(id uint8)    // a carried video track's sequence end
	log          *slog.Logger      // where the first ignored ids are said
	ignored      map[[2]uint8]bool // (kind, id) already logged
	dropped      int               // messages dropped
}

func (f *trackFilter) Read() (message.Message, error) {
	for {
		msg, err := f.Conn.Read()
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *message.VideoExMultitrack:
			if !f.video[m.TrackID] {
				f.ignore(0, m.TrackID)
				continue
			}
			if _, ok := m.Wrapped.(*message.VideoExSequenceEnd); ok && f.onEnd != nil {
				f.onEnd(m.TrackID)
			}
		case *message.AudioExMultitrack:
			if !f.audio[m.TrackID] {
				f.ignore(1, m.TrackID)
				continue
			}
		}
		return msg, nil
	}
}

// ignore counts a dropped message and logs its track the first time, for
// the first maxIgnoredLogs tracks.
func (f *trackFilter) ignore(kind, id uint8) {
	f.dropped++
	k := [2]uint8{kind, id}
	if f.ignored[k] || len(f.ignored) >= maxIgnoredLogs {
		return
	}
	if f.ignored == nil {
		f.ignored = map[[2]uint8]bool{}
	}
	f.ignored[k] = true
	what := "video"
	if kind == 1 {
		what = "audio"
	}
	f.log.Warn("multitrack: ignoring a track the publisher did not announce in its first seconds, or that streamhub does not carry",
		"kind", what, "track", id)
}

// splitTracks sorts the reader's tracks (video by id, then audio by id)
// into the source's (the first video track and every audio track) and the
// further video tracks with their ids. ids are the probe's video ids.
func splitTracks(lib []*gortmplib.Track, videoIDs []uint8) (source []*gortmplib.Track, further []*gortmplib.Track, furtherIDs []uint8) {
	v := 0
	for _, lt := range lib {
		if !isVideo(lt) {
			source = append(source, lt)
			continue
		}
		if v == 0 || v >= len(videoIDs) {
			source = append(source, lt)
		} else {
			further = append(further, lt)
			furtherIDs = append(furtherIDs, videoIDs[v])
		}
		v++
	}
	return source, further, furtherIDs
}

func isVideo(lt *gortmplib.Track) bool {
	switch lt.Codec.(type) {
	case *rtmpcodecs.H264, *rtmpcodecs.H265, *rtmpcodecs.AV1, *rtmpcodecs.VP9:
		return true
	}
	return false
}

// newRungs makes the rungs of the further video tracks: H264 or H265 with
// a picture size (named after its height); another codec, an unknown size
// or a height a rung has already is skipped with a log line. audio, if not
// nil, is the source's audio track each rung carries a copy of.
func newRungs(further []*gortmplib.Track, ids []uint8, source string, audio *media.Track, log *slog.Logger) []*rung {
	var out []*rung
	for i, lt := range further {
		t := &media.Track{ID: 0}
		switch codec := lt.Codec.(type) {
		case *rtmpcodecs.H264:
			t.Codec, t.SPS, t.PPS = media.CodecH264, codec.SPS, codec.PPS
		case *rtmpcodecs.H265:
			t.Codec, t.VPS, t.SPS, t.PPS = media.CodecH265, codec.VPS, codec.SPS, codec.PPS
		default:
			log.Warn("multitrack: a rendition not carried: streamhub takes H264 and H265 renditions", "track", ids[i], "codec", fmt.Sprintf("%T", lt.Codec))
			continue
		}
		v := units.NewVideo(t)
		t = v.Track()
		if t.Height <= 0 {
			log.Warn("multitrack: a rendition not carried: its picture size is unreadable", "track", ids[i])
			continue
		}
		name := server.PublisherRungName(t.Height)
		if slices.ContainsFunc(out, func(r *rung) bool { return r.name == name }) {
			log.Warn("multitrack: a rendition not carried: another track has its height", "track", ids[i], "rung", name)
			continue
		}
		r := &rung{id: ids[i], name: name, path: source + "/" + name, lib: lt, video: v, tracks: []*media.Track{t}}
		r.unwrap.Period = rtmpClock
		if audio != nil {
			a := *audio
			a.ID, a.Session = 1, 0
			r.tracks = append(r.tracks, &a)
		}
		out = append(out, r)
	}
	return out
}

// firstVideo returns the index of the source's video track, -1 if none.
func (in *ingest) firstVideo() int {
	for i, t := range in.tracks {
		if t.IsVideo() {
			return i
		}
	}
	return -1
}

// firstAudio returns the source's first audio track, the one the rungs
// carry a copy of, or nil.
func (in *ingest) firstAudio() *media.Track {
	for _, t := range in.tracks {
		if !t.IsVideo() {
			return t
		}
	}
	return nil
}

// rungVideo handles one picture of a rung's track.
func (in *ingest) rungVideo(rg *rung, pts, dts time.Duration, au [][]byte) {
	if rg.ended || rg.pub == nil {
		return
	}
	udts := rg.unwrap.Unwrap(dts % rtmpClock)
	if in.srcSeen {
		if skew := udts - in.srcLast; skew > maxTrackSkew || skew < -maxTrackSkew {
			in.endRung(rg, fmt.Sprintf("its timestamps are %s from the source track's (more than %s): the publisher's tracks disagree", skew, maxTrackSkew))
			return
		}
	}
	if rg.seen && udts <= rg.last {
		rg.backwards++ // a timestamp that goes back or stands still: dropped
		return
	}
	u, changed := rg.video.Unit(udts+(pts-dts), udts, au)
	if changed {
		rg.tracks[0] = rg.video.Track()
		rg.pub.UpdateTrack(rg.video.Track())
	}
	if u == nil {
		return
	}
	rg.last, rg.seen = udts, true
	u.Wall = time.Now()
	rg.pub.Write(u)
}

// rungAudio gives every live rung a copy of the source's audio frame at
// pts (the same payload, the rung's own track).
func (in *ingest) rungAudio(pts time.Duration, wall time.Time, frame []byte) {
	for _, rg := range in.rungs {
		if rg.ended || rg.pub == nil || len(rg.tracks) < 2 || !rg.seen {
			continue
		}
		rg.pub.Write(&media.Unit{Track: rg.tracks[1], PTS: pts, DTS: pts, KeyFrame: true, Payload: [][]byte{frame}, Wall: wall})
	}
}

// checkSilentRungs ends the rungs whose track sent no picture for
// trackSilence of the source's media.
func (in *ingest) checkSilentRungs() {
	for _, rg := range in.rungs {
		if rg.ended || rg.pub == nil {
			continue
		}
		if !rg.seen && rg.from == 0 {
			rg.from = in.srcLast
			if rg.from == 0 {
				rg.from = 1 // 0 means "not set"
			}
			continue
		}
		ref := rg.from
		if rg.seen {
			ref = rg.last
		}
		if in.srcLast-ref > trackSilence {
			in.endRung(rg, fmt.Sprintf("the track sent no picture for %s while the source went on: the publisher dropped it", trackSilence))
		}
	}
}

// trackEnded ends the rung of track id, which the publisher ended (a
// sequence end).
func (in *ingest) trackEnded(id uint8) {
	for _, rg := range in.rungs {
		if rg.id == id && !rg.ended {
			in.endRung(rg, "the publisher ended the track (sequence end)")
		}
	}
}

// endRung ends one rung, saying why once; the source and the other rungs
// go on.
func (in *ingest) endRung(rg *rung, why string) {
	rg.ended = true
	if rg.pub != nil {
		rg.pub.Close()
	}
	in.log.Warn("multitrack: rendition ended", "path", rg.path, "track", rg.id, "cause", why, "dropped", rg.backwards)
}

// closeRungs ends every rung still live (the connection ends).
func (in *ingest) closeRungs() {
	for _, rg := range in.rungs {
		if !rg.ended && rg.pub != nil {
			rg.ended = true
			rg.pub.Close()
		}
	}
}
