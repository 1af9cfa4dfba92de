package server

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// fakeGuard counts Acquire and Release per path and refuses paths in busy.
type fakeGuard struct {
	mu       sync.Mutex
	held     map[string]int
	acquires int
	busy     map[string]bool
}

func (g *fakeGuard) Acquire(_ context.Context, path string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.busy[path] {
		return errors.Join(ErrPathBusy, errors.New("origin b publishes it"))
	}
	g.held[path]++
	g.acquires++
	return nil
}

func (g *fakeGuard) Release(path string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held[path]--
}

func (g *fakeGuard) count(path string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held[path]
}

func TestPublishGuardPairs(t *testing.T) {
	g := &fakeGuard{held: map[string]int{}, busy: map[string]bool{"live/b": true}}
	h := NewHub(HubConfig{PathConfig: func(string) PathConfig { return testConf() }, Logger: discardLogger(), PublishGuard: g})
	defer h.Close()
	ctx := context.Background()

	if _, err := h.Publish(ctx, "live/b", PublishRequest{}); !errors.Is(err, ErrPathBusy) {
		t.Fatalf("a path another origin has: %v", err)
	}
	c, err := h.Publish(ctx, "live/a", PublishRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if g.count("live/a") != 1 {
		t.Fatal("not acquired at the claim")
	}
	p, err := c.Publish(videoTracks())
	if err != nil {
		t.Fatal(err)
	}
	c.Release() // after Publish: nothing
	if g.count("live/a") != 1 {
		t.Fatal("released by Claim.Release after Publish")
	}
	// A second publisher of a busy path is refused and gives back what it took.
	if _, err := h.Publish(ctx, "live/a", PublishRequest{}); !errors.Is(err, ErrPathBusy) {
		t.Fatal(err)
	}
	if g.count("live/a") != 1 {
		t.Fatalf("held %d after a refused second publisher", g.count("live/a"))
	}
	p.Close()
	p.Close()
	if g.count("live/a") != 0 {
		t.Fatalf("held %d after Close", g.count("live/a"))
	}
	// A claim that never publishes gives the path back.
	c, err = h.Publish(ctx, "live/a", PublishRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c.Release()
	if g.count("live/a") != 0 {
		t.Fatal("not released with the claim")
	}
	// A pulled source is asked too; an edge's upstream and the ladder are not.
	p, err = h.PublishTrusted("live/cam", videoTracks(), PublishOptions{Pulled: true})
	if err != nil || g.count("live/cam") != 1 {
		t.Fatalf("pulled source: %v, held %d", err, g.count("live/cam"))
	}
	p.Close()
	before := g.acquires
	p, err = h.PublishTrusted("live/up", videoTracks(), PublishOptions{Pulled: true, Upstream: true})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if g.acquires != before {
		t.Fatal("an upstream pull was registered in the live map")
	}
}

func TestRelayReader(t *testing.T) {
	pc := testConf()
	pc.ReadKey = "viewers"
	pc.CatchUp = 300_000_000
	h := NewHub(HubConfig{PathConfig: func(string) PathConfig { return pc }, Logger: discardLogger(),
		RelayKey: func(path, key string) (bool, error) {
			switch key {
			case "cl1.good":
				return true, nil
			case "cl1.bad":
				return false, errors.New("wrong cluster key")
			}
			return false, nil
		}})
	defer h.Close()
	mustPublish(t, h, "live/x", videoTracks())
	ctx := context.Background()
	relay, err := h.Read(ctx, "live/x", ReadRequest{Key: "cl1.good", Peer: Peer{Protocol: "rtmp", Remote: "10.0.0.2:1"}})
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	defer relay.Close()
	if !relay.Relay() {
		t.Fatal("not marked as a relay")
	}
	viewer, err := h.Read(ctx, "live/x", ReadRequest{Key: "viewers", Peer: Peer{Protocol: "rtmp", Remote: "10.0.0.3:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer viewer.Close()
	if _, err := h.Read(ctx, "live/x", ReadRequest{Key: "cl1.bad", Peer: Peer{Protocol: "rtmp", Remote: "10.0.0.4:1"}}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong cluster key: %v", err)
	}
	st := h.Stream("live/x").Stats()
	if st.Relays != 1 || st.ReadersByProtocol["rtmp"] != 1 || st.Readers != 2 {
		t.Fatalf("relays %d, by protocol %v, readers %d", st.Relays, st.ReadersByProtocol, st.Readers)
	}
	relays := 0
	for _, s := range h.Sessions() {
		if s.Relay {
			relays++
		}
	}
	if relays != 1 {
		t.Fatalf("%d relay sessions", relays)
	}
}

// A standby on this node holds a lease of its own: the path stays held
// through a takeover and is given back when the last publisher leaves.
func TestPublishGuardWithStandby(t *testing.T) {
	g := &fakeGuard{held: map[string]int{}}
	h := NewHub(HubConfig{PathConfig: func(string) PathConfig { return standbyConf(StandbyTakeover) }, Logger: discardLogger(), PublishGuard: g})
	defer h.Close()
	main, backup := newSource(0, 5), newSource(1000, 5)
	pm, err := publishAs(t, h, "live/s", "", "role=main", main)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := publishAs(t, h, "live/s", "", "role=backup", backup)
	if err != nil {
		t.Fatal(err)
	}
	if !pb.Standby() || g.count("live/s") != 2 {
		t.Fatalf("standby %v, leases %d: want a waiting standby and 2 leases", pb.Standby(), g.count("live/s"))
	}
	for _, u := range backup.frames(5) {
		pb.Write(u)
	}
	pm.Close()
	if pb.Standby() || g.count("live/s") != 1 {
		t.Fatalf("after the main left: standby %v, leases %d: want the backup live and the path still held", pb.Standby(), g.count("live/s"))
	}
	pb.Close()
	if g.count("live/s") != 0 {
		t.Fatalf("leases %d after every publisher left", g.count("live/s"))
	}
}

// A kick that comes as the claim publishes (the API's KickPublisher while
// a WHIP session attaches) closes a publisher that already holds the
// path's release: it is given back once, and -race sees no unguarded
// write (Claim.Publish set it after the publisher was visible).
func TestKickRacingPublishReleasesOnce(t *testing.T) {
	g := &fakeGuard{held: map[string]int{}}
	h := NewHub(HubConfig{PathConfig: func(string) PathConfig { return testConf() }, Logger: discardLogger(), PublishGuard: g})
	defer h.Close()
	ctx := context.Background()
	for range 50 {
		c, err := h.Publish(ctx, "live/k", PublishRequest{})
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		kicked := make(chan struct{})
		go func() {
			defer close(kicked)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if h.KickPublisher("live/k") {
					return
				}
			}
		}()
		p, err := c.Publish(videoTracks())
		if err != nil {
			t.Fatal(err)
		}
		<-kicked
		close(stop)
		p.Close()
		if n := g.count("live/k"); n != 0 {
			t.Fatalf("held %d after a kick and Close", n)
		}
	}
}
