package cluster

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

const testSecret = "0123456789abcdef-secret"

func testConfig(role, node, redisAddr string) Config {
	return Config{Role: role, Node: node, Redis: redisAddr, RedisTimeout: 200 * time.Millisecond,
		RelayAddress: "10.1.0." + node[len(node)-1:] + ":1935", Secret: testSecret,
		AllowedRelays: []string{"10.1.0.0/16", "127.0.0.0/8"}, TTL: 10 * time.Second, Refresh: 2500 * time.Millisecond,
		IdleTimeout: 2 * time.Second, NegativeTTL: 2 * time.Second}
}

func newNode(t *testing.T, c Config, hub Hub, dial Dialer) (*Node, *testfixtures.SyncBuffer) {
	t.Helper()
	logs := &testfixtures.SyncBuffer{}
	if errs := c.Validate("cluster"); len(errs) > 0 {
		t.Fatalf("config: %v", errs)
	}
	n := New(c, hub, dial, slog.New(slog.NewTextHandler(logs, nil)))
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n, logs
}

func TestOnePublisherPerPathAcrossOrigins(t *testing.T) {
	mr := miniredis.RunT(t)
	a, _ := newNode(t, testConfig(RoleOrigin, "origin-a", mr.Addr()), nil, nil)
	b, _ := newNode(t, testConfig(RoleOrigin, "origin-b", mr.Addr()), nil, nil)
	ctx := context.Background()

	if err := a.Acquire(ctx, "live/x"); err != nil {
		t.Fatalf("A: %v", err)
	}
	v, _ := mr.Get(keyPrefix + "live/x")
	if e, err := parseEntry(v); err != nil || e.Node != "origin-a" || e.Relay != "10.1.0.a:1935" {
		t.Fatalf("entry %q (%v)", v, err)
	}
	if ttl := mr.TTL(keyPrefix + "live/x"); ttl != 10*time.Second {
		t.Fatalf("TTL %v, want 10s", ttl)
	}
	err := b.Acquire(ctx, "live/x")
	if !errors.Is(err, server.ErrPathBusy) || !strings.Contains(err.Error(), "origin-a") {
		t.Fatalf("B: %v, want ErrPathBusy naming origin-a", err)
	}
	// A second publisher on A (a republish racing the old one's Release):
	// counted, one entry.
	if err := a.Acquire(ctx, "live/x"); err != nil {
		t.Fatal(err)
	}
	a.Release("live/x")
	if !mr.Exists(keyPrefix + "live/x") {
		t.Fatal("entry deleted while A still has a publisher")
	}
	a.Release("live/x")
	waitFor(t, "A's entry deleted", func() bool { return !mr.Exists(keyPrefix + "live/x") })
	if err := b.Acquire(ctx, "live/x"); err != nil {
		t.Fatalf("B after A left: %v", err)
	}
	// A Release of A's must not delete B's entry (compare-and-delete).
	a.lm.unregister(ctx, "live/x") //nolint:errcheck
	if v, _ := mr.Get(keyPrefix + "live/x"); !strings.Contains(v, "origin-b") {
		t.Fatalf("B's entry %q after A's delete", v)
	}
}

