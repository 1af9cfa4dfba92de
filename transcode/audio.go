package transcode

import (
	"strings"

	"github.com/streamhub/streamhub/media"
)

// The audio job is the ladder's supervision (restart with backoff, the
// watchdog, the stop sequence, no orphans) running another FFmpeg job: it
// re-encodes a source's audio to Opus, published as the audio-only derived
// stream <source>/webrtc, for WebRTC players of sources with AAC (WebRTC
// has no AAC); they take the picture from the source. It runs on demand, once per source, while someone
// reads it, and stops transcode.idleTimeout after the last reader left.

// OpusRung is the last path segment of a source's Opus companion stream.
const OpusRung = "webrtc"

// encoderOpus marks the audio job's one rung: the audio as Opus, no
// video (WebRTC viewers take the picture from the source itself). It is
// never a value of the config file.
const encoderOpus = "libopus"

// audioKey is the workers-map key of source's audio job (the ladder's is
// the source itself).
func audioKey(source string) string { return source + "\x00" + OpusRung }

// OpusPath returns the companion stream path that the audio job publishes
// for source: its audio as Opus. Reading it (Hub.ReadTrusted with Wait)
// starts the job through Demand. It returns "" when FFmpeg is missing.
func (m *Manager) OpusPath(source string) string {
	if m.offErr != nil {
		return ""
	}
	return source + "/" + OpusRung
}

// needsOpus reports whether source is live with audio that is not Opus. A
// ladder rung may be a source too (WHEP viewers of a rung hear it).
func (m *Manager) needsOpus(source string) bool {
	s := m.hub.Stream(source)
	if s == nil || !s.Publishing() {
		return false
	}
	for _, t := range s.Tracks() {
		if !t.IsVideo() && t.Codec != media.CodecOpus {
			return true
		}
	}
	return false
}

// demandAudio starts the audio job of the source of path (…/webrtc) and
// reports whether it runs.
func (m *Manager) demandAudio(path string) bool {
	source, ok := strings.CutSuffix(path, "/"+OpusRung)
	if !ok || source == "" || m.offErr != nil || !m.needsOpus(source) {
		return false
	}
	return m.startKey(audioKey(source), source, Plan{Mode: ModeOnDemand, Rungs: []Rung{{Name: OpusRung, Encoder: encoderOpus}}})
}

// opusArgs are the output options of the audio job's rung: the first
// audio track to 48 kHz stereo Opus in 20 ms frames (what browsers
// decode), low-delay mode, each frame its own PES (MPEG-TS would group
// about 150 ms of them otherwise).
func opusArgs() []string {
	return []string{"-map", "0:a:0", "-c:a", "libopus", "-b:a", "96k", "-ar", "48000", "-ac", "2",
		"-application", "lowdelay", "-frame_duration", "20", "-pes_payload_size", "0"}
}
