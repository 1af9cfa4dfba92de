package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/server"
)

// Timing of an edge's pulls.
const (
	// demandWait bounds how long a viewer's Demand waits for the first
	// connection to the origin: lookup, connect, tracks.
	demandWait = 5 * time.Second
	// followInterval is how often a pull checks the live map for its
	// path's origin, and how often it looks again after losing it: a
	// stream that moved is followed within about twice this.
	followInterval = time.Second
	// retryInterval is the pace of reconnection attempts while following.
	retryInterval = 250 * time.Millisecond
	// minFollow is how long a pull looks for a new origin at least, when
	// the path's gracePeriod is shorter.
	minFollow = 3 * time.Second
)

// errMoved ends an upstream whose path moved to another origin.
var errMoved = errors.New("cluster: the stream moved to another origin")

// pull is one stream an edge pulls: one upstream at a time, whatever the
// number of its viewers.
type pull struct {
	path   string
	ctx    context.Context
	cancel context.CancelFunc
	ready  chan struct{} // closed once the first attempt is over
	ok     bool          // set before ready closes: the pull publishes

	// origin, since and switches are for Status, under Node.mu.
	origin   Entry
	since    time.Time
	switches int
}

// Demand is the edge's part of HubConfig.OnDemand: for a path this node
// does not have, it finds the origin (the live map, else the static list),
// connects and publishes the stream into this node's hub, and reports
// whether it did (or a pull of the path is running already). A path no
// origin has is remembered for cluster.negativeTTL, so a storm of viewers
// of a wrong path costs one lookup.
func (n *Node) Demand(path string) bool {
	if n.conf.Role != RoleEdge {
		return false
	}
	n.mu.Lock()
	if n.ctx.Err() != nil { // closing: no new pull (see Close)
		n.mu.Unlock()
		return false
	}
	if until, ok := n.negative[path]; ok {
		if time.Now().Before(until) {
			n.mu.Unlock()
			return false
		}
		delete(n.negative, path)
	}
	p := n.pulls[path]
	if p == nil || p.ctx.Err() != nil {
		ctx, cancel := context.WithCancel(n.ctx)
		p = &pull{path: path, ctx: ctx, cancel: cancel, ready: make(chan struct{})}
		n.pulls[path] = p
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer guard.Recover(n.log, "cluster pull")
			n.run(p)
		}()
	}
	n.mu.Unlock()
	select {
	case <-p.ready:
		return p.ok
	case <-time.After(demandWait):
		return false
	}
}

// run is one pull's life: connect, publish, pump; follow the stream when
// its upstream ends or it moves; stop once idle or when no origin has it
// any more.
func (n *Node) run(p *pull) {
	defer p.cancel()
	defer func() {
		n.mu.Lock()
		if n.pulls[p.path] == p {
			delete(n.pulls, p.path)
		}
		n.mu.Unlock()
	}()
	log := n.log.With("path", p.path)
	up, origin, err := n.connect(p.ctx, p.path)
	if err != nil {
		n.mu.Lock()
		n.negative[p.path] = time.Now().Add(n.conf.NegativeTTL)
		if len(n.negative) > 10000 { // bounded: a scan of random paths cannot grow it
			clear(n.negative)
		}
		n.mu.Unlock()
		log.Debug("no origin has the path", "cause", err.Error())
		close(p.ready)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.idleWatch(p)
	}()
	first := true
	for {
		pub, err := n.hub.PublishTrusted(p.path, up.Tracks(), server.PublishOptions{Protocol: "relay", Remote: origin.Relay,
			Pulled: true, Upstream: true})
		if first {
			p.ok = err == nil
			close(p.ready)
			first = false
		}
		if err != nil {
			up.Close()
			log.Warn("pull could not publish", "origin", origin.Node, "cause", err.Error())
			return
		}
		n.mu.Lock()
		if p.origin.Relay != "" && p.origin != origin {
			p.switches++
		}
		p.origin, p.since = origin, time.Now()
		n.mu.Unlock()
		log.Info("pulling", "origin", origin.Node, "relay", origin.Relay)
		err = n.pump(p, up, pub, origin)
		pub.Close() // the edge's viewers wait in the path's grace period
		if p.ctx.Err() != nil {
			log.Info("pull stopped", "cause", stopCause(n.ctx))
			return
		}
		log.Info("upstream ended; following the stream", "origin", origin.Node, "cause", err.Error())
		up, origin, err = n.follow(p)
		if err != nil {
			log.Info("pull stopped: no origin has the stream any more", "cause", err.Error())
			return
		}
	}
}

