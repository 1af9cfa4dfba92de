package units

import (
	"bytes"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/streamhub/streamhub/media"
)

// splitAUs turns fuzz bytes into a list of access units: each AU is a
// sequence of (1-byte length, NALU) pairs, ended by a zero length.
func splitAUs(data []byte) [][][]byte {
	var aus [][][]byte
	var cur [][]byte
	for len(data) > 0 {
		n := int(data[0])
		data = data[1:]
		if n == 0 {
			aus = append(aus, cur)
			cur = nil
			continue
		}
		n = min(n, len(data))
		cur = append(cur, data[:n])
		data = data[n:]
	}
	return append(aus, cur)
}

func encodeAUs(aus ...[][]byte) []byte {
	var b []byte
	for _, au := range aus {
		for _, n := range au {
			b = append(b, byte(len(n)))
			b = append(b, n...)
		}
		b = append(b, 0)
	}
	return b
}

func contains(payload [][]byte, nalu []byte) bool {
	for _, p := range payload {
		if bytes.Equal(p, nalu) {
			return true
		}
	}
	return false
}

// FuzzVideoUnit feeds random NALU/OBU lists to Video.Unit: it must never
// panic, never emit an empty NALU, and a key unit must carry the track's
// parameter sets when the track has them.
func FuzzVideoUnit(f *testing.F) {
	f.Add(byte(media.CodecH264), encodeAUs([][]byte{h264SPS, h264PPS}, [][]byte{h264IDR}, [][]byte{h264NonIDR}, [][]byte{h264SPS2, h264IDR}))
	f.Add(byte(media.CodecH264), encodeAUs([][]byte{h264AUD, h264IDR}, [][]byte{h264PPS, h264IDR}))
	f.Add(byte(media.CodecH265), encodeAUs([][]byte{h265VPS, h265SPS, h265PPS}, [][]byte{h265AUD, h265IDR}, [][]byte{h265Trail}))
	f.Add(byte(media.CodecH265), encodeAUs([][]byte{h265SPS, h265PPS, h265IDR}, [][]byte{h265CRA}))
	f.Add(byte(media.CodecAV1), encodeAUs([][]byte{av1TD, av1Seq1, av1Fr}, [][]byte{av1Fr}, [][]byte{av1Seq2, av1Fr}))
	f.Fuzz(func(t *testing.T, codec byte, data []byte) {
		c := []media.Codec{media.CodecH264, media.CodecH265, media.CodecAV1}[int(codec)%3]
		v := NewVideo(&media.Track{Codec: c})
		prev := v.Track()
		for i, au := range splitAUs(data) {
			u, changed := v.Unit(time.Duration(i)*time.Millisecond, time.Duration(i)*time.Millisecond, au)
			tr := v.Track()
			if changed != (tr != prev) {
				t.Fatalf("AU %d: changed=%v but the track pointer changed=%v", i, changed, tr != prev)
			}
			if changed && tr.Generation <= prev.Generation {
				t.Fatalf("AU %d: generation %d after %d", i, tr.Generation, prev.Generation)
			}
			prev = tr
			if u == nil {
				continue
			}
			if u.Track != tr {
				t.Fatalf("AU %d: unit does not point at the current track", i)
			}
			if len(u.Payload) == 0 {
				t.Fatalf("AU %d: unit with an empty payload", i)
			}
			for _, n := range u.Payload {
				if len(n) == 0 {
					t.Fatalf("AU %d: unit with an empty NALU/OBU: %x", i, u.Payload)
				}
			}
			if !u.KeyFrame {
				continue
			}
			switch c {
			case media.CodecH264:
				if tr.SPS != nil && tr.PPS != nil {
					hasSPS, hasPPS := false, false
					for _, n := range u.Payload {
						hasSPS = hasSPS || h264.NALUType(n[0]&0x1F) == h264.NALUTypeSPS
						hasPPS = hasPPS || h264.NALUType(n[0]&0x1F) == h264.NALUTypePPS
					}
					if !hasSPS || !hasPPS || !contains(u.Payload, tr.SPS) || !contains(u.Payload, tr.PPS) {
						t.Fatalf("AU %d: H264 key unit without the track's SPS/PPS: %x", i, u.Payload)
					}
				}
			case media.CodecH265:
				if tr.VPS != nil && tr.SPS != nil && tr.PPS != nil {
					if !contains(u.Payload, tr.VPS) || !contains(u.Payload, tr.SPS) || !contains(u.Payload, tr.PPS) {
						t.Fatalf("AU %d: H265 key unit without the track's VPS/SPS/PPS: %x", i, u.Payload)
					}
				}
				for _, n := range u.Payload {
					if len(n) < 2 {
						t.Fatalf("AU %d: H265 NALU shorter than its header: %x", i, u.Payload)
					}
					_ = h265.NALUType((n[0] >> 1) & 0x3F)
				}
			case media.CodecAV1:
				if tr.AV1SequenceHeader != nil && !contains(u.Payload, tr.AV1SequenceHeader) {
					// A key TU is one that has a sequence header; it is the track's.
					t.Fatalf("AU %d: AV1 key unit without the track's sequence header: %x", i, u.Payload)
				}
				if !av1.IsRandomAccess2(u.Payload) {
					t.Fatalf("AU %d: AV1 key unit that is not random access", i)
				}
			}
		}
	})
}
