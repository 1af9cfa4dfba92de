package cluster

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
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
	hub, n, logs, _ := standbyOriginCounting(t, node, redisAddr)
	return hub, n, logs
}

// standbyOriginCounting is standbyOrigin with a count of the hub's
// OnPublish calls.
func standbyOriginCounting(t *testing.T, node, redisAddr string) (*server.Hub, *Node, *testfixtures.SyncBuffer, *atomic.Int32) {
	t.Helper()
	var n *Node
	published := &atomic.Int32{}
	pc := server.DefaultPathConfig()
	pc.Standby = server.StandbyTakeover
	hub := server.NewHub(server.HubConfig{
		PathConfig:    func(string) server.PathConfig { return pc },
		Logger:        slog.New(slog.DiscardHandler),
		PublishGuard:  guardFunc{acquire: func(ctx context.Context, p string) error { return n.Acquire(ctx, p) }, release: func(p string) { n.Release(p) }},
		LiveElsewhere: func(p string) bool { return n.LiveElsewhere(p) },
		OnPublish:     func(string, bool) { published.Add(1) },
	})
	t.Cleanup(hub.Close)
	n, logs := newNode(t, testConfig(RoleOrigin, node, redisAddr), hub, nil)
	return hub, n, logs, published
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

// A publisher on B still between its claim and its tracks (an RTMP probe)
// when A's leaves: B takes the path and the publisher goes live as soon as
// it is attached, telling the hub's OnPublish (recording, the ladder).
func TestStandbyAcrossOriginsBeforeTracks(t *testing.T) {
	mr := miniredis.RunT(t)
	hubA, _, _ := standbyOrigin(t, "origin-a", mr.Addr())
	hubB, b, _, publishedB := standbyOriginCounting(t, "origin-b", mr.Addr())
	ctx := context.Background()
	tracks := func() []*media.Track {
		return []*media.Track{{ID: 0, Codec: media.CodecH264, SPS: []byte{0x67}, PPS: []byte{0x68}, Width: 320, Height: 240}}
	}
	ca, err := hubA.Publish(ctx, "live/y", server.PublishRequest{Peer: server.Peer{Protocol: "test", Remote: "192.0.2.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	pa, err := ca.Publish(tracks())
	if err != nil {
		t.Fatal(err)
	}
	cb, err := hubB.Publish(ctx, "live/y", server.PublishRequest{Peer: server.Peer{Protocol: "test", Remote: "192.0.2.2:1"}})
	if err != nil {
		t.Fatal(err)
	}
	pa.Close()
	waitFor(t, "B's entry", func() bool { v, _ := mr.Get(keyPrefix + "live/y"); return strings.Contains(v, "origin-b") })
	time.Sleep(3 * standbyPoll) // B's loop tries to promote a publisher not attached yet
	pb, err := cb.Publish(tracks())
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	waitFor(t, "B's publisher live", func() bool { return !pb.Standby() })
	if b.LiveElsewhere("live/y") {
		t.Error("B still says the path is live elsewhere")
	}
	if n := publishedB.Load(); n != 1 {
		t.Errorf("B's hub told OnPublish %d times, want 1 (recording and the ladder start on it)", n)
	}
}
