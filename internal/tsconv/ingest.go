// Package tsconv converts between MPEG-TS and hub units, for every part of
// streamhub that speaks MPEG-TS: SRT ingest and read, and the FFmpeg ladder
// (fed MPEG-TS on stdin, read back as MPEG-TS per rung).
//
//	mpegts.Reader ──OnData…──▶ Ingest ──▶ units.Writer (a server.Publisher)
//	*media.Unit ──▶ Muxer ──▶ TS packets of one access unit
package tsconv

import (
	"fmt"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg1audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/streamhub/streamhub/internal/units"
	"github.com/streamhub/streamhub/media"
)

// SupportedCodecs is said to publishers whose stream has nothing we carry.
const SupportedCodecs = "H264 and H265 video; AAC (ADTS or LATM), Opus and MP3 audio"

// Clock is MPEG-TS's 90 kHz clock.
const Clock = 90000

// Ingest turns a demuxed MPEG-TS stream into hub units. The TS carries the
// encoder's DTS, so B-frames keep their real decode times; 33-bit PTS/DTS
// wrap is undone by one TimeDecoder shared by all tracks.
type Ingest struct {
	pub    units.Writer
	tracks []*media.Track
	td     *mpegts.TimeDecoder
	video  map[int]*units.Video
	// lastDTS per track, to drop a unit that would go back in time (a
	// corrupt timestamp) instead of handing the hub a broken timeline.
	lastDTS map[int]time.Duration
	// latm holds the StreamMuxConfig of LATM tracks, learnt in-band.
	latm map[int]*mpeg4audio.StreamMuxConfig
	// onError counts a problem in the stream (it does not end the session).
	onError func(error)
	// base is added to every timestamp, in 90 kHz ticks (see SetTimeBase).
	base int64
}

// NewIngest maps the TS tracks of an initialized reader to hub tracks and
// registers the reader callbacks; tracks we do not carry are skipped, none
// at all is an error. Call SetWriter before the first r.Read.
func NewIngest(r *mpegts.Reader, onError func(error)) (*Ingest, error) {
	in := newIngest(onError)
	var skipped []string
	for _, tt := range r.Tracks() {
		id := len(in.tracks)
		t := &media.Track{ID: id}
		switch c := tt.Codec.(type) {
		case *tscodecs.H264:
			t.Codec = media.CodecH264
			r.OnDataH264(tt, func(pts, dts int64, au [][]byte) error { in.videoAU(id, pts, dts, au); return nil })
		case *tscodecs.H265:
			t.Codec = media.CodecH265
			r.OnDataH265(tt, func(pts, dts int64, au [][]byte) error { in.videoAU(id, pts, dts, au); return nil })
		case *tscodecs.MPEG4Audio:
			if err := units.FillAAC(t, &c.Config); err != nil {
				return nil, err
			}
			r.OnDataMPEG4Audio(tt, func(pts int64, aus [][]byte) error {
				in.audio(id, pts, aus, func([]byte) int64 { return mpeg4audio.SamplesPerAccessUnit }, int64(in.tracks[id].SampleRate))
				return nil
			})
		case *tscodecs.MPEG4AudioLATM:
			// The config travels in-band: the track gets it with the first
			// element (a new generation), and no unit goes out before.
			t.Codec = media.CodecAAC
			r.OnDataMPEG4AudioLATM(tt, func(pts int64, els [][]byte) error { in.latmAudio(id, pts, els); return nil })
		case *tscodecs.Opus:
			t.Codec, t.SampleRate, t.Channels = media.CodecOpus, 48000, max(c.ChannelCount, 1)
			r.OnDataOpus(tt, func(pts int64, pkts [][]byte) error {
				in.audio(id, pts, pkts, opus.PacketDuration2, 48000)
				return nil
			})
		case *tscodecs.MPEG1Audio:
			t.Codec = media.CodecMP3
			r.OnDataMPEG1Audio(tt, func(pts int64, frames [][]byte) error { in.mp3(id, pts, frames); return nil })
		default:
			skipped = append(skipped, fmt.Sprintf("%T", tt.Codec))
			continue
		}
		if t.IsVideo() {
			in.video[id] = units.NewVideo(t)
			t = in.video[id].Track()
		}
		in.tracks = append(in.tracks, t)
	}
	if len(in.tracks) == 0 {
		return nil, fmt.Errorf("the MPEG-TS has no track streamhub can take (found %v): it takes %s", skipped, SupportedCodecs)
	}
	return in, nil
}

func newIngest(onError func(error)) *Ingest {
	return &Ingest{td: mpegts.NewTimeDecoder(), video: map[int]*units.Video{}, lastDTS: map[int]time.Duration{},
		latm: map[int]*mpeg4audio.StreamMuxConfig{}, onError: onError}
}

// Tracks returns the hub tracks, in TS order; their IDs are their indexes.
func (in *Ingest) Tracks() []*media.Track { return in.tracks }

// SetWriter sets where the units go (a server.Publisher).
func (in *Ingest) SetWriter(w units.Writer) { in.pub = w }

