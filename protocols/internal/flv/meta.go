package flv

import (
	"encoding/binary"
	"math"

	"github.com/streamhub/streamhub/media"
)

// MetadataBody returns an AMF0 onMetaData script body describing tracks
// (the first video and the first audio track).
func MetadataBody(tracks []*media.Track) []byte {
	b := []byte{2}
	b = appendAMFString(b, "onMetaData")
	var props [][2]any
	if v := FirstTrack(tracks, true); v != nil {
		props = append(props, [2]any{"videocodecid", float64(videoCodecID(v.Codec))})
		if v.Width > 0 {
			props = append(props, [2]any{"width", float64(v.Width)}, [2]any{"height", float64(v.Height)})
		}
		if v.FPS > 0 {
			props = append(props, [2]any{"framerate", v.FPS})
		}
	}
	if a := FirstTrack(tracks, false); a != nil {
		props = append(props, [2]any{"audiocodecid", float64(audioCodecID(a.Codec))})
		if a.SampleRate > 0 {
			props = append(props, [2]any{"audiosamplerate", float64(a.SampleRate)})
		}
		if a.Channels > 0 {
			props = append(props, [2]any{"stereo", a.Channels > 1})
		}
	}
	props = append(props, [2]any{"encoder", "streamhub"})
	b = append(b, 8) // ECMA array
	b = binary.BigEndian.AppendUint32(b, uint32(len(props)))
	for _, p := range props {
		b = appendAMFKey(b, p[0].(string))
		switch v := p[1].(type) {
		case float64:
			b = append(b, 0)
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(v))
		case bool:
			b = append(b, 1, boolBit(v))
		case string:
			b = append(b, 2)
			b = appendAMFKey(b, v)
		}
	}
	return append(b, 0, 0, 9)
}

func appendAMFString(b []byte, s string) []byte { return appendAMFKey(b, s) }

func appendAMFKey(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// FirstTrack returns the first video (video true) or audio track, or nil.
func FirstTrack(tracks []*media.Track, video bool) *media.Track {
	for _, t := range tracks {
		if t.IsVideo() == video {
			return t
		}
	}
	return nil
}

func videoCodecID(c media.Codec) uint32 {
	switch c {
	case media.CodecH264:
		return 7
	case media.CodecH265:
		return binary.BigEndian.Uint32(fourCCHEVC[:])
	case media.CodecAV1:
		return binary.BigEndian.Uint32(fourCCAV1[:])
	}
	return 0
}

func audioCodecID(c media.Codec) uint32 {
	switch c {
	case media.CodecAAC:
		return 10
	case media.CodecMP3:
		return 2
	case media.CodecOpus:
		return binary.BigEndian.Uint32(fourCCOpus[:])
	case media.CodecG711A:
		return 7
	case media.CodecG711U:
		return 8
	}
	return 0
}
