package cluster

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// standbyOrigin is an origin's hub and node wired as main wires them.
func standbyOrigin(t *testing.T, node, redisAddr string) (*server.Hub, *Node, *testfixtures.SyncBuffer) {
	t.Helper()
	var n *Node
	pc := server.DefaultPathConfig()
	pc.Standby = server.StandbyTakeover
	hub := server.NewHub(server.HubConfig{
		PathConfig:    func(string) server.PathConfig { return pc },
		Logger:        slog.New(slog.DiscardHandler),
		PublishGuard:  guardFunc{acquire: func(ctx context.Context, p string) error { return n.Acquire(ctx, p) }, release: func(p string) { n.Release(p) }},
		LiveElsewhere: func(p string) bool { return n.LiveElsewhere(p) },
	})
	t.Cleanup(hub.Close)
	n, logs := newNode(t, testConfig(RoleOrigin, node, redisAddr), hub, nil)
	return hub, n, logs
}

type guardFunc struct {
	acquire func(context.Context, string) error
	release func(string)
}

func (g guardFunc) Acquire(ctx context.Context, p string) error { return g.acquire(ctx, p) }
func (g guardFunc) Release(p string)                            { g.release(p) }

// Hot standby across origins: a backup on origin B waits while origin A
// publishes the path, and takes the path (and the live map's entry) over
// when A's publisher leaves.
func TestStandbyAcrossOrigins(t *testing.T) {
	mr := miniredis.RunT(t)
	hubA, _, _ := standbyOrigin(t, "origin-a", mr.Addr())
	hubB, b, logsB := standbyOrigin(t, "origin-b", mr.Addr())
	ctx := context.Background()
	tracks := func() []*media.Track {
		return []*media.Track{{ID: 0, Codec: media.CodecH264, SPS: []byte{0x67}, PPS: []byte{0x68}, Width: 320, Height: 240}}
	}
	var bTracks []*media.Track
	publish := func(h *server.Hub, role string) *server.Publisher {
		t.Helper()
		c, err := h.Publish(ctx, "live/x", server.PublishRequest{Peer: server.Peer{Protocol: "test", Remote: "192.0.2.1:1", Query: "role=" + role}})
		if err != nil {
			t.Fatalf("publish %s: %v", role, err)
		}
		tr := tracks()
		if h == hubB {
			bTracks = tr
		}
		p, err := c.Publish(tr)
		if err != nil {
			t.Fatalf("publish %s: %v", role, err)
		}
		return p
	}
	pa := publish(hubA, "main")
	if v, _ := mr.Get(keyPrefix + "live/x"); !strings.Contains(v, "origin-a") {
		t.Fatalf("entry %q, want origin-a's", v)
	}
	pb := publish(hubB, "backup")
	if !pb.Standby() || !b.LiveElsewhere("live/x") {
		t.Fatalf("B's publisher: standby %v, elsewhere %v; want it waiting", pb.Standby(), b.LiveElsewhere("live/x"))
	}
	for i := range 3 {
		pb.Write(&media.Unit{Track: bTracks[0], DTS: time.Duration(i) * 40 * time.Millisecond,
			PTS: time.Duration(i) * 40 * time.Millisecond, KeyFrame: i == 0, Payload: [][]byte{{0x65, byte(i)}}})
	}
	if v, _ := mr.Get(keyPrefix + "live/x"); !strings.Contains(v, "origin-a") {
		t.Fatalf("entry %q while A publishes, want origin-a's", v)
	}

	pa.Close()
	left := time.Now()
	waitFor(t, "B's standby live", func() bool { return !pb.Standby() })
	t.Logf("B's standby went live %v after A's publisher left", time.Since(left).Round(time.Millisecond))
	if v, _ := mr.Get(keyPrefix + "live/x"); !strings.Contains(v, "origin-b") {
		t.Fatalf("entry %q after the takeover, want origin-b's", v)
	}
	if !strings.Contains(logsB.String(), "took the path over from another origin") {
		t.Errorf("B's log does not say it took the path over:\n%s", logsB.String())
	}
	// A's publisher coming back waits as B's standby now.
	pa = publish(hubA, "main")
	if !pa.Standby() {
		t.Fatal("A's returning publisher is live while B holds the path")
	}
	pa.Close()
	pb.Close()
	waitFor(t, "the entry deleted", func() bool { return !mr.Exists(keyPrefix + "live/x") })
}
