package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/streamhub/streamhub/server"
)

var _ server.PublishGuard = (*Node)(nil)

// deadProbe bounds the check that an origin holding a path is gone.
const deadProbe = 300 * time.Millisecond

// Acquire holds path in the live map for a publisher of this origin (SET
// NX): nil when this node has it now, or a refusal wrapping
// server.ErrPathBusy that names the origin that has it. Redis unreachable
// or slow (cluster.redisTimeout) lets the publisher in: the node keeps
// serving, and the refresher registers the path when Redis is back. An
// entry of an origin whose relay address refuses connections (a crashed
// process; its entry would live on for the TTL) is taken over at once.
func (n *Node) Acquire(ctx context.Context, path string) error {
	if n.conf.Role != RoleOrigin || n.lm == nil {
		return nil
	}
	if n.addLease(path, false, true) {
		return nil
	}
	ok, other, err := n.lm.register(ctx, path)
	n.health.note(n.log, err)
	if err != nil {
		n.addLease(path, false, false)
		return nil
	}
	if !ok {
		e, perr := parseEntry(other)
		switch {
		case perr != nil:
			// Garbage (or a foreign writer): no node of ours wrote it;
			// replace it rather than refuse every publisher until it expires.
			n.log.Warn("live map entry is not valid; replacing it", "path", path, "cause", perr.Error())
			ok, err = n.lm.takeOver(ctx, path, other)
		case e.Node == n.self.Node:
			ok, err = n.lm.takeOver(ctx, path, other) // ours from before a restart
		case n.deadOrigin(e):
			n.log.Info("origin that held the path refuses connections: taking the path over", "path", path,
				"origin", e.Node, "relay", e.Relay)
			ok, err = n.lm.takeOver(ctx, path, other)
		}
		n.health.note(n.log, err)
		if err != nil {
			n.addLease(path, false, false)
			return nil
		}
		if !ok {
			if perr == nil && n.hub != nil && n.hub.PathConfig(path).Standby != server.StandbyOff {
				// Hot standby across origins: the publisher waits here
				// (the hub asks LiveElsewhere) and this origin takes the
				// path when the other's entry goes (standbyLoop).
				n.addElsewhere(path, e)
				return nil
			}
			if perr != nil {
				return fmt.Errorf("%w: the cluster's live map holds another entry for it", server.ErrPathBusy)
			}
			return fmt.Errorf("%w: origin %s (%s) publishes it in the cluster", server.ErrPathBusy, e.Node, e.Relay)
		}
	}
	n.addLease(path, true, false)
	return nil
}

// addElsewhere counts one more publisher of path that waits as a standby
// while the origin in e holds the path.
func (n *Node) addElsewhere(path string, e Entry) {
	n.mu.Lock()
	l := n.leases[path]
	first := l == nil
	if first {
		l = &lease{since: time.Now(), elsewhere: true}
		n.leases[path] = l
	}
	l.count++
	n.mu.Unlock()
	if first {
		n.log.Info("publisher waits as a standby: another origin publishes the path", "path", path, "origin", e.Node, "relay", e.Relay)
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
}

// LiveElsewhere is the hub's HubConfig.LiveElsewhere: whether this
// origin's publishers of path wait for another origin's (addElsewhere).
func (n *Node) LiveElsewhere(path string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.leases[path]
	return l != nil && l.elsewhere
}

// standbyPoll is how often an origin with standbys waiting for another
// origin's path tries to take it; deadPoll how often it probes whether
// that origin's process is gone.
const (
	standbyPoll = 100 * time.Millisecond
	deadPoll    = time.Second
)

// standbyLoop takes the paths this origin's standbys wait for as soon as
// the other origin's entry is gone (its publisher left: the entry is
// deleted at once) or its origin refuses connections (crashed: the entry
// would stay for the TTL), and promotes the standby in the hub.
func (n *Node) standbyLoop() {
	t := time.NewTicker(standbyPoll)
	defer t.Stop()
	probed := map[string]time.Time{}
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.wake:
		}
		paths := n.leasePaths(func(l *lease) bool { return l.elsewhere })
		for p := range probed {
			if !slices.Contains(paths, p) {
				delete(probed, p)
			}
		}
		for _, p := range paths {
			ok, other, err := n.lm.register(n.ctx, p)
			if n.ctx.Err() != nil {
				return
			}
			n.health.note(n.log, err)
			if err != nil {
				break
			}
			if !ok {
				e, perr := parseEntry(other)
				if perr != nil || time.Since(probed[p]) < deadPoll {
					continue
				}
				probed[p] = time.Now()
				if !n.deadOrigin(e) {
					continue
				}
				if ok, err = n.lm.takeOver(n.ctx, p, other); err != nil || !ok {
					continue
				}
				n.log.Info("origin that held the path refuses connections: taking the path over", "path", p, "origin", e.Node, "relay", e.Relay)
			}
			n.mu.Lock()
			l := n.leases[p]
			if l != nil {
				l.elsewhere, l.registered, l.promote = false, true, true
			}
			n.mu.Unlock()
			if l == nil {
				// Its publishers left meanwhile: give the entry back.
				n.health.note(n.log, n.lm.unregister(n.ctx, p))
			}
		}
		n.promotePending()
	}
}

