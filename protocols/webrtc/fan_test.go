package webrtc

import (
	"net/http"
	"testing"
	"time"
)

// Viewers that caught up are served by their stream's fan, in shards of
// fanShardSize: every viewer of every shard keeps getting pictures, one
// that leaves (DELETE) does not stop the others, and a shard whose
// viewers are all gone ends.
func TestFanShards(t *testing.T) {
	defer func(n int) { fanShardSize = n }(fanShardSize)
	fanShardSize = 2
	env := newEnv(t, testPathConf(), nil)
	publishPictures(t, env, "live/fan", false, 2000) // two packets a picture

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