func stopCause(nodeCtx context.Context) string {
	if nodeCtx.Err() != nil {
		return "server shutting down"
	}
	return "no viewers (cluster.idleTimeout)"
}

// pump runs up into pub until it ends, the pull stops, or the live map
// names another origin for the path (checked every followInterval).
func (n *Node) pump(p *pull, up Upstream, pub *server.Publisher, origin Entry) error {
	done := make(chan error, 1)
	go func() {
		defer guard.Recover(n.log, "cluster upstream")
		done <- up.Run(pub)
	}()
	defer up.Close()
	t := time.NewTicker(followInterval)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-p.ctx.Done():
			up.Close()
			return <-done
		case <-t.C:
			if n.lm == nil {
				continue
			}
			e, found, err := n.lookupMap(p.ctx, p.path)
			if err == nil && found && e != origin {
				up.Close()
				<-done
				return errMoved
			}
		}
	}
}

// follow looks for the stream again after its upstream ended, every
// retryInterval for the path's gracePeriod (at least minFollow), while
// the edge's viewers wait.
func (n *Node) follow(p *pull) (Upstream, Entry, error) {
	wait := max(n.hub.PathConfig(p.path).GracePeriod, minFollow)
	ctx, cancel := context.WithTimeout(p.ctx, wait)
	defer cancel()
	var last error
	for {
		up, origin, err := n.connect(ctx, p.path)
		if err == nil {
			return up, origin, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, Entry{}, last
		case <-time.After(retryInterval):
		}
	}
}

// errNoOrigin is returned when neither the live map nor the static list
// has the path.
var errNoOrigin = errors.New("cluster: no origin publishes this path")

// connect finds the path's origin and opens an upstream from it: the one
// the live map names, else each static origin in turn.
func (n *Node) connect(ctx context.Context, path string) (Upstream, Entry, error) {
	key := n.relayKey(path, time.Now())
	if n.lm != nil {
		e, found, err := n.lookupMap(ctx, path)
		if err == nil && found {
			up, err := n.dial(ctx, e.Relay, path, key)
			return up, e, err
		}
		if err == nil && len(n.conf.Origins) == 0 {
			return nil, Entry{}, errNoOrigin
		}
		// Redis unreachable: the static list, if any, is the fallback.
	}
	last := errNoOrigin
	for _, o := range n.conf.Origins {
		up, err := n.dial(ctx, o, path, key)
		if err == nil {
			return up, Entry{Node: o, Relay: o}, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, Entry{}, last
}

// lookupMap reads path's entry and checks it: an entry that is not valid,
// names this node, or points outside cluster.allowedRelays is ignored
// (logged once per value), never followed.
func (n *Node) lookupMap(ctx context.Context, path string) (Entry, bool, error) {
	v, err := n.lm.lookup(ctx, path)
	n.health.note(n.log, err)
	if err != nil || v == "" {
		return Entry{}, false, err
	}
	e, err := parseEntry(v)
	switch {
	case err != nil:
	case e.Node == n.self.Node:
		err = errors.New("cluster: the entry names this node")
	case !n.allow.allows(e.Relay):
		err = errors.New("cluster: the entry's relay address is outside cluster.allowedRelays")
	}
	if err != nil {
		n.mu.Lock()
		first := !n.refused["entry:"+v] && len(n.refused) < 1000
		if first {
			n.refused["entry:"+v] = true
		}
		n.mu.Unlock()
		if first {
			n.log.Warn("live map entry ignored", "path", path, "entry", guard.Truncate(v), "cause", err.Error())
		}
		return Entry{}, false, nil
	}
	return e, true, nil
}

// idleWatch stops p once its path has had no reader for
// cluster.idleTimeout.
func (n *Node) idleWatch(p *pull) {
	t := time.NewTicker(min(n.conf.IdleTimeout/4, time.Second))
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-p.ctx.Done():
			return
		case now := <-t.C:
			if s := n.hub.Stream(p.path); s != nil && s.ReaderCount() > 0 {
				last = now
			} else if now.Sub(last) >= n.conf.IdleTimeout {
				p.cancel()
				return
			}
		}
	}
}