// promotePending makes the standbys of the paths standbyLoop took go live
// (Hub.Promote). A publisher still between its claim and its tracks (an
// RTMP probe, RTSP from ANNOUNCE to RECORD) is not in the hub yet: its path
// stays pending and is tried again at the next tick.
func (n *Node) promotePending() {
	paths := n.leasePaths(func(l *lease) bool { return l.promote })
	for _, p := range paths {
		err := n.hub.Promote(p)
		if errors.Is(err, server.ErrStreamNotFound) || errors.Is(err, server.ErrNoStandby) {
			continue // not attached yet
		}
		n.mu.Lock()
		if l := n.leases[p]; l != nil {
			l.promote = false
		}
		n.mu.Unlock()
		if err != nil {
			n.log.Warn("path taken for a standby that could not go live", "path", p, "cause", err.Error())
			continue
		}
		n.log.Info("standby publisher took the path over from another origin", "path", p)
	}
}

// addLease counts one more publisher of path. With onlyIfHeld it does so
// only when path is held already (reporting whether); else it creates the
// lease, registered or not.
func (n *Node) addLease(path string, registered, onlyIfHeld bool) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.leases[path]
	if l == nil {
		if onlyIfHeld {
			return false
		}
		l = &lease{since: time.Now()}
		n.leases[path] = l
	}
	l.count++
	l.registered = l.registered || registered
	return true
}

// Release gives path back once its last publisher left: the entry is
// deleted if it is still this origin's (compare-and-delete), in the
// background within the Redis timeout.
func (n *Node) Release(path string) {
	if n.conf.Role != RoleOrigin || n.lm == nil {
		return
	}
	n.mu.Lock()
	l := n.leases[path]
	if l == nil {
		n.mu.Unlock()
		return
	}
	l.count--
	if l.count > 0 {
		n.mu.Unlock()
		return
	}
	delete(n.leases, path)
	if n.ctx.Err() != nil {
		n.mu.Unlock()
		return // closing: Close deletes the entries it still holds
	}
	n.wg.Add(1) // under mu: see Close
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		err := n.lm.unregister(n.ctx, path)
		if n.ctx.Err() == nil {
			n.health.note(n.log, err)
		}
	}()
}

// deadOrigin reports whether e's relay address, within the cluster,
// refuses connections: its process is gone (a partition, where a dial
// times out, is not taken for death).
func (n *Node) deadOrigin(e Entry) bool {
	if !n.allow.allows(e.Relay) {
		return false
	}
	c, err := net.DialTimeout("tcp", e.Relay, deadProbe)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// refreshLoop refreshes this origin's entries every cluster.refresh while
// they are still its own, registers those that Redis missed (it was
// unreachable, or an entry expired), and checks Redis's health.
func (n *Node) refreshLoop() {
	t := time.NewTicker(n.conf.Refresh)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.refreshOnce()
	}
}

