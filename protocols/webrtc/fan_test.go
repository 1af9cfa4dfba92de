package webrtc

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// Viewers that caught up are served by their stream's fan, in shards of
// fanShardSize: every viewer of every shard keeps getting pictures, one
// that leaves (DELETE) does not stop the others, and a shard whose
// viewers are all gone ends.
func TestFanShards(t *testing.T) {
	defer func(n int) { fanShardSize = n }(fanShardSize)
	fanShardSize = 2
	env := newEnv(t, testPathConf(), nil)
	video := &media.Track{Codec: media.CodecH264, SPS: testfixtures.H264SPS, PPS: testfixtures.H264PPS}
	src, err := env.hub.PublishTrusted("live/fan", []*media.Track{video}, server.PublishOptions{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { // 30 pictures a second, a keyframe a second
		defer wg.Done()
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			at := time.Duration(i) * 33 * time.Millisecond
			key := i%30 == 0
			nalu := append([]byte{0x41, 0x9a, byte(i)}, make([]byte, 2000)...) // two packets
			if key {
				nalu = append([]byte{0x65, 0x88}, make([]byte, 3000)...)
			}
			src.Write(&media.Unit{Track: video, PTS: at, DTS: at, KeyFrame: key, Payload: [][]byte{nalu}})
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	const n = 5 // three shards of two
	players := make([]*player, n)
	for i := range players {
		players[i] = newPlayer(t)
		players[i].connect(t, env.http.URL+"/live/fan/whep")
	}
	shards := func() (shards, members int) {
		env.srv.fansMu.Lock()
		defer env.srv.fansMu.Unlock()
		for _, list := range env.srv.fans {
			for _, sh := range list {
				shards++
				members += len(sh.members)
			}
		}
		return shards, members
	}
	eventually(t, "every viewer served by a fan", 10*time.Second, func() bool {
		s, m := shards()
		return s == 3 && m == n
	})
	advancing := func(pls []*player) {
		t.Helper()
		before := make([]int, len(pls))
		for i, pl := range pls {
			before[i], _, _, _ = pl.stats()
		}
		eventually(t, "every viewer's pictures advance", 10*time.Second, func() bool {
			for i, pl := range pls {
				if aus, _, _, _ := pl.stats(); aus < before[i]+15 {
					return false
				}
			}
			return true
		})
	}
	advancing(players)

	// One leaves: the others go on, in fewer members.
	res, _ := do(t, http.MethodDelete, env.http.URL+players[0].location, "", "")
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %s", res.Status)
	}
	eventually(t, "the viewer left its shard", 10*time.Second, func() bool {
		_, m := shards()
		return m == n-1
	})
	advancing(players[1:])

	// All leave: the shards end.
	for _, pl := range players[1:] {
		do(t, http.MethodDelete, env.http.URL+pl.location, "", "")
	}
	eventually(t, "no shard left", 10*time.Second, func() bool {
		s, m := shards()
		return s == 0 && m == 0
	})
}
