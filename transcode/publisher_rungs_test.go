package transcode

import (
	"io"
	"log/slog"
	"testing"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// A publisher's own renditions (derived streams not made by the ladder)
// are listed with the ladder's and win over the ladder's rungs of the same
// name; the ladder's own rung streams and the Opus companion are not
// taken for the publisher's. The ladder runs only the other rungs.
func TestPublisherRungsWin(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := server.NewHub(server.HubConfig{Logger: log})
	defer hub.Close()
	video := func(h int) []*media.Track {
		return []*media.Track{{ID: 0, Codec: media.CodecH264, Width: h * 16 / 9, Height: h}}
	}
	pub := func(path string, tracks []*media.Track, o server.PublishOptions) {
		t.Helper()
		p, err := hub.PublishTrusted(path, tracks, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
	}
	pub("live/x", video(1080), server.PublishOptions{Protocol: "rtmp"})
	pub("live/x/720p", video(720), server.PublishOptions{Derived: true, Protocol: "rtmp", Remote: "1.2.3.4:5"})
	pub("live/x/480p", video(480), server.PublishOptions{Derived: true, Protocol: ladderProtocol, Remote: "ffmpeg"})
	pub("live/x/webrtc", []*media.Track{{ID: 0, Codec: media.CodecOpus, SampleRate: 48000, Channels: 2}}, server.PublishOptions{Derived: true, Protocol: "rtmp"})
	pub("live/y/720p", video(720), server.PublishOptions{Derived: true, Protocol: "rtmp"}) // another source's

	own := PublisherRungs(hub, "live/x")
	if len(own) != 1 || own[0].Name != "720p" || own[0].Height != 720 || own[0].Bandwidth <= 0 {
		t.Fatalf("publisher rungs: %+v, want 720p alone", own)
	}
	plan := Plan{Mode: ModeOnDemand, Rungs: []Rung{
		{Name: "720p", Height: 720, VideoBitrate: 2500000}, {Name: "480p", Height: 480, VideoBitrate: 1200000}, {Name: "360p", Height: 360, VideoBitrate: 800000}}}
	m := New(Config{FFmpeg: "true", Ladder: plan.Rungs}, hub, log, func(string) Plan { return plan })
	defer m.Close()
	var names []string
	for _, r := range m.Rungs("live/x") {
		names = append(names, r.Name)
	}
	if len(names) != 3 || names[0] != "720p" || names[1] != "480p" || names[2] != "360p" {
		t.Fatalf("renditions %v, want 720p (the publisher's) then the ladder's 480p and 360p", names)
	}
	if rs := m.renditions("live/x", own); len(rs) != 2 || rs[0].Name != "480p" {
		t.Errorf("the ladder's rungs %+v, want 480p and 360p (720p is the publisher's)", rs)
	}
	if got := m.withoutPublisherRungs("live/x", plan.Rungs); len(got) != 2 || got[0].Name != "480p" {
		t.Errorf("the ladder would run %+v", got)
	}
	// With the ladder off (no FFmpeg), the publisher's rungs are still listed.
	off := New(Config{FFmpeg: "/nonexistent/ffmpeg", Ladder: plan.Rungs}, hub, log, func(string) Plan { return plan })
	defer off.Close()
	if rs := off.Renditions("live/x"); len(rs) != 1 || rs[0].Name != "720p" {
		t.Errorf("renditions without FFmpeg: %+v, want the publisher's 720p", rs)
	}
}
