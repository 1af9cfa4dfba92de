// Package flv converts hub units to FLV tags and back. Both rtmp and httpflv
// use it, so the two cannot drift: an RTMP audio or video message body is an
// FLV tag body.
//
// H.264 and AAC use the classic FLV tags; H.265, AV1 and Opus use Enhanced
// RTMP (FourCC) tags, which OBS, ffmpeg 6.1+, mpegts.js and flv.js read.
package flv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/streamhub/streamhub/media"
)

// Tag types.
const (
	TagAudio  = 8
	TagVideo  = 9
	TagScript = 18
)

// HeaderSize is the size of an FLV tag header; TrailerSize the size of the
// PreviousTagSize field that follows each tag.
const (
	HeaderSize  = 11
	TrailerSize = 4
)

// Enhanced RTMP packet types and FourCCs.
const (
	exHeader          = 0x80
	exSequenceStart   = 0
	exCodedFrames     = 1
	exAudioHeaderByte = 9 << 4 // SoundFormat 9 = ExHeader
)

var (
	fourCCHEVC = [4]byte{'h', 'v', 'c', '1'}
	fourCCAV1  = [4]byte{'a', 'v', '0', '1'}
	fourCCOpus = [4]byte{'O', 'p', 'u', 's'}
)

// ErrUnsupportedCodec is returned for a codec FLV cannot carry.
var ErrUnsupportedCodec = errors.New("flv: unsupported codec: FLV carries H264, H265, AV1, AAC, Opus, MP3 and 8 kHz mono G.711")

// FileHeader returns the 9-byte FLV file header followed by PreviousTagSize0.
func FileHeader(hasVideo, hasAudio bool) []byte {
	var flags byte
	if hasAudio {
		flags |= 4
	}
	if hasVideo {
		flags |= 1
	}
	return []byte{'F', 'L', 'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0}
}

// Timestamp converts a stream time to the 32-bit millisecond FLV/RTMP clock,
// which wraps every 2^32 ms (about 49.7 days). Readers unwrap it.
func Timestamp(d time.Duration) uint32 {
	if d < 0 {
		return 0
	}
	return uint32(uint64(d / time.Millisecond))
}

// maxTagBody leaves room for the tag's own headers under the 24-bit size field.
const maxTagBody = 0xFFFFFF - 1024

// appendTagHeader appends an 11-byte tag header for a body of n bytes.
func appendTagHeader(dst []byte, typ byte, ts uint32, n int) []byte {
	return append(dst, typ, byte(n>>16), byte(n>>8), byte(n),
		byte(ts>>16), byte(ts>>8), byte(ts), byte(ts>>24), 0, 0, 0)
}

func appendTrailer(dst []byte, n int) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(HeaderSize+n))
}

// AppendTag appends a complete tag (header, body, PreviousTagSize) to dst.
func AppendTag(dst []byte, typ byte, ts uint32, body []byte) []byte {
	dst = appendTagHeader(dst, typ, ts, len(body))
	dst = append(dst, body...)
	return appendTrailer(dst, len(body))
}

// TagTime returns the 32-bit millisecond timestamp of a tag from its
// 11-byte header (24 bits plus the extension byte).
func TagTime(h []byte) uint32 {
	return uint32(h[7])<<24 | uint32(h[4])<<16 | uint32(h[5])<<8 | uint32(h[6])
}

// dataSize returns the body size an 11-byte tag header announces.
func dataSize(h []byte) int { return int(h[1])<<16 | int(h[2])<<8 | int(h[3]) }

// Body returns the body of a complete tag made by this package.
func Body(tag []byte) []byte { return tag[HeaderSize : len(tag)-TrailerSize] }

// memoKey is the key under which a unit's tag is cached (media.Unit.Memo).
type memoKey struct{}

// UnitTag returns the complete FLV tag of u, built once per unit and shared
// by every reader (the bytes must not be modified). It returns nil for a
// codec FLV cannot carry.
func UnitTag(u *media.Unit) []byte {
	return u.Memo(memoKey{}, func(u *media.Unit) []byte { return AppendUnitTag(nil, u, u.DTS) })
}

// retimedKey is the key of a retimed unit's own tag header.
type retimedKey struct{}

