package webrtc

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

// A WHIP publisher that never trickles (OBS) is reached through
// peer-reflexive candidates, is asked for a keyframe, and publishes H264
// and Opus; a WHEP player gets a keyframe with its parameter sets first,
// then live units; DELETE ends both and frees them.
func TestPublishPlayDelete(t *testing.T) {
	env := newEnv(t, testPathConf(), nil)
	pub := newPublisher(t, true)
	pub.connect(t, env.http.URL+"/live/cam/whip", true)
	if !strings.HasPrefix(pub.location, "/live/cam/whip/") || pub.etag == "" {
		t.Fatalf("Location %q, ETag %q", pub.location, pub.etag)
	}
	pub.start()
	eventually(t, "published", 10*time.Second, func() bool {
		s := env.hub.Stream("live/cam")
		return s != nil && s.Stats().UnitsIn > 20
	})
	tracks := env.hub.Stream("live/cam").Tracks()
	if len(tracks) != 2 || tracks[0].Codec != media.CodecH264 || tracks[1].Codec != media.CodecOpus || tracks[0].Width == 0 {
		t.Fatalf("tracks %s %s", tracks[0].Codec, tracks[len(tracks)-1].Codec)
	}
	if pub.plis.Load() == 0 {
		t.Fatal("the publisher was never asked for a keyframe")
	}

	pl := newPlayer(t)
	pl.connect(t, env.http.URL+"/live/cam/whep")
	eventually(t, "player gets video and audio", 10*time.Second, func() bool {
		aus, audio, _, _ := pl.stats()
		return aus > 10 && audio > 10
	})
	_, _, firstKey, firstAt := pl.stats()
	if !firstKey {
		t.Fatal("the player's first access unit is not an IDR with SPS/PPS")
	}
	t.Logf("first access unit %s after the WHEP POST", firstAt.Round(time.Millisecond))

	for _, loc := range []string{pl.location, pub.location} {
		if res, body := do(t, http.MethodDelete, env.http.URL+loc, "", ""); res.StatusCode != http.StatusOK {
			t.Fatalf("DELETE %s: %s %s", loc, res.Status, body)
		}
	}
	eventually(t, "sessions freed", 10*time.Second, func() bool { return env.srv.Sessions() == 0 })
	if env.hub.Stream("live/cam") != nil {
		t.Fatal("the stream outlived its WHIP publisher")
	}
	if !strings.Contains(env.logs.String(), "ended by the client (DELETE)") {
		t.Fatalf("no close line with the DELETE cause:\n%s", env.logs.String())
	}
}
