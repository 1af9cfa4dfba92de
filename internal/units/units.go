// Package units holds what every ingest protocol needs to turn decoded
// access units into hub units: parameter-set tracking, in-band parameter
// sets at every keyframe, keyframe detection, and timestamp unwrapping.
package units

import (
	"fmt"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/streamhub/streamhub/media"
)

// Writer is what ingest needs of a server.Publisher (tests fake it).
type Writer interface {
	Write(u *media.Unit)
	UpdateTrack(t *media.Track)
}

// Video turns the access units of one H264, H265 or AV1 track into hub
// units. It notices parameter-set changes (a new track generation), puts the
// parameter sets in-band before every keyframe, and drops access unit
// delimiters. It is not safe for concurrent use.
type Video struct {
	track *media.Track
}

// NewVideo returns a Video for t, whose parameter sets may still be unknown.
func NewVideo(t *media.Track) *Video {
	v := &Video{track: t}
	FillVideoInfo(t)
	return v
}

// Track returns the current generation of the track.
func (v *Video) Track() *media.Track { return v.track }

// Unit returns the hub unit for au, or nil when au carries no picture (for
// example only parameter sets). changed reports that au brought new
// parameter sets: Track now returns a new generation, to be passed to
// Publisher.UpdateTrack before writing u. The NALUs of au are kept, not copied.
func (v *Video) Unit(pts, dts time.Duration, au [][]byte) (u *media.Unit, changed bool) {
	switch v.track.Codec {
	case media.CodecH264, media.CodecH265:
		return v.h26x(pts, dts, au)
	case media.CodecAV1:
		return v.av1(pts, dts, au)
	}
	return nil, false
}

func (v *Video) h26x(pts, dts time.Duration, au [][]byte) (*media.Unit, bool) {
	isH265 := v.track.Codec == media.CodecH265
	var vps, sps, pps []byte
	hasPic, key := false, false
	out := make([][]byte, 0, len(au)+3)
	for _, nalu := range au {
		if len(nalu) == 0 {
			continue
		}
		if isH265 {
			if len(nalu) < 2 {
				continue
			}
			switch typ := h265.NALUType((nalu[0] >> 1) & 0x3F); {
			case typ == h265.NALUType_VPS_NUT:
				vps = nalu
			case typ == h265.NALUType_SPS_NUT:
				sps = nalu
			case typ == h265.NALUType_PPS_NUT:
				pps = nalu
			case typ == h265.NALUType_AUD_NUT:
				continue
			case typ <= h265.NALUType_CRA_NUT: // VCL: slices
				hasPic = true
				key = key || typ >= h265.NALUType_BLA_W_LP
			}
		} else {
			switch h264.NALUType(nalu[0] & 0x1F) {
			case h264.NALUTypeSPS:
				sps = nalu
			case h264.NALUTypePPS:
				pps = nalu
			case h264.NALUTypeAccessUnitDelimiter:
				continue
			case h264.NALUTypeIDR:
				hasPic, key = true, true
			case h264.NALUTypeNonIDR, h264.NALUTypeDataPartitionA, h264.NALUTypeDataPartitionB, h264.NALUTypeDataPartitionC:
				hasPic = true
			}
		}
		out = append(out, nalu)
	}

	changed := v.updateParams(vps, sps, pps)
	if !hasPic {
		return nil, changed
	}
	t := v.track
	if key && (sps == nil || pps == nil || (isH265 && vps == nil)) && t.SPS != nil && t.PPS != nil {
		params := [][]byte{t.SPS, t.PPS}
		if isH265 && t.VPS != nil { // an H265 track may not know its VPS: never emit an empty NALU
			params = [][]byte{t.VPS, t.SPS, t.PPS}
		}
		// Replace whatever partial set the AU had by the full current set.
		rest := out[:0:0]
		for _, n := range out {
			if !isParamSet(n, isH265) {
				rest = append(rest, n)
			}
		}
		out = append(params, rest...)
	}
	return &media.Unit{Track: t, PTS: pts, DTS: dts, KeyFrame: key, Payload: out}, changed
}

func isParamSet(nalu []byte, isH265 bool) bool {
	if isH265 {
		typ := h265.NALUType((nalu[0] >> 1) & 0x3F)
		return typ == h265.NALUType_VPS_NUT || typ == h265.NALUType_SPS_NUT || typ == h265.NALUType_PPS_NUT
	}
	typ := h264.NALUType(nalu[0] & 0x1F)
	return typ == h264.NALUTypeSPS || typ == h264.NALUTypePPS
}