// SetTimeBase makes the stream's timestamps absolute: a TS timestamp equal
// to base on the 90 kHz clock (modulo 2^33) becomes base, and the others
// follow from it, unwrapped. Without it the first timestamp becomes zero.
// The ladder uses it to give each rung the very timestamps of the source
// it was fed (FFmpeg keeps them with -copyts). Call it before the first Read.
func (in *Ingest) SetTimeBase(base time.Duration) {
	in.base = TSTime(base)
	in.td.Decode(in.base & maxTS)
}

// maxTS masks a timestamp to the 33 bits MPEG-TS carries.
const maxTS = 1<<33 - 1

// Ticks converts the 90 kHz clock to hub time.
func Ticks(v int64) time.Duration {
	return time.Duration(v/Clock)*time.Second + time.Duration(v%Clock)*time.Second/Clock
}

// TSTime converts hub time to the 90 kHz clock (the muxer wraps it),
// rounding to the nearest tick so that TSTime(Ticks(v)) == v.
func TSTime(d time.Duration) int64 {
	if d < 0 {
		return -TSTime(-d)
	}
	return int64(d/time.Second)*Clock + (int64(d%time.Second)*Clock+int64(time.Second)/2)/int64(time.Second)
}

// monotonic reports whether a unit at dts may be written on track id, and
// records it.
func (in *Ingest) monotonic(id int, dts time.Duration) bool {
	if last, ok := in.lastDTS[id]; ok && dts < last {
		in.onError(fmt.Errorf("track %d: timestamp went back from %v to %v: unit dropped", id, last, dts))
		return false
	}
	in.lastDTS[id] = dts
	return true
}

func (in *Ingest) videoAU(id int, pts, dts int64, au [][]byte) {
	v := in.video[id]
	// On the tick: a source in ms or at 90 kHz gets its times back exactly.
	d := Ticks(in.base + in.td.Decode(dts))
	p := d + Ticks(pts-dts) // PTS-DTS is small and never wraps meaningfully
	u, changed := v.Unit(p, d, au)
	if changed {
		in.tracks[id] = v.Track()
		in.pub.UpdateTrack(v.Track())
	}
	if u == nil || !in.monotonic(id, d) {
		return
	}
	u.Wall = time.Now()
	in.pub.Write(u)
}

// audio writes the frames of one PES, each one frame duration (in rate Hz,
// from dur) after the previous.
func (in *Ingest) audio(id int, pts int64, frames [][]byte, dur func([]byte) int64, rate int64) {
	base := Ticks(in.base + in.td.Decode(pts))
	if rate <= 0 {
		return
	}
	now := time.Now()
	var off int64
	for _, f := range frames {
		if len(f) == 0 {
			continue
		}
		d := base + time.Duration(off)*time.Second/time.Duration(rate)
		off += dur(f)
		if !in.monotonic(id, d) {
			continue
		}
		in.pub.Write(&media.Unit{Track: in.tracks[id], PTS: d, DTS: d, KeyFrame: true, Payload: [][]byte{f}, Wall: now})
	}
}

func (in *Ingest) latmAudio(id int, pts int64, els [][]byte) {
	var aus [][]byte
	for _, el := range els {
		frames, smc, err := units.LATMFrames(el, in.latm[id], true)
		if err != nil {
			in.onError(err)
			continue
		}
		if smc != nil && smc != in.latm[id] {
			in.latm[id] = smc
			if len(smc.Programs) > 0 && len(smc.Programs[0].Layers) > 0 && smc.Programs[0].Layers[0].AudioSpecificConfig != nil {
				n := *in.tracks[id]
				if err := units.FillAAC(&n, smc.Programs[0].Layers[0].AudioSpecificConfig); err == nil &&
					string(n.AudioConfig) != string(in.tracks[id].AudioConfig) {
					n.Generation++
					in.tracks[id] = &n
					in.pub.UpdateTrack(&n)
				}
			}
		}
		aus = append(aus, frames...)
	}
	if in.tracks[id].AudioConfig == nil {
		return // no config yet: nothing a player could decode
	}
	in.audio(id, pts, aus, func([]byte) int64 { return mpeg4audio.SamplesPerAccessUnit }, int64(in.tracks[id].SampleRate))
}

func (in *Ingest) mp3(id int, pts int64, frames [][]byte) {
	t := in.tracks[id]
	if t.SampleRate == 0 && len(frames) > 0 {
		var h mpeg1audio.FrameHeader
		if err := h.Unmarshal(frames[0]); err == nil {
			n := *t
			n.SampleRate = h.SampleRate
			n.Channels = 2
			if h.ChannelMode == mpeg1audio.ChannelModeMono {
				n.Channels = 1
			}
			n.Generation++
			in.tracks[id] = &n
			in.pub.UpdateTrack(&n)
		}
	}
	in.audio(id, pts, frames, func(f []byte) int64 {
		var h mpeg1audio.FrameHeader
		if h.Unmarshal(f) != nil {
			return 1152
		}
		return int64(h.SampleCount())
	}, int64(in.tracks[id].SampleRate))
}