// UnitParts returns u's tag: whole (rest nil), or, for a unit that retimes
// another (u.Orig, the hub's catch-up join), a head of its own (the tag
// header and, for H.264 and H.265, the body's first bytes up to the
// composition time offset, made once per unit) and the original's
// remaining body and trailer, shared. A join storm's retimed GOPs then
// cost a head per unit, not a copy of every picture, B-frames included:
// the catch-up squeeze changes their composition times too.
func UnitParts(u *media.Unit) (head, rest []byte) {
	if o := u.Orig; o != nil && u.KeyFrame == o.KeyFrame && u.Track.Codec == o.Track.Codec {
		tag := UnitTag(o)
		if n := HeaderSize + ctsEnd(o.Track.Codec); len(tag) > n+TrailerSize {
			h := u.Memo(retimedKey{}, func(u *media.Unit) []byte {
				h := append([]byte(nil), tag[:n]...)
				ts := Timestamp(u.DTS)
				h[4], h[5], h[6], h[7] = byte(ts>>16), byte(ts>>8), byte(ts), byte(ts>>24)
				if n > HeaderSize {
					cts := compositionTime(u)
					h[n-3], h[n-2], h[n-1] = byte(cts>>16), byte(cts>>8), byte(cts)
				}
				return h
			})
			return h, tag[n:]
		}
	}
	return UnitTag(u), nil
}

// ctsEnd is where the composition time offset of a video tag body of codec
// c ends (it is the 3 bytes before), or 0 for a tag without one.
func ctsEnd(c media.Codec) int {
	switch c {
	case media.CodecH264:
		return 5 // frame type and codec, AVC packet type, offset
	case media.CodecH265:
		return 8 // Enhanced RTMP header byte, FourCC, offset
	}
	return 0
}

// compositionTime is u's PTS-DTS in milliseconds, clamped to FLV's signed
// 24-bit field.
func compositionTime(u *media.Unit) int32 {
	return int32(max(min((u.PTS-u.DTS)/time.Millisecond, 0x7fffff), -0x800000))
}

// IsHead reports whether b, one of the slices a Muxer appends, is the head
// of a tag whose rest is the next slice: it is shorter than the tag its
// header announces.
func IsHead(b []byte) bool {
	if len(b) < HeaderSize {
		return false
	}
	return len(b) < HeaderSize+dataSize(b)+TrailerSize
}

// AppendUnitTag appends the tag of u with its timestamp taken from dts
// (u.DTS, or a retimed value), or returns dst unchanged for a codec FLV
// cannot carry.
func AppendUnitTag(dst []byte, u *media.Unit, dts time.Duration) []byte {
	ts := Timestamp(dts)
	cts := compositionTime(u)
	frameType := byte(2)
	if u.KeyFrame {
		frameType = 1
	}
	if u.PayloadSize() > maxTagBody {
		return dst // cannot be framed: the tag size field has 24 bits
	}
	switch u.Track.Codec {
	case media.CodecH264, media.CodecH265:
		n := 5
		if u.Track.Codec == media.CodecH265 {
			n = 8
		}
		for _, nalu := range u.Payload {
			n += 4 + len(nalu)
		}
		dst = appendTagHeader(dst, TagVideo, ts, n)
		if u.Track.Codec == media.CodecH264 {
			dst = append(dst, frameType<<4|7, 1)
		} else {
			dst = append(dst, exHeader|frameType<<4|exCodedFrames)
			dst = append(dst, fourCCHEVC[:]...)
		}
		dst = append(dst, byte(cts>>16), byte(cts>>8), byte(cts))
		for _, nalu := range u.Payload {
			dst = binary.BigEndian.AppendUint32(dst, uint32(len(nalu)))
			dst = append(dst, nalu...)
		}
		return appendTrailer(dst, n)

	case media.CodecAV1:
		obus, err := av1.Bitstream(u.Payload).Marshal()
		if err != nil {
			return dst
		}
		n := 5 + len(obus)
		dst = appendTagHeader(dst, TagVideo, ts, n)
		dst = append(dst, exHeader|frameType<<4|exCodedFrames)
		dst = append(dst, fourCCAV1[:]...)
		dst = append(dst, obus...)
		return appendTrailer(dst, n)

	case media.CodecAAC, media.CodecMP3, media.CodecOpus, media.CodecG711A, media.CodecG711U:
		if len(u.Payload) != 1 {
			return dst
		}
		var hdr []byte
		switch u.Track.Codec {
		case media.CodecAAC:
			hdr = []byte{0xAF, 1}
		case media.CodecMP3:
			hdr = []byte{0x2F}
		case media.CodecG711A, media.CodecG711U:
			if !flvG711(u.Track) {
				return dst
			}
			// Sound format 7 (A-law) or 8 (µ-law), 16-bit, mono; the rate
			// bits do not apply: FLV's G.711 is 8 kHz.
			hdr = []byte{byte(audioCodecID(u.Track.Codec))<<4 | 0x02}
		default:
			hdr = append([]byte{exAudioHeaderByte | exCodedFrames}, fourCCOpus[:]...)
		}
		n := len(hdr) + len(u.Payload[0])
		dst = appendTagHeader(dst, TagAudio, ts, n)
		dst = append(dst, hdr...)
		dst = append(dst, u.Payload[0]...)
		return appendTrailer(dst, n)
	}
	return dst
}

