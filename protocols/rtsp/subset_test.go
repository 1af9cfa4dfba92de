package rtsp

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
)

// A player that sets up only some of a stream's tracks, in any order,
// gets exactly those (a player writing a track it never set up crashed
// the whole server: ffmpeg -allowed_media_types video). Another player of
// the same stream is not affected.
func TestPlaySubsetOfTracks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if _, err := startPublish(t, e.url("live/sub"), publishOpts{speed: 1}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, e, "live/sub")
	all := newCountingPlayer(t, e.url("live/sub"), gortsplib.ProtocolTCP, "video", "audio")
	for _, tc := range []struct {
		proto gortsplib.Protocol
		setup []string
	}{
		{gortsplib.ProtocolTCP, []string{"video"}},
		{gortsplib.ProtocolTCP, []string{"audio"}},
		{gortsplib.ProtocolUDP, []string{"video"}},
		{gortsplib.ProtocolUDP, []string{"audio"}},
		{gortsplib.ProtocolTCP, []string{"audio", "video"}}, // reversed order
	} {
		p := newCountingPlayer(t, e.url("live/sub"), tc.proto, tc.setup...)
		time.Sleep(1500 * time.Millisecond)
		p.close()
		for _, kind := range []string{"video", "audio"} {
			n := p.count(kind)
			want := false
			for _, s := range tc.setup {
				want = want || s == kind
			}
			if want && n == 0 {
				t.Errorf("%s %v: no %s packets", tc.proto, tc.setup, kind)
			}
			if !want && n != 0 {
				t.Errorf("%s %v: %d %s packets for a track not set up", tc.proto, tc.setup, n, kind)
			}
		}
	}
	before := all.count("video")
	time.Sleep(500 * time.Millisecond)
	if all.count("video") <= before {
		t.Fatal("the player of every track stopped getting video")
	}
	// Its bytes are counted for the session list and the metrics.
	var bytes uint64
	for _, ss := range e.hub.Sessions() {
		if ss.Kind == "reader" && ss.Protocol == "rtsp" {
			bytes += ss.Bytes
		}
	}
	if bytes == 0 {
		t.Fatal("RTSP players' bytes are not counted")
	}
}

type countingPlayer struct {
	c            *gortsplib.Client
	video, audio atomic.Int64
}

func (p *countingPlayer) count(kind string) int64 {
	if kind == "video" {
		return p.video.Load()
	}
	return p.audio.Load()
}

func (p *countingPlayer) close() { p.c.Close() }

// newCountingPlayer plays rawURL, setting up the medias of the given types
// in that order, and counts the RTP packets of each.
func newCountingPlayer(t *testing.T, rawURL string, proto gortsplib.Protocol, kinds ...string) *countingPlayer {
	t.Helper()
	p := &countingPlayer{c: &gortsplib.Client{Protocol: &proto}}
	u, err := base.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p.c.Scheme, p.c.Host = u.Scheme, u.Host
	if err := p.c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	desc, _, err := p.c.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range kinds {
		typ := description.MediaTypeVideo
		if kind == "audio" {
			typ = description.MediaTypeAudio
		}
		for _, m := range desc.Medias {
			if m.Type != typ {
				continue
			}
			if _, err := p.c.Setup(desc.BaseURL, m, 0, 0); err != nil {
				t.Fatalf("SETUP %s: %v", kind, err)
			}
			p.c.OnPacketRTPAny(func(m2 *description.Media, _ format.Format, _ *rtp.Packet) {
				if m2.Type == description.MediaTypeVideo {
					p.video.Add(1)
				} else {
					p.audio.Add(1)
				}
			})
		}
	}
	if _, err := p.c.Play(nil); err != nil {
		t.Fatal(err)
	}
	return p
}
