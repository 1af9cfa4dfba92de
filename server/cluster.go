package server

import (
	"context"
	"fmt"
)

// The hub's two hooks for a cluster of nodes (package cluster sets them
// through HubConfig; the hub never imports it):
//
//   - PublishGuard: an origin holds a path in the cluster's live map for
//     as long as it has a publisher there, so that a second origin refuses
//     a second publisher of the path (one publisher per path across the
//     cluster).
//   - RelayKey: an edge pulling a stream for its viewers reads through the
//     guarded door with a cluster key; it is let in without the path's
//     keys, reads with the source's own timing (no catch-up) and counts as
//     a relay, not a viewer.

// PublishGuard is asked before the hub holds a path for a publisher and
// told when it no longer does. Acquire and Release pair up per publisher:
// Release is called exactly once for each Acquire that returned nil.
type PublishGuard interface {
	// Acquire returns nil when this node may take a publisher on path, or
	// the refusal (wrapping ErrPathBusy, naming the node that publishes
	// it). It must return within a short bound whatever its backend does.
	Acquire(ctx context.Context, path string) error
	// Release says the publisher that Acquire let in left (or never
	// published). It must not block.
	Release(path string)
}

// acquire runs HubConfig.PublishGuard's Acquire for path; the returned
// release (never nil) gives the path back.
func (h *Hub) acquire(ctx context.Context, path string) (func(), error) {
	g := h.conf.PublishGuard
	if g == nil {
		return func() {}, nil
	}
	if err := g.Acquire(ctx, path); err != nil {
		return nil, err
	}
	return func() { g.Release(path) }, nil
}

// checkRelay reports whether key is a relay's cluster key for path
// (HubConfig.RelayKey); a wrong one is ErrUnauthorized.
func (h *Hub) checkRelay(path, key string) (bool, error) {
	if h.conf.RelayKey == nil || key == "" {
		return false, nil
	}
	ok, err := h.conf.RelayKey(path, key)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	return ok, nil
}

// Relay reports whether r is a relay: an edge reading for its viewers.
func (r *Reader) Relay() bool { return r.relay.Load() }