func TestRefreshKeepsOnlyOwnEntry(t *testing.T) {
	mr := miniredis.RunT(t)
	a, logs := newNode(t, testConfig(RoleOrigin, "origin-a", mr.Addr()), nil, nil)
	if err := a.Acquire(context.Background(), "live/x"); err != nil {
		t.Fatal(err)
	}
	mr.FastForward(9 * time.Second)
	a.refreshOnce()
	if ttl := mr.TTL(keyPrefix + "live/x"); ttl != 10*time.Second {
		t.Fatalf("TTL after refresh %v", ttl)
	}
	// Another origin's entry (it registered while A could not reach
	// Redis): A's refresh leaves it alone and says so.
	other := Entry{Node: "origin-b", Relay: "10.1.0.b:1935"}.encode()
	mr.Set(keyPrefix+"live/x", other)
	a.refreshOnce()
	if v, _ := mr.Get(keyPrefix + "live/x"); v != other {
		t.Fatalf("refresh overwrote another origin's entry: %q", v)
	}
	if st := a.Status(); len(st.Paths) != 1 || st.Paths[0].Registered || st.Paths[0].Conflict != other {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(logs.String(), "another origin holds a path") {
		t.Fatalf("conflict not logged:\n%s", logs)
	}
	// An expired entry (a crashed origin's, or ours while Redis was
	// away) is registered again.
	mr.Del(keyPrefix + "live/x")
	a.refreshOnce()
	if v, _ := mr.Get(keyPrefix + "live/x"); !strings.Contains(v, "origin-a") {
		t.Fatalf("not registered again: %q", v)
	}
}

func TestRedisDownKeepsServingAndRecovers(t *testing.T) {
	mr := miniredis.RunT(t)
	c := testConfig(RoleOrigin, "origin-a", mr.Addr())
	a, logs := newNode(t, c, nil, nil)
	mr.Close()
	began := time.Now()
	if err := a.Acquire(context.Background(), "live/x"); err != nil {
		t.Fatalf("Redis down refused the publisher: %v", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("Acquire took %v with Redis down (redisTimeout %v)", d, c.RedisTimeout)
	}
	a.refreshOnce()
	a.refreshOnce()
	if st := a.Status(); st.Redis == nil || st.Redis.Up || st.Paths[0].Registered {
		t.Fatalf("status with Redis down: %+v %+v", st, st.Redis)
	}
	if n := strings.Count(logs.String(), "redis unreachable"); n != 1 {
		t.Fatalf("%d 'redis unreachable' lines, want 1:\n%s", n, logs)
	}
	if err := mr.Restart(); err != nil {
		t.Fatal(err)
	}
	a.refreshOnce()
	if v, _ := mr.Get(keyPrefix + "live/x"); !strings.Contains(v, "origin-a") {
		t.Fatalf("map not restored: %q", v)
	}
	if st := a.Status(); !st.Redis.Up || !st.Paths[0].Registered {
		t.Fatalf("status after Redis returned: %+v", st)
	}
	if !strings.Contains(logs.String(), "redis reachable again") {
		t.Fatalf("recovery not logged:\n%s", logs)
	}
}

func TestTakeOverDeadOriginAndGarbage(t *testing.T) {
	mr := miniredis.RunT(t)
	b, _ := newNode(t, testConfig(RoleOrigin, "origin-b", mr.Addr()), nil, nil)
	ctx := context.Background()
	// A closed port on loopback: connection refused, the origin is gone.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	mr.Set(keyPrefix+"live/x", Entry{Node: "origin-a", Relay: dead}.encode())
	if err := b.Acquire(ctx, "live/x"); err != nil {
		t.Fatalf("dead origin's entry not taken over: %v", err)
	}
	// A live origin's entry is not.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	mr.Set(keyPrefix+"live/y", Entry{Node: "origin-a", Relay: ln.Addr().String()}.encode())
	if err := b.Acquire(ctx, "live/y"); !errors.Is(err, server.ErrPathBusy) {
		t.Fatalf("live origin's entry: %v", err)
	}
	// Nor one outside the cluster (never dialed).
	mr.Set(keyPrefix+"live/z", Entry{Node: "origin-a", Relay: "192.0.2.1:1935"}.encode())
	if err := b.Acquire(ctx, "live/z"); !errors.Is(err, server.ErrPathBusy) {
		t.Fatalf("outside entry: %v", err)
	}
	// Garbage is replaced.
	mr.Set(keyPrefix+"live/g", `{"node":"x","relay":"nope","extra":1}`)
	if err := b.Acquire(ctx, "live/g"); err != nil {
		t.Fatalf("garbage entry: %v", err)
	}
}

func TestParseEntry(t *testing.T) {
	for _, v := range []string{"", "null", "{}", `{"node":"a"}`, `{"node":"a b","relay":"h:1"}`, `{"node":"a","relay":"h"}`,
		`{"node":"a","relay":"h:1","x":2}`, `{"node":"a","relay":"h:1"}{}`, `{"node":"a","relay":"h:1"} x`, `{"node":"a","relay":"` + strings.Repeat("h", 600) + `:1"}`, "garbage"} {
		if _, err := parseEntry(v); !errors.Is(err, ErrBadEntry) {
			t.Errorf("%q: %v, want ErrBadEntry", v, err)
		}
	}
	if e, err := parseEntry(`{"node":"a-1","relay":"10.0.0.1:1935"}`); err != nil || e.Relay != "10.0.0.1:1935" {
		t.Fatalf("%+v %v", e, err)
	}
}

func TestRelayKey(t *testing.T) {
	mr := miniredis.RunT(t)
	edge, _ := newNode(t, testConfig(RoleEdge, "edge-1", mr.Addr()), nil, nil)
	origin, logs := newNode(t, testConfig(RoleOrigin, "origin-a", mr.Addr()), nil, nil)
	key := edge.relayKey("live/x", time.Now())
	if ok, err := origin.RelayKey("live/x", key); !ok || err != nil {
		t.Fatalf("valid key: %v %v", ok, err)
	}
	if ok, err := origin.RelayKey("live/y", key); ok || !errors.Is(err, ErrRelayKey) {
		t.Fatalf("key of another path: %v %v", ok, err)
	}
	if ok, err := origin.RelayKey("live/x", edge.relayKey("live/x", time.Now().Add(-time.Hour))); ok || err == nil {
		t.Fatalf("old key: %v %v", ok, err)
	}
	wrong := testConfig(RoleEdge, "edge-2", mr.Addr())
	wrong.Secret = "another-secret-of-16"
	bad, _ := newNode(t, wrong, nil, nil)
	for range 3 {
		if ok, err := origin.RelayKey("live/x", bad.relayKey("live/x", time.Now())); ok || err == nil {
			t.Fatalf("wrong secret: %v %v", ok, err)
		}
	}
	if n := strings.Count(logs.String(), "claimedNode=edge-2"); n != 1 {
		t.Fatalf("%d log lines for a wrong secret, want 1:\n%s", n, logs)
	}
	if ok, err := origin.RelayKey("live/x", "viewer-key"); ok || err != nil {
		t.Fatalf("an ordinary key: %v %v", ok, err)
	}
}

// fakeUpstream writes one keyframe, then waits for Close.
type fakeUpstream struct {
	track  *media.Track
	closed chan struct{}
	once   sync.Once
}

func (u *fakeUpstream) Tracks() []*media.Track { return []*media.Track{u.track} }
func (u *fakeUpstream) Run(w Writer) error {
	w.Write(&media.Unit{Track: u.track, KeyFrame: true, Payload: [][]byte{{0x65, 1}}})
	<-u.closed
	return errors.New("closed")
}
func (u *fakeUpstream) Close() { u.once.Do(func() { close(u.closed) }) }

func TestEdgePullsFollowsAndCachesMisses(t *testing.T) {
	mr := miniredis.RunT(t)
	hub := server.NewHub(server.HubConfig{})
	defer hub.Close()
	var dials atomic.Int32
	var mu sync.Mutex
	var dialed []string
	dial := func(ctx context.Context, addr, path, key string) (Upstream, error) {
		dials.Add(1)
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		if !strings.HasPrefix(key, relayKeyPrefix) {
			return nil, errors.New("no cluster key")
		}
		return &fakeUpstream{track: &media.Track{Codec: media.CodecH264}, closed: make(chan struct{})}, nil
	}
	edge, _ := newNode(t, testConfig(RoleEdge, "edge-1", mr.Addr()), hub, dial)

	// No origin has it: false at once, and the answer is cached.
	if edge.Demand("live/none") || edge.Demand("live/none") {
		t.Fatal("Demand of a path no origin has")
	}
	if dials.Load() != 0 {
		t.Fatalf("%d dials for a path not in the map", dials.Load())
	}
	// An entry outside the cluster is not followed.
	mr.Set(keyPrefix+"live/evil", Entry{Node: "origin-x", Relay: "192.0.2.7:1935"}.encode())
	if edge.Demand("live/evil") || dials.Load() != 0 {
		t.Fatal("followed an entry outside cluster.allowedRelays")
	}

	mr.Set(keyPrefix+"live/x", Entry{Node: "origin-a", Relay: "10.1.0.1:1935"}.encode())
	r, err := hub.ReadTrusted(context.Background(), "live/none", server.ReadOptions{})
	if err == nil {
		r.Close()
	}
	var wg sync.WaitGroup
	for range 5 { // five viewers at once: one upstream
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !edge.Demand("live/x") {
				t.Error("Demand live/x = false")
			}
		}()
	}
	wg.Wait()
	if dials.Load() != 1 {
		t.Fatalf("%d upstreams for 5 viewers, want 1", dials.Load())
	}
	rd, err := hub.ReadTrusted(context.Background(), "live/x", server.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()

	// The publisher moved to origin B: the edge follows.
	mr.Set(keyPrefix+"live/x", Entry{Node: "origin-b", Relay: "10.1.0.2:1935"}.encode())
	waitFor(t, "the edge following to origin B", func() bool {
		st := edge.Status()
		return len(st.Upstreams) == 1 && st.Upstreams[0].Origin == "origin-b" && st.Upstreams[0].Switches == 1
	})
	mu.Lock()
	if len(dialed) != 2 || dialed[1] != "10.1.0.2:1935" {
		t.Fatalf("dialed %v", dialed)
	}
	mu.Unlock()

	// Idle: the last reader leaves, the pull stops after idleTimeout.
	rd.Close()
	waitFor(t, "the idle pull stopping", func() bool { return len(edge.Status().Upstreams) == 0 })
}

func TestStaticOriginsWithoutRedis(t *testing.T) {
	hub := server.NewHub(server.HubConfig{})
	defer hub.Close()
	var dialed []string
	var mu sync.Mutex
	dial := func(ctx context.Context, addr, path, key string) (Upstream, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		if addr != "10.1.0.2:1935" {
			return nil, errors.New("stream not found")
		}
		return &fakeUpstream{track: &media.Track{Codec: media.CodecH264}, closed: make(chan struct{})}, nil
	}
	c := testConfig(RoleEdge, "edge-1", "")
	c.Origins = []string{"10.1.0.1:1935", "10.1.0.2:1935"}
	edge, _ := newNode(t, c, hub, dial)
	if !edge.Demand("live/x") {
		t.Fatal("Demand with a static list")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dialed) != 2 {
		t.Fatalf("dialed %v", dialed)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{Role: "edge", Secret: "short", Redis: "x", RedisTimeout: time.Second, TTL: 10 * time.Second,
		Refresh: 8 * time.Second, IdleTimeout: time.Second, AllowedRelays: []string{"nope"}, Origins: []string{":1935"}}
	got := ""
	for _, e := range c.Validate("cluster") {
		got += e.Error() + "\n"
	}
	for _, want := range []string{"cluster.secret:", "cluster.redis:", "cluster.refresh:", "cluster.allowedRelays[0]:", "cluster.origins[0]:"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
	o := Config{Role: "origin", Secret: testSecret, Redis: "127.0.0.1:6379", RedisTimeout: time.Second, TTL: 10 * time.Second, Refresh: time.Second, IdleTimeout: time.Second}
	got = ""
	for _, e := range o.Validate("cluster") {
		got += e.Error() + "\n"
	}
	for _, want := range []string{"cluster.relayAddress:"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
	if errs := (&Config{Role: "standalone"}).Validate("cluster"); len(errs) != 0 {
		t.Fatal(errs)
	}
	if errs := (&Config{Role: "primary"}).Validate("cluster"); len(errs) != 1 || !strings.Contains(errs[0].Error(), "cluster.role:") {
		t.Fatal(errs)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A Redis that accepts connections and never answers: a publisher waits at
// most about cluster.redisTimeout, then is let in.
func TestSlowRedisNeverStallsPublisher(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	c := testConfig(RoleOrigin, "origin-a", ln.Addr().String())
	a, _ := newNode(t, c, nil, nil)
	began := time.Now()
	if err := a.Acquire(context.Background(), "live/x"); err != nil {
		t.Fatalf("a stalled Redis refused the publisher: %v", err)
	}
	took := time.Since(began)
	t.Logf("Acquire with a stalled Redis: %v (redisTimeout %v)", took.Round(time.Millisecond), c.RedisTimeout)
	if took > 10*c.RedisTimeout {
		t.Fatalf("Acquire took %v with a stalled Redis; its calls are bounded by %v", took, c.RedisTimeout)
	}
	if st := a.Status(); st.Redis.Up || st.Paths[0].Registered {
		t.Fatalf("status %+v", st)
	}
}
