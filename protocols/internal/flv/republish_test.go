package flv

import (
	"bytes"
	"testing"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
)

// After a republish with another track layout (audio moves from ID 1 to
// ID 0), the muxer carries the new publisher's audio with a fresh sequence
// header instead of dropping it.
func TestMuxerFollowsRepublishLayout(t *testing.T) {
	v1 := &media.Track{ID: 0, Session: 1, Codec: media.CodecH264, SPS: testfixtures.H264SPS, PPS: testfixtures.H264PPS}
	a1 := &media.Track{ID: 1, Session: 1, Codec: media.CodecAAC, AudioConfig: []byte{0x12, 0x10}, SampleRate: 44100, Channels: 2}
	m := NewMuxer([]*media.Track{v1, a1})
	tags := m.Append(nil, &media.Unit{Track: a1, KeyFrame: true, Payload: [][]byte{{1, 2}}})
	if len(tags) != 2 {
		t.Fatalf("first audio unit: %d tags, want config + frame", len(tags))
	}
	a2 := &media.Track{ID: 0, Session: 2, Codec: media.CodecAAC, AudioConfig: []byte{0x11, 0x90}, SampleRate: 48000, Channels: 2}
	tags = m.Append(nil, &media.Unit{Track: a2, KeyFrame: true, Payload: [][]byte{{3, 4}}})
	if len(tags) != 2 || !bytes.Equal(Body(tags[0])[2:], a2.AudioConfig) {
		t.Fatalf("audio after the republish: %d tags, want the new config then the frame", len(tags))
	}
	if m.Err() != nil {
		t.Fatal(m.Err())
	}
}

// The HEVC decoder configuration takes the constraint flags from the SPS
// with emulation prevention removed.
func TestHEVCDecoderConfigConstraintFlags(t *testing.T) {
	b, err := HEVCDecoderConfig(testfixtures.H265VPS, testfixtures.H265SPS, testfixtures.H265PPS)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0xb0, 0, 0, 0, 0, 0}; !bytes.Equal(b[6:12], want) {
		t.Fatalf("general_constraint_indicator_flags = % x, want % x", b[6:12], want)
	}
}