// flvG711 reports whether FLV can carry the G.711 track t: only 8 kHz mono.
func flvG711(t *media.Track) bool { return t.SampleRate == 8000 && t.Channels <= 1 }

// ConfigTag returns the sequence-header tag of t (AVC/HEVC/AV1 decoder
// configuration, AAC AudioSpecificConfig, Opus ID header), or nil when the
// codec needs none (MP3) or the parameters are not known yet.
func ConfigTag(t *media.Track, ts uint32) ([]byte, error) {
	var body []byte
	switch t.Codec {
	case media.CodecH264:
		if t.SPS == nil || t.PPS == nil {
			return nil, nil
		}
		avcc, err := AVCDecoderConfig(t.SPS, t.PPS)
		if err != nil {
			return nil, err
		}
		body = append([]byte{0x17, 0, 0, 0, 0}, avcc...)
	case media.CodecH265:
		if t.VPS == nil || t.SPS == nil || t.PPS == nil {
			return nil, nil
		}
		hvcc, err := HEVCDecoderConfig(t.VPS, t.SPS, t.PPS)
		if err != nil {
			return nil, err
		}
		body = append([]byte{exHeader | 1<<4 | exSequenceStart, 'h', 'v', 'c', '1'}, hvcc...)
	case media.CodecAV1:
		if t.AV1SequenceHeader == nil {
			return nil, nil
		}
		av1c, err := AV1Config(t.AV1SequenceHeader)
		if err != nil {
			return nil, err
		}
		body = append([]byte{exHeader | 1<<4 | exSequenceStart, 'a', 'v', '0', '1'}, av1c...)
	case media.CodecAAC:
		if t.AudioConfig == nil {
			return nil, nil
		}
		body = append([]byte{0xAF, 0}, t.AudioConfig...)
	case media.CodecOpus:
		head := opusHead(t.Channels)
		body = append([]byte{exAudioHeaderByte | exSequenceStart, 'O', 'p', 'u', 's'}, head...)
	case media.CodecMP3:
		return nil, nil
	case media.CodecG711A, media.CodecG711U:
		if !flvG711(t) {
			return nil, fmt.Errorf("%w (got %s at %d Hz, %d channels)", ErrUnsupportedCodec, t.Codec, t.SampleRate, t.Channels)
		}
		return nil, nil
	default:
		return nil, fmt.Errorf("%w (got %s)", ErrUnsupportedCodec, t.Codec)
	}
	typ := byte(TagVideo)
	if !t.IsVideo() {
		typ = TagAudio
	}
	return AppendTag(nil, typ, ts, body), nil
}

// opusHead returns an RFC 7845 identification header.
func opusHead(channels int) []byte {
	if channels < 1 || channels > 2 {
		channels = 2
	}
	h := []byte{'O', 'p', 'u', 's', 'H', 'e', 'a', 'd', 1, byte(channels), 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0}
	return h // pre-skip 312, input rate 48000, gain 0, mapping family 0
}

// AVCDecoderConfig builds an AVCDecoderConfigurationRecord (ISO 14496-15 5.3.3.1).
func AVCDecoderConfig(sps, pps []byte) ([]byte, error) {
	if len(sps) < 4 || len(pps) < 1 || len(sps) > math.MaxUint16 || len(pps) > math.MaxUint16 {
		return nil, fmt.Errorf("flv: invalid H264 parameter sets (SPS %d bytes, PPS %d bytes)", len(sps), len(pps))
	}
	b := []byte{1, sps[1], sps[2], sps[3], 0xFF, 0xE1}
	b = binary.BigEndian.AppendUint16(b, uint16(len(sps)))
	b = append(b, sps...)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(pps)))
	return append(b, pps...), nil
}

