package transcode

import (
	"strings"
	"testing"

	"github.com/streamhub/streamhub/media"
)

// The audio job's FFmpeg makes Opus and no video, with no scaling filter;
// beside ladder rungs it adds one output and leaves theirs alone.
func TestOpusCopyArgs(t *testing.T) {
	c := Config{}
	alone := strings.Join(Args(c, []Rung{{Name: OpusRung, Encoder: encoderOpus}}, Input{HasAudio: true}), " ")
	for _, want := range []string{"-map 0:a:0 -c:a libopus", "-ar 48000", "-pes_payload_size 0", "pipe:3"} {
		if !strings.Contains(alone, want) {
			t.Errorf("audio job args lack %q: %s", want, alone)
		}
	}
	if strings.Contains(alone, "-filter_complex") || strings.Contains(alone, "aac") || strings.Contains(alone, "-c:v") {
		t.Errorf("audio job args scale or make AAC: %s", alone)
	}
	mixed := strings.Join(Args(c, []Rung{{Name: "240p", Height: 240, Encoder: EncoderX264, Preset: "veryfast"},
		{Name: OpusRung, Encoder: encoderOpus}}, Input{HasAudio: true}), " ")
	if !strings.Contains(mixed, "[0:v:0]split=1[s0];[s0]scale=-2:240") || !strings.Contains(mixed, "pipe:4") {
		t.Errorf("mixed args: %s", mixed)
	}
	tracks := []*media.Track{{Codec: media.CodecH264, Height: 240}, {Codec: media.CodecAAC}}
	if got := rungsBelow([]Rung{{Name: OpusRung, Encoder: encoderOpus}}, tracks); len(got) != 1 {
		t.Errorf("rungsBelow dropped the audio job's rung: %v", got)
	}
}
