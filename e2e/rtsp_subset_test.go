//go:build e2e

package e2e

// RTSP players that ask for less than the whole stream, and other peers that
// used to hurt the server or its other viewers (issue 20).

import (
	"testing"
)

// TestRTSPTrackSubsets: ffmpeg players that SET UP only the video or only
// the audio track of a stream (-allowed_media_types) get exactly that
// track, over TCP and UDP, while a player of both tracks keeps decoding and
// the server lives on. Before, the first of them crashed the server with a
// nil dereference in gortsplib.
func TestRTSPTrackSubsets(t *testing.T) {
	// Not parallel, and one partial player at a time: six ffmpeg processes
	// at once starved the timing-sensitive tests beside it on 2 cores.
	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/subset"))
	waitLive(t, s, "live/subset", pub)
	url := s.rtspURL("live/subset")

	victim := make(chan decoded, 1)
	go func() { victim <- decodeRTSP(t, url, "tcp", 12) }()

	type subset struct{ transport, kind string }
	var subsets []subset
	for _, tr := range []string{"tcp", "udp"} {
		for _, kind := range []string{"video", "audio"} {
			subsets = append(subsets, subset{tr, kind})
		}
	}
	results := make([]decoded, len(subsets))
	for i, sub := range subsets {
		results[i] = decodeWith(t, url, 2, []string{"-rtsp_transport", sub.transport, "-allowed_media_types", sub.kind}, rtspDecodeOpts)
	}
	for i, d := range results {
		// 2 s at 30 fps is 60 frames; AAC at 44.1 kHz is ~43 frames/s.
		if subsets[i].kind == "video" {
			d.check(t, 40, 0)
			if d.audio != 0 {
				t.Errorf("%s: %d audio frames from a video-only player", d.url, d.audio)
			}
		} else {
			d.check(t, 0, 40)
			if d.video != 0 {
				t.Errorf("%s: %d video frames from an audio-only player", d.url, d.video)
			}
		}
	}
	if s.exited() {
		t.Fatalf("the server exited with status %d", s.cmd.ProcessState.ExitCode())
	}
	// 12 s at 30 fps is 360 frames; generous bounds for a loaded machine.
	(<-victim).check(t, 200, 200)
	// And a new player of everything still works.
	decodeRTSP(t, url, "tcp", 1).check(t, 20, 20)
	if pub.exited() {
		t.Errorf("the publisher exited; stderr:\n%s", tail(pub.stderr.String(), 10))
	}
}
