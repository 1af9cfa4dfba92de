// Package audioframe is what the fMP4 writers (LL-HLS parts, recordings)
// share about audio frames: a frame's duration in its sample rate, and
// where a fragment's audio starts.
package audioframe

import (
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"

	"github.com/streamhub/streamhub/media"
)

// Duration is the duration of the audio frame payload of codec, in
// samples: an Opus packet's own (960, 20 ms at 48 kHz, when it cannot be
// read), an AAC access unit's 1024.
func Duration(codec media.Codec, payload []byte) int64 {
	if codec == media.CodecOpus {
		if d := opus.PacketDuration2(payload); d > 0 {
			return d
		}
		return 960
	}
	return mpeg4audio.SamplesPerAccessUnit
}

// Start returns where a fragment's audio starts: at base (its first
// frame's timestamp), or at end (where the last fragment's audio ended)
// when base is within half a frame of it. Timestamps rounded to
// milliseconds (RTMP's) put base up to a millisecond off, which would
// leave a hole or an overlap of audio at every fragment boundary (hls.js
// stalls on them: bufferSeekOverHole). end 0 means no fragment before.
func Start(base, end, frame int64) int64 {
	if d := base - end; end != 0 && d > -frame/2 && d < frame/2 {
		return end
	}
	return base
}
