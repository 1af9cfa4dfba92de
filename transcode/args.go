package transcode

import (
	"fmt"
	"strconv"
	"strings"
)

// Input describes the source a worker feeds FFmpeg.
type Input struct {
	// HasAudio: the source has an audio track MPEG-TS carries; each rung
	// gets it re-encoded to AAC.
	HasAudio bool
}

// Args returns FFmpeg's argv (without the binary) for one process that
// decodes the MPEG-TS on stdin once and encodes every rung, rung i written
// as MPEG-TS to file descriptor 3+i. No shell sees it.
//
// Every rung keeps the source's timestamps (-copyts, -muxdelay 0, no
// shift for negative times, one output frame per input frame) and puts its keyframes where the source
// has them (-force_key_frames source, no scene cuts, a GOP bound far above
// any source's), so segments and parts line up across the variants.
func Args(c Config, rungs []Rung, in Input) []string {
	a := []string{"-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning"}
	for _, r := range rungs {
		if r.Encoder == EncoderVAAPI {
			a = append(a, "-vaapi_device", c.VAAPIDevice)
			break
		}
	}
	if c.Threads > 0 {
		a = append(a, "-filter_complex_threads", strconv.Itoa(c.Threads))
	}
	// The GOP cache comes first as a burst: a short analysis suffices.
	// The decoder threads by slices, not frames: frame threading holds
	// each picture back by one frame per extra thread (two frames, 67 ms
	// at 30 fps on two cores), and every rung would be that much behind
	// the source (a source of one slice then decodes on one thread).
	a = append(a, "-protocol_whitelist", "pipe", "-analyzeduration", "300000", "-probesize", "2000000",
		"-thread_type", "slice", "-copyts", "-f", "mpegts", "-i", "pipe:0")

	scaled := 0 // rungs that encode video (not the audio job's)
	for _, r := range rungs {
		if r.Encoder != encoderOpus {
			scaled++
		}
	}
	var fc strings.Builder
	if scaled > 0 {
		fmt.Fprintf(&fc, "[0:v:0]split=%d", scaled)
	}
	for i, r := range rungs {
		if r.Encoder != encoderOpus {
			fmt.Fprintf(&fc, "[s%d]", i)
		}
	}
	for i, r := range rungs {
		if r.Encoder == encoderOpus {
			continue
		}
		fmt.Fprintf(&fc, ";[s%d]scale=-2:%d", i, r.Height)
		switch r.Encoder {
		case EncoderVAAPI:
			fc.WriteString(",format=nv12,hwupload")
		case EncoderQSV, EncoderNVENC:
			fc.WriteString(",format=nv12")
		default:
			fc.WriteString(",format=yuv420p")
		}
		fmt.Fprintf(&fc, "[v%d]", i)
	}
	if scaled > 0 {
		a = append(a, "-filter_complex", fc.String())
	}

	for i, r := range rungs {
		if r.Encoder == encoderOpus {
			a = append(a, opusArgs()...)
			a = append(a, "-f", "mpegts", "-avoid_negative_ts", "disabled", "-muxdelay", "0", "-muxpreload", "0", "-flush_packets", "1",
				"-protocol_whitelist", "pipe", "pipe:"+strconv.Itoa(3+i))
			continue
		}
		a = append(a, "-map", fmt.Sprintf("[v%d]", i))
		if in.HasAudio {
			a = append(a, "-map", "0:a:0")
		}
		a = append(a, "-c:v", r.Encoder, "-preset", r.Preset)
		switch r.Encoder {
		case EncoderX264:
			// zerolatency: no lookahead and no B-frames, so a frame leaves
			// the encoder as soon as it is coded.
			a = append(a, "-tune", "zerolatency", "-sc_threshold", "0", "-profile:v", "high")
		case EncoderNVENC:
			a = append(a, "-tune", "ll", "-no-scenecut", "1", "-forced-idr", "1")
		case EncoderQSV:
			a = append(a, "-forced_idr", "1")
		}
		if c.Threads > 0 {
			a = append(a, "-threads", strconv.Itoa(c.Threads))
		}
		a = append(a, "-b:v", r.VideoBitrate.String(), "-maxrate", r.maxRate().String(), "-bufsize", r.bufSize().String(),
			"-g", "600", "-force_key_frames", "source", "-fps_mode", "passthrough",
			// The encoder's clock is MPEG-TS's: with the default 1/fps a
			// 30 fps source in milliseconds (RTMP) comes out rounded to
			// whole frames, up to 16 ms off the source's times.
			"-enc_time_base", "1:90000")
		if in.HasAudio {
			a = append(a, "-c:a", "aac", "-b:a", r.AudioBitrate.String())
		}
		// The AAC encoder's priming makes the first audio timestamp
		// negative; shifting everything to avoid that would move the
		// video off the source's times. Each audio frame is its own PES
		// (the muxer groups up to 2930 bytes, ~180 ms at 128 kbit/s, by
		// default), and a picture's PES says its length, so that the
		// demuxer reading the rung has it at once instead of at the start
		// of the next picture.
		a = append(a, "-f", "mpegts", "-avoid_negative_ts", "disabled", "-muxdelay", "0", "-muxpreload", "0", "-flush_packets", "1",
			"-pes_payload_size", "0", "-omit_video_pes_length", "0",
			"-protocol_whitelist", "pipe", "pipe:"+strconv.Itoa(3+i))
	}
	return a
}