func (n *Node) refreshOnce() {
	if n.conf.Role != RoleOrigin {
		n.health.note(n.log, n.lm.ping(n.ctx))
		return
	}
	n.mu.Lock()
	paths := make([]string, 0, len(n.leases))
	for p, l := range n.leases {
		if !l.elsewhere { // standbyLoop's
			paths = append(paths, p)
		}
	}
	n.mu.Unlock()
	if len(paths) == 0 {
		n.health.note(n.log, n.lm.ping(n.ctx))
		return
	}
	for _, p := range paths {
		ok, err := n.lm.refresh(n.ctx, p)
		other := ""
		if err == nil && !ok {
			// Gone (expired while Redis was away, deleted by a quick
			// republish's Release) or another's: NX again.
			ok, other, err = n.lm.register(n.ctx, p)
		}
		if n.ctx.Err() != nil {
			return
		}
		n.health.note(n.log, err)
		if err != nil {
			return // one failure per round is enough
		}
		n.mu.Lock()
		l := n.leases[p]
		if l != nil {
			l.registered = ok
			if !ok && l.conflict != other {
				l.conflict = other
				n.log.Warn("another origin holds a path this origin publishes (it registered while this one could not): edges follow the live map",
					"path", p, "entry", other)
			}
			if ok {
				l.conflict = ""
			}
		}
		n.mu.Unlock()
	}
}

// Relay keys: an edge plays a path from another node with
// key=cl1.<node>.<unix seconds>.<hex HMAC-SHA256(secret, "cl1|node|unix|path")>,
// valid for relayKeyWindow either side of the origin's clock. A key names
// the path it was made for, so a key seen on the wire opens nothing else.
const (
	relayKeyPrefix = "cl1."
	relayKeyWindow = 5 * time.Minute
)

// relayKey returns this node's key for reading path at now.
func (n *Node) relayKey(path string, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	return relayKeyPrefix + n.self.Node + "." + ts + "." + n.relayMAC(n.self.Node, ts, path)
}

func (n *Node) relayMAC(node, ts, path string) string {
	m := hmac.New(sha256.New, []byte(n.conf.Secret))
	m.Write([]byte("cl1|" + node + "|" + ts + "|" + path))
	return hex.EncodeToString(m.Sum(nil))
}

// ErrRelayKey is returned for a cluster key that does not check out.
var ErrRelayKey = errors.New("cluster: wrong cluster key (cluster.secret differs between the nodes, or a clock is off by more than 5 minutes)")

// RelayKey is HubConfig.RelayKey: true for a valid cluster key for path, an
// error for a key that looks like one and is not (logged once per node
// name it claims), false, nil for any other key.
func (n *Node) RelayKey(path, key string) (bool, error) {
	if !strings.HasPrefix(key, relayKeyPrefix) || !n.conf.Enabled() {
		return false, nil
	}
	parts := strings.Split(key[len(relayKeyPrefix):], ".")
	if len(parts) < 3 {
		return false, n.refuseKey("?")
	}
	// The node name may itself hold dots: the last two fields are fixed.
	mac, ts := parts[len(parts)-1], parts[len(parts)-2]
	node := strings.Join(parts[:len(parts)-2], ".")
	if !nodeName.MatchString(node) {
		return false, n.refuseKey("?")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false, n.refuseKey(node)
	}
	if d := time.Since(time.Unix(sec, 0)); d > relayKeyWindow || d < -relayKeyWindow {
		return false, n.refuseKey(node)
	}
	if !hmac.Equal([]byte(mac), []byte(n.relayMAC(node, ts, path))) {
		return false, n.refuseKey(node)
	}
	return true, nil
}

// refuseKey logs a wrong cluster key once per node name claimed (a
// bounded set), and returns ErrRelayKey.
func (n *Node) refuseKey(node string) error {
	n.mu.Lock()
	first := !n.refused[node] && len(n.refused) < 1000
	if first {
		n.refused[node] = true
	}
	n.mu.Unlock()
	if first {
		n.log.Warn("relay refused: wrong cluster key (logged once per node name)", "claimedNode", node)
	}
	return ErrRelayKey
}

// leasePaths returns the paths whose lease has what keep asks for.
func (n *Node) leasePaths(keep func(*lease) bool) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var paths []string
	for p, l := range n.leases {
		if keep(l) {
			paths = append(paths, p)
		}
	}
	return paths
}
