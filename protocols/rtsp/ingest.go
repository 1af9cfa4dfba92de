package rtsp

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpav1"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpfragmented"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/internal/units"
	"github.com/streamhub/streamhub/media"
)

// supportedCodecs is said to publishers whose SDP has nothing we carry.
const supportedCodecs = "H264, H265 and AV1 video; AAC (RFC 3640 and LATM), Opus and G.711 audio"

// errNoSupportedMedia is returned for an SDP without any track we carry.
var errNoSupportedMedia = errors.New("rtsp: the SDP has no track streamhub can take: it takes " + supportedCodecs)

// packetSource is what ingest needs of a ServerSession or a Client: the
// packet callbacks and the PTS of a packet (RTP time unwrapped and
// synchronized across tracks, in the format's clock).
type packetSource interface {
	OnPacketRTP(medi *description.Media, forma format.Format, cb gortsplib.OnPacketRTPFunc)
	PacketPTS(medi *description.Media, pkt *rtp.Packet) (int64, bool)
	Close()
}

// ingest turns an RTSP publisher's (or pulled source's) RTP into hub units:
// one depacketizer per track, DTS computed once, parameter sets from the
// SDP put in-band at every keyframe.
type ingest struct {
	tracks []*media.Track
	inputs []*input

	// mu guards pub and the inputs' state: gortsplib calls each track's
	// callback from its own goroutine (UDP) or one reader (TCP).
	mu  sync.Mutex
	pub units.Writer

	log  *slog.Logger // set by the owner before register
	path string

	lost, decodeErrors atomic.Uint64
	lastErrLog         atomic.Int64 // unix seconds of the last decode-error log line
}

// input is one track of the publisher.
type input struct {
	id    int
	medi  *description.Media
	forma format.Format
	clock int64
	// decode turns one RTP packet into, for video, the NALUs (OBUs) of one
	// access unit; for audio, zero or more frames. nil: more packets needed.
	decode func(pkt *rtp.Packet) ([][]byte, error)
	video  *units.Video
	dts    func(au [][]byte, pts int64) (int64, error)
	resetD func()
	keyed  bool // a keyframe was seen (DTS extraction starts at one)
	// lastDTS (valid with hasLast) is the last DTS written, in the clock.
	lastDTS int64
	hasLast bool
	// audio: duration of one access unit in the clock, for packets that
	// carry several
	auTicks int64
}

// newIngest maps the SDP's medias to hub tracks: for each media the first
// format we carry. Medias with nothing we carry are left out; none at all
// is an error that lists what we take.
func newIngest(desc *description.Session) (*ingest, error) {
	in := &ingest{}
	var skipped []string
	for _, medi := range desc.Medias {
		for _, f := range medi.Formats {
			inp, t, err := newInput(len(in.tracks), f)
			if err != nil {
				skipped = append(skipped, fmt.Sprintf("%s (%v)", f.Codec(), err))
				continue
			}
			if inp == nil {
				skipped = append(skipped, f.Codec())
				continue
			}
			inp.medi = medi
			in.tracks = append(in.tracks, t)
			in.inputs = append(in.inputs, inp)
			break
		}
	}
	if len(in.tracks) == 0 {
		if len(skipped) > 0 {
			return nil, fmt.Errorf("%w (got %v)", errNoSupportedMedia, skipped)
		}
		return nil, errNoSupportedMedia
	}
	return in, nil
}

