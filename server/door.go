package server

import (
	"context"
	"time"
)

// The guarded door: every publisher and reader from the network enters the
// hub through Publish or Read, which check its access (keys, the stream
// registry, signed play links, the auth hook, the address's failure budget
// and the refusal delay) in the same call that attaches it, so no protocol
// can forget the check. streamhub's own readers and publishers (the HLS
// segmenter, the ladder, pulled sources, a future relay or recorder) use
// ReadTrusted and PublishTrusted: `grep -rn Trusted` lists every place
// that skips the checks. TestHubAPISurface fails when another exported
// entry point appears.

// ReadRequest is a reader from the network: who it is and what it gave.
type ReadRequest struct {
	// Peer is the protocol, the remote address and the raw query, for the
	// auth hook, the failure budget, the logs and the session list.
	Peer Peer
	// Key is the read key or signed play token the peer gave ("" if none).
	Key string
	// Wait waits for an on-demand source (ReadOptions.Wait).
	Wait bool
	// NoCatchUp and Backlog are ReadOptions'.
	NoCatchUp bool
	Backlog   time.Duration
	// Kick, if set, ends the peer's connection (Hub.KickSession).
	Kick func()
}

// Read authorizes req (see Authorize) and attaches a reader to path, which
// the session list shows as req.Peer. It returns the refusal (wrapping
// ErrUnauthorized), ErrStreamNotFound, ErrTooManyReaders or a *PathError.
//
// A relay (an edge of the cluster, HubConfig.RelayKey) reads with the
// source's own timing, whatever the path's catchUp, and is counted in
// StreamStats.Relays instead of among the viewers.
func (h *Hub) Read(ctx context.Context, path string, req ReadRequest) (*Reader, error) {
	relay, err := h.authorizeRead(ctx, path, req)
	if err != nil {
		return nil, err
	}
	r, err := h.ReadTrusted(ctx, path, ReadOptions{Wait: req.Wait, NoCatchUp: req.NoCatchUp || relay, Backlog: req.Backlog})
	if err != nil {
		return nil, err
	}
	r.relay.Store(relay)
	r.SetPeer(req.Peer, req.Kick)
	return r, nil
}

// authorizeRead is Authorize, except that a relay's cluster key
// (HubConfig.RelayKey) lets the peer in as a relay.
func (h *Hub) authorizeRead(ctx context.Context, path string, req ReadRequest) (bool, error) {
	if err := h.AuthGate(req.Peer); err != nil {
		return false, err
	}
	relay, err := h.checkRelay(path, req.Key)
	if err == nil && relay {
		err = ValidatePath(path)
	}
	if err != nil || relay {
		return relay, h.authOutcome(err, req.Peer)
	}
	return false, h.authOutcome(h.checkRead(ctx, path, req.Key, req.Peer), req.Peer)
}

// ReadTrusted attaches one of streamhub's own readers to path with no
// access check (see the guarded door above).
func (h *Hub) ReadTrusted(ctx context.Context, path string, opts ReadOptions) (*Reader, error) {
	if opts.Wait {
		return h.readWait(ctx, path, opts)
	}
	return h.readWith(path, opts)
}

// PublishRequest is a publisher from the network: who it is and what it
// gave.
type PublishRequest struct {
	// Peer is the protocol, the remote address and the raw query.
	Peer Peer
	// Key is the publish key or stream key the peer gave ("" if none); a
	// stream key may also be the path's last segment.
	Key string
	// Kick, if set, ends the peer's connection (Hub.KickPublisher).
	Kick func()
	// OnKeyframeRequest is PublishOptions'.
	OnKeyframeRequest func()
}

// Publish authorizes a publisher from the network and holds path for it
// until its tracks are known: the stream registry maps a stream key to the
// stream's public path (Claim.Path, for the logs: a key is never logged),
// the path's key is checked, then the auth hook decides, once. A refusal
// comes after the refusal delay and spends one of the address's failures;
// a busy path is ErrPathBusy, a rung of a live ladder ErrRungPath. On a
// path with standby on (paths.*.standby), a publisher on a busy path is
// held as a standby instead (Claim.Standby; role=main or role=backup in
// req.Peer.Query says which it is, ErrBadRole for another value). The
// caller ends the claim with Claim.Publish or Claim.Release.
func (h *Hub) Publish(ctx context.Context, path string, req PublishRequest) (*Claim, error) {
	role, err := roleFromQuery(req.Peer.Query)
	if err != nil {
		return nil, err
	}
	p, k, err := h.resolvePublishFrom(ctx, path, req.Key, req.Peer)
	if err != nil {
		return nil, err
	}
	release, err := h.acquire(ctx, p) // the cluster's live map: one publisher per path across origins (a standby on this node adds to this node's lease)
	if err != nil {
		return nil, err
	}
	c, err := h.claim(p, PublishOptions{Key: k, Protocol: req.Peer.Protocol, Remote: req.Peer.Remote, OnKick: req.Kick,
		OnKeyframeRequest: req.OnKeyframeRequest, Role: role})
	if err != nil {
		release()
		return nil, err
	}
	c.release = release
	return c, nil
}