// updateParams makes a new track generation when a parameter set differs.
func (v *Video) updateParams(vps, sps, pps []byte) bool {
	t := v.track
	if (vps == nil || string(vps) == string(t.VPS)) && (sps == nil || string(sps) == string(t.SPS)) &&
		(pps == nil || string(pps) == string(t.PPS)) {
		return false
	}
	n := *t
	n.Generation++
	if vps != nil {
		n.VPS = append([]byte(nil), vps...)
	}
	if sps != nil {
		n.SPS = append([]byte(nil), sps...)
	}
	if pps != nil {
		n.PPS = append([]byte(nil), pps...)
	}
	FillVideoInfo(&n)
	v.track = &n
	return true
}

func (v *Video) av1(pts, dts time.Duration, tu [][]byte) (*media.Unit, bool) {
	changed := false
	out := make([][]byte, 0, len(tu))
	for _, obu := range tu {
		if len(obu) == 0 {
			continue
		}
		switch av1.OBUType((obu[0] >> 3) & 0x0F) {
		case av1.OBUTypeTemporalDelimiter:
			continue
		case av1.OBUTypeSequenceHeader:
			if string(obu) != string(v.track.AV1SequenceHeader) {
				n := *v.track
				n.Generation++
				n.AV1SequenceHeader = append([]byte(nil), obu...)
				FillVideoInfo(&n)
				v.track = &n
				changed = true
			}
		}
		out = append(out, obu)
	}
	if len(out) == 0 {
		return nil, changed
	}
	return &media.Unit{Track: v.track, PTS: pts, DTS: dts, KeyFrame: av1.IsRandomAccess2(out), Payload: out}, changed
}

// FillVideoInfo sets t's Width, Height and FPS from its parameter sets,
// leaving them as they are when the sets are missing or do not parse.
func FillVideoInfo(t *media.Track) {
	switch t.Codec {
	case media.CodecH264:
		var s h264.SPS
		if t.SPS != nil && s.Unmarshal(t.SPS) == nil {
			t.Width, t.Height, t.FPS = s.Width(), s.Height(), s.FPS()
		}
	case media.CodecH265:
		var s h265.SPS
		if t.SPS != nil && s.Unmarshal(t.SPS) == nil {
			t.Width, t.Height, t.FPS = s.Width(), s.Height(), s.FPS()
		}
	case media.CodecAV1:
		var s av1.SequenceHeader
		if t.AV1SequenceHeader != nil && s.Unmarshal(t.AV1SequenceHeader) == nil {
			t.Width, t.Height = s.Width(), s.Height()
		}
	}
}

// FillAAC sets an AAC track's codec, AudioSpecificConfig, sample rate and
// channels from asc.
func FillAAC(t *media.Track, asc *mpeg4audio.AudioSpecificConfig) error {
	b, err := asc.Marshal()
	if err != nil {
		return fmt.Errorf("AAC config: %w", err)
	}
	t.Codec, t.AudioConfig, t.SampleRate = media.CodecAAC, b, asc.SampleRate
	t.Channels = int(asc.ChannelConfig)
	if asc.ChannelConfig == 7 {
		t.Channels = 8
	}
	return nil
}

// LATMFrames returns the raw AAC access units of one LATM AudioMuxElement
// (first program, first layer of each subframe). smc is the stream's
// StreamMuxConfig; with muxConfigPresent the element may carry its own, and
// it is returned too (nil if none).
func LATMFrames(el []byte, smc *mpeg4audio.StreamMuxConfig, muxConfigPresent bool) ([][]byte, *mpeg4audio.StreamMuxConfig, error) {
	ame := mpeg4audio.AudioMuxElement{MuxConfigPresent: muxConfigPresent, StreamMuxConfig: smc}
	if err := ame.Unmarshal(el); err != nil {
		return nil, nil, fmt.Errorf("LATM: %w", err)
	}
	var aus [][]byte
	for _, sub := range ame.Payloads {
		if len(sub) > 0 && len(sub[0]) > 0 && len(sub[0][0]) > 0 {
			aus = append(aus, sub[0][0])
		}
	}
	return aus, ame.StreamMuxConfig, nil
}

// Unwrapper turns a wrapping clock (RTMP's 32-bit milliseconds, MPEG-TS's
// 33-bit 90 kHz) into a monotonic time.Duration. Values may arrive slightly
// out of order (audio and video interleave); a jump back of more than half
// the period is taken as a wrap.
type Unwrapper struct {
	Period time.Duration // the clock's period, e.g. 1<<32 ms
	last   time.Duration
	base   time.Duration
	init   bool
}

// Unwrap returns v (in [0, Period)) placed on the unwrapped timeline.
func (w *Unwrapper) Unwrap(v time.Duration) time.Duration {
	if !w.init {
		w.init, w.last = true, v
		return v
	}
	switch d := v - w.last; {
	case d < -w.Period/2:
		w.base += w.Period
	case d > w.Period/2 && w.base >= w.Period:
		w.base -= w.Period // a late value from before the wrap
	}
	w.last = v
	return w.base + v
}