// newInput returns the input and hub track for one format, or nil, nil, nil
// for a codec we do not carry.
func newInput(id int, f format.Format) (*input, *media.Track, error) {
	t := &media.Track{ID: id}
	inp := &input{id: id, forma: f, clock: int64(f.ClockRate())}
	switch f := f.(type) {
	case *format.H264:
		t.Codec = media.CodecH264
		t.SPS, t.PPS = f.SafeParams()
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, nil, err
		}
		inp.decode = videoDecoder(dec.Decode, rtph264.ErrMorePacketsNeeded, rtph264.ErrNonStartingPacketAndNoPrevious)
		var x h264.DTSExtractor
		inp.resetD = func() { x = h264.DTSExtractor{}; x.Initialize() }
		inp.dts = func(au [][]byte, pts int64) (int64, error) { return x.Extract(au, pts) }
	case *format.H265:
		t.Codec = media.CodecH265
		t.VPS, t.SPS, t.PPS = f.SafeParams()
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, nil, err
		}
		inp.decode = videoDecoder(dec.Decode, rtph265.ErrMorePacketsNeeded, rtph265.ErrNonStartingPacketAndNoPrevious)
		var x h265.DTSExtractor
		inp.resetD = func() { x = h265.DTSExtractor{}; x.Initialize() }
		inp.dts = func(au [][]byte, pts int64) (int64, error) { return x.Extract(au, pts) }
	case *format.AV1:
		t.Codec = media.CodecAV1
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, nil, err
		}
		inp.decode = videoDecoder(dec.Decode, rtpav1.ErrMorePacketsNeeded, rtpav1.ErrNonStartingPacketAndNoPrevious)
	case *format.MPEG4Audio:
		if f.Config == nil {
			return nil, nil, errors.New("AAC without config in the SDP")
		}
		if err := units.FillAAC(t, f.Config); err != nil {
			return nil, nil, err
		}
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, nil, err
		}
		inp.auTicks = mpeg4audio.SamplesPerAccessUnit
		inp.decode = func(pkt *rtp.Packet) ([][]byte, error) {
			aus, err := dec.Decode(pkt)
			if errors.Is(err, rtpmpeg4audio.ErrMorePacketsNeeded) {
				return nil, nil
			}
			return aus, err
		}
	case *format.MPEG4AudioLATM:
		if f.StreamMuxConfig == nil || len(f.StreamMuxConfig.Programs) == 0 ||
			len(f.StreamMuxConfig.Programs[0].Layers) == 0 || f.StreamMuxConfig.Programs[0].Layers[0].AudioSpecificConfig == nil {
			return nil, nil, errors.New("LATM without StreamMuxConfig in the SDP")
		}
		if err := units.FillAAC(t, f.StreamMuxConfig.Programs[0].Layers[0].AudioSpecificConfig); err != nil {
			return nil, nil, err
		}
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, nil, err
		}
		inp.auTicks = mpeg4audio.SamplesPerAccessUnit
		smc, cpresent := f.StreamMuxConfig, f.CPresent
		inp.decode = func(pkt *rtp.Packet) ([][]byte, error) {
			el, err := dec.Decode(pkt)
			if errors.Is(err, rtpfragmented.ErrMorePacketsNeeded) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			aus, _, err := units.LATMFrames(el, smc, cpresent)
			return aus, err
		}
	case *format.Opus:
		t.Codec, t.SampleRate, t.Channels = media.CodecOpus, 48000, max(f.ChannelCount, 1)
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, nil, err
		}
		inp.decode = func(pkt *rtp.Packet) ([][]byte, error) {
			frame, err := dec.Decode(pkt)
			return [][]byte{frame}, err
		}
	case *format.G711:
		t.Codec, t.SampleRate, t.Channels = media.CodecG711A, f.SampleRate, max(f.ChannelCount, 1)
		if f.MULaw {
			t.Codec = media.CodecG711U
		}
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, nil, err
		}
		inp.decode = func(pkt *rtp.Packet) ([][]byte, error) {
			samples, err := dec.Decode(pkt)
			return [][]byte{samples}, err
		}
	default:
		return nil, nil, nil
	}
	if t.IsVideo() {
		inp.video = units.NewVideo(t)
		t = inp.video.Track()
		if inp.resetD != nil {
			inp.resetD()
		}
	}
	return inp, t, nil
}

// videoDecoder adapts a video depacketizer: "need more packets" and a
// fragment without its start are not errors.
func videoDecoder(dec func(*rtp.Packet) ([][]byte, error), more, noStart error) func(*rtp.Packet) ([][]byte, error) {
	return func(pkt *rtp.Packet) ([][]byte, error) {
		au, err := dec(pkt)
		if errors.Is(err, more) || errors.Is(err, noStart) {
			return nil, nil
		}
		return au, err
	}
}