// HEVCDecoderConfig builds an HEVCDecoderConfigurationRecord (ISO 14496-15 8.3.3.1).
func HEVCDecoderConfig(vps, sps, pps []byte) ([]byte, error) {
	var s h265.SPS
	if err := s.Unmarshal(sps); err != nil {
		return nil, fmt.Errorf("flv: invalid H265 SPS: %w", err)
	}
	// The constraint flags are copied from the SPS's profile_tier_level:
	// bytes 8-13 of the NAL unit once emulation prevention is removed
	// (2 bytes NAL header, 1 byte ids, 1 byte profile, 4 bytes compatibility).
	raw := h264.EmulationPreventionRemove(sps)
	if len(raw) < 15 || len(vps) > math.MaxUint16 || len(sps) > math.MaxUint16 || len(pps) > math.MaxUint16 {
		return nil, fmt.Errorf("flv: invalid H265 parameter sets")
	}
	ptl := s.ProfileTierLevel
	b := []byte{1, ptl.GeneralProfileSpace<<6 | (ptl.GeneralTierFlag&1)<<5 | ptl.GeneralProfileIdc}
	var compat uint32
	for i, f := range ptl.GeneralProfileCompatibilityFlag {
		if f {
			compat |= 1 << (31 - i)
		}
	}
	b = binary.BigEndian.AppendUint32(b, compat)
	b = append(b, raw[8:14]...) // general_constraint_indicator_flags
	b = append(b, ptl.GeneralLevelIdc,
		0xF0, 0x00, // min_spatial_segmentation_idc
		0xFC,                                // parallelismType
		0xFC|byte(s.ChromaFormatIdc&3),      // chromaFormat
		0xF8|byte(s.BitDepthLumaMinus8&7),   // bitDepthLumaMinus8
		0xF8|byte(s.BitDepthChromaMinus8&7), // bitDepthChromaMinus8
		0, 0,                                // avgFrameRate
		byte((s.MaxSubLayersMinus1+1)&7)<<3|boolBit(s.TemporalIDNestingFlag)<<2|3, // lengthSizeMinusOne = 3
		3) // numOfArrays
	for _, a := range []struct {
		typ  h265.NALUType
		nalu []byte
	}{{h265.NALUType_VPS_NUT, vps}, {h265.NALUType_SPS_NUT, sps}, {h265.NALUType_PPS_NUT, pps}} {
		b = append(b, 0x80|byte(a.typ), 0, 1) // array_completeness=1, one NALU
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.nalu)))
		b = append(b, a.nalu...)
	}
	return b, nil
}

// AV1Config builds an AV1CodecConfigurationRecord (av1C) from a sequence
// header OBU.
func AV1Config(seqHeaderOBU []byte) ([]byte, error) {
	var obuHdr av1.OBUHeader
	if err := obuHdr.Unmarshal(seqHeaderOBU); err != nil || obuHdr.Type != av1.OBUTypeSequenceHeader {
		return nil, fmt.Errorf("flv: not an AV1 sequence header OBU")
	}
	var sh av1.SequenceHeader
	if err := sh.Unmarshal(seqHeaderOBU); err != nil {
		return nil, fmt.Errorf("flv: invalid AV1 sequence header: %w", err)
	}
	var level, tier byte
	if len(sh.SeqLevelIdx) > 0 {
		level = sh.SeqLevelIdx[0]
	}
	if len(sh.SeqTier) > 0 && sh.SeqTier[0] {
		tier = 1
	}
	cc := sh.ColorConfig
	b := []byte{0x81, sh.SeqProfile<<5 | level&0x1F,
		tier<<7 | boolBit(cc.HighBitDepth)<<6 | boolBit(cc.TwelveBit)<<5 | boolBit(cc.MonoChrome)<<4 |
			boolBit(cc.SubsamplingX)<<3 | boolBit(cc.SubsamplingY)<<2 | byte(cc.ChromaSamplePosition)&3,
		0}
	obu, err := av1.Bitstream{seqHeaderOBU}.Marshal() // with obu_size, as av1C requires
	if err != nil {
		return nil, fmt.Errorf("flv: invalid AV1 sequence header: %w", err)
	}
	return append(b, obu...), nil
}

func boolBit(b bool) byte {
	if b {
		return 1
	}
	return 0
}
