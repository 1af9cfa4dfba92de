// Package cluster makes several streamhub nodes one service: origins take
// the publishers and hold each path they publish in a live map in Redis
// (one publisher per path across origins); edges serve the viewers and
// pull each stream they are asked for once from the origin the map names
// (or from a static list), over RTMP, signed with the cluster's secret.
//
//	publisher ──▶ origin A ── SET NX streamhub:live:<path> ──▶ Redis
//	                 │ ▲                                        │ GET
//	                 │ └── RTMP play, cluster key (a relay) ── edge 1 ──▶ viewers (every protocol)
//	                 └──── RTMP play, cluster key (a relay) ── edge 2 ──▶ viewers
//
// The hub does not import this package: main sets the hub's PublishGuard
// (Node.Acquire, Node.Release), RelayKey (Node.RelayKey) and OnDemand
// (Node.Demand) from a Node.
package cluster

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// Writer is what an Upstream writes into: the hub publisher of the pull.
type Writer interface {
	Write(u *media.Unit)
	UpdateTrack(t *media.Track)
}

// Upstream is one pull of a stream from another node (protocols/rtmp's
// Upstream).
type Upstream interface {
	// Tracks returns the stream's tracks.
	Tracks() []*media.Track
	// Run writes the stream's units into w until the connection ends or
	// Close; it returns a non-nil error.
	Run(w Writer) error
	// Close ends the connection.
	Close()
}

// Dialer opens an Upstream: it plays path at addr (another node's RTMP
// address) with key, and returns once the tracks are known; ctx ends the
// attempt.
type Dialer func(ctx context.Context, addr, path, key string) (Upstream, error)

// Hub is what a Node needs of the hub.
type Hub interface {
	PublishTrusted(path string, tracks []*media.Track, opts server.PublishOptions) (*server.Publisher, error)
	Stream(path string) *server.Stream
	PathConfig(path string) server.PathConfig
	// Promote makes a standby waiting on path its publisher.
	Promote(path string) error
}

// Node is this node's part of the cluster. Its methods are safe for
// concurrent use; a standalone node's do nothing.
type Node struct {
	conf  Config
	self  Entry
	hub   Hub
	dial  Dialer
	log   *slog.Logger
	allow allowList

	rdb    *redis.Client // nil without Redis
	lm     *liveMap
	health health

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex // mu guards leases, pulls, negative and refused
	leases   map[string]*lease
	pulls    map[string]*pull
	negative map[string]time.Time // path → until when no origin has it
	refused  map[string]bool      // who sent a wrong cluster key (logged once each)
	wake     chan struct{}        // standbyLoop: a path began to wait
}

// lease is a path this origin holds in the live map.
type lease struct {
	count      int    // publishers let in by Acquire and not released
	registered bool   // the map holds our entry (as far as we know)
	conflict   string // the other origin's entry, when it took the path
	// elsewhere: another origin publishes the path; this one's publishers
	// wait as standbys (paths.*.standby) until standbyLoop takes it.
	elsewhere bool
	// promote: standbyLoop took the path for this origin's standbys; they
	// go live as soon as one is attached (promotePending).
	promote bool
	since   time.Time
}

// New returns the node for c; dial opens pulls (edges). Start starts its
// background work.
func New(c Config, hub Hub, dial Dialer, log *slog.Logger) *Node {
	if c.Role == "" {
		c.Role = RoleStandalone
	}
	if c.Node == "" {
		c.Node, _ = os.Hostname()
		if !nodeName.MatchString(c.Node) {
			c.Node = "streamhub"
		}
	}
	n := &Node{conf: c, self: Entry{Node: c.Node, Relay: c.RelayAddress}, hub: hub, dial: dial,
		log: log.With("component", "cluster", "role", c.Role, "node", c.Node), allow: newAllowList(c),
		leases: map[string]*lease{}, pulls: map[string]*pull{}, negative: map[string]time.Time{}, refused: map[string]bool{}, wake: make(chan struct{}, 1)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if c.Enabled() && c.Redis != "" {
		opts, err := redisOptions(c.Redis, c.RedisTimeout)
		if err == nil { // validated
			// go-redis logs every failed dial on its own; the node says a
			// Redis outage once (health). The logger is process-wide: this
			// is the process's one Redis client.
			redis.SetLogger(quietRedis{})
			n.rdb = redis.NewClient(opts)
			n.lm = newLiveMap(n.rdb, n.self, c.TTL, c.RedisTimeout)
		}
	}
	return n
}

// Role returns the node's role.
func (n *Node) Role() string { return n.conf.Role }

// Start starts the refresher (origin) and the Redis health checks.
func (n *Node) Start() error {
	if !n.conf.Enabled() {
		return nil
	}
	n.log.Info("cluster node starting", "redis", n.conf.Redis != "", "relayAddress", n.conf.RelayAddress)
	if n.lm != nil {
		n.health.note(n.log, n.lm.ping(n.ctx))
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.refreshLoop()
		}()
		if n.conf.Role == RoleOrigin {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				n.standbyLoop()
			}()
		}
	}
	return nil
}

// Close stops the pulls, gives back the paths this origin holds (deleting
// its entries, within the Redis timeout) and closes the Redis client.
func (n *Node) Close() {
	n.cancel()
	// Demand and Release add to wg under mu after checking ctx: once this
	// lock was taken, none will, and Wait may start.
	n.mu.Lock()
	n.mu.Unlock() //nolint:staticcheck // a barrier, see above
	n.wg.Wait()
	if n.lm != nil {
		n.mu.Lock()
		paths := make([]string, 0, len(n.leases))
		for p := range n.leases {
			paths = append(paths, p)
		}
		n.mu.Unlock()
		for _, p := range paths {
			n.lm.unregister(context.Background(), p) //nolint:errcheck // the TTL ends it anyway
		}
		n.rdb.Close()
	}
}

// quietRedis is go-redis's logger: silent.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// health is Redis's state as this node saw it last; it logs each change
// once.
type health struct {
	mu      sync.Mutex // mu guards the fields
	known   bool
	up      bool
	lastErr string
	since   time.Time
	errors  uint64
}

func (h *health) note(log *slog.Logger, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	up := err == nil
	if err != nil {
		h.errors++
		h.lastErr = err.Error()
	}
	if h.known && h.up == up {
		return
	}
	was := h.known
	h.known, h.up, h.since = true, up, time.Now()
	switch {
	case !up:
		log.Warn("redis unreachable: serving what this node has; the live map is not updated until it returns", "cause", err.Error())
	case was:
		log.Info("redis reachable again: the live map is being restored")
	}
}

func (h *health) get() (known, up bool, lastErr string, since time.Time, errs uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.known, h.up, h.lastErr, h.since, h.errors
}