// register sets the packet callbacks of src (a recording session or a
// pulling client). Units go to in.pub, which must be set.
func (in *ingest) register(src packetSource) {
	for _, inp := range in.inputs {
		inp := inp
		src.OnPacketRTP(inp.medi, inp.forma, func(pkt *rtp.Packet) {
			// A panic here would unwind gortsplib's reading goroutine and
			// end the process: it ends this publisher instead.
			defer func() {
				if v := recover(); v != nil {
					guard.Report(in.log, "rtsp ingest", v, "path", in.path)
					go src.Close() // a client's Close waits for this goroutine
				}
			}()
			pts, ok := src.PacketPTS(inp.medi, pkt)
			if !ok {
				return
			}
			frames, err := inp.decode(pkt)
			if err != nil {
				in.decodeError(err)
				return
			}
			if len(frames) == 0 {
				return
			}
			in.mu.Lock()
			defer in.mu.Unlock()
			if inp.video != nil {
				in.videoAU(inp, pts, frames)
			} else {
				in.audio(inp, pts, frames)
			}
		})
	}
}

// ticks converts a clock value to hub time without overflow.
func ticks(v, clock int64) time.Duration {
	return time.Duration(v/clock)*time.Second + time.Duration(v%clock)*time.Second/time.Duration(clock)
}

// videoAU handles one access unit; in.mu is held.
func (in *ingest) videoAU(inp *input, pts int64, au [][]byte) {
	d := ticks(pts, inp.clock)
	u, changed := inp.video.Unit(d, d, au)
	if changed {
		in.tracks[inp.id] = inp.video.Track()
		in.pub.UpdateTrack(inp.video.Track())
	}
	if u == nil {
		return
	}
	if inp.dts != nil {
		// DTS extraction (POC-based) starts at a keyframe whose parameter
		// sets are known; Unit put them in-band.
		if !inp.keyed {
			if !u.KeyFrame || u.Track.SPS == nil {
				return
			}
			inp.keyed = true
		}
		dts, err := inp.dts(u.Payload, pts)
		// The extractor may place a frame after its PTS when the reorder
		// depth grows; a picture is never decoded after it is shown.
		dts = min(dts, pts)
		if err == nil && inp.hasLast && dts <= inp.lastDTS {
			// Equal counts too: a muxer downstream (ffmpeg's among them)
			// refuses a DTS that does not grow.
			err = errors.New("DTS did not grow (PTS jumped back, or frames were lost)")
		}
		if err != nil {
			// An access unit the extractor cannot place: resync at the
			// next keyframe rather than guess (B-frame order would break).
			// lastDTS stays: units that would go back are dropped.
			inp.resetD()
			inp.keyed = false
			in.decodeError(fmt.Errorf("DTS: %w", err))
			return
		}
		u.DTS = ticks(dts, inp.clock)
		inp.lastDTS, inp.hasLast = dts, true
	}
	u.Wall = time.Now()
	in.pub.Write(u)
}

// audio handles the frames of one packet; in.mu is held.
func (in *ingest) audio(inp *input, pts int64, frames [][]byte) {
	now := time.Now()
	for i, f := range frames {
		if len(f) == 0 {
			continue
		}
		d := ticks(pts+int64(i)*inp.auTicks, inp.clock)
		in.pub.Write(&media.Unit{Track: in.tracks[inp.id], PTS: d, DTS: d, KeyFrame: true, Payload: [][]byte{f}, Wall: now})
	}
}

// decodeError counts a packet we could not decode and logs it at most once
// every 10 s: a lossy source must not flood the log, and it does not end
// the session.
func (in *ingest) decodeError(err error) {
	n := in.decodeErrors.Add(1)
	now := time.Now().Unix()
	last := in.lastErrLog.Load()
	if in.log != nil && now-last >= 10 && in.lastErrLog.CompareAndSwap(last, now) {
		in.log.Warn("undecodable packets from the publisher", "path", in.path, "count", n, "last", err.Error())
	}
}
