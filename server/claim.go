package server

import (
	"time"

	"github.com/streamhub/streamhub/media"
)

// A Claim holds a path for a publisher that was accepted but whose tracks
// are not known yet (an RTMP publisher while its tracks are probed, an
// RTSP one between ANNOUNCE and RECORD). A stream in its grace period stays
// alive for it: the grace ends when the new publisher is accepted, not when
// its tracks are known, so a publisher that reconnects within gracePeriod
// keeps every viewer even if finding its tracks takes a while. Another
// publisher is refused with ErrPathBusy meanwhile, or, on a path with
// standby on, claims it as a standby (standby.go).
type Claim struct {
	h    *Hub
	path string
	pc   PathConfig
	opts PublishOptions
	s    *Stream // the stream held, nil if there was none (or a standby claim)
	// standby: the publisher will wait behind the live one; elsewhere:
	// because the path is live on another node (HubConfig.LiveElsewhere).
	standby, elsewhere bool
	// release gives the path back to HubConfig.PublishGuard; the
	// publisher takes it over at Publish.
	release func()
}

// claim checks path and opts.Key and holds the path (see Claim). The
// caller must end the claim with Publish or Release.
func (h *Hub) claim(path string, opts PublishOptions) (*Claim, error) {
	return h.claimVouched(path, opts, false)
}

// claimVouched is claim for a publisher whose credentials the protocol
// verified for path (PublishRequest.Vouched): no key is asked.
func (h *Hub) claimVouched(path string, opts PublishOptions, vouched bool) (*Claim, error) {
	path, key, pc, err := h.checkPublisher(path, opts.Key, opts.Derived || opts.Pulled || vouched)
	if err != nil {
		return nil, err
	}
	opts.Key = key
	c := &Claim{h: h, path: path, pc: pc, opts: opts}
	if c.opts.Role == "" {
		c.opts.Role = RoleMain // live on a free path, unless it said otherwise
	}
	// Asked before the locks: the cluster's answer may take a round trip.
	elsewhere := pc.Standby != StandbyOff && !opts.Derived && h.conf.LiveElsewhere != nil && h.conf.LiveElsewhere(path)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.mayAttachLocked(c); err != nil {
		return nil, err
	}
	s := h.streams[path]
	if s == nil {
		if elsewhere {
			c.standby, c.elsewhere = true, true
			c.opts.Role = standbyRole(opts.Role, "")
		}
		return c, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.publisher != nil || s.claim != nil || elsewhere {
		if !(opts.Derived && s.derived) {
			role, ok := s.standbyClaimLocked(opts)
			if !ok {
				return nil, ErrPathBusy
			}
			c.standby, c.elsewhere, c.opts.Role = true, elsewhere, role
			h.log.Info("stream standby publisher accepted", "path", path, "protocol", opts.Protocol, "remote", opts.Remote, "role", role)
			return c, nil // it holds nothing: the live publisher goes on
		}
	}
	s.claim, c.s = c, s
	if s.grace != nil {
		s.grace.Stop() // a callback already waiting for the lock sees graceGen moved on
		s.grace = nil
		s.graceGen++
		h.log.Info("stream publisher accepted within the grace period", "path", path, "protocol", opts.Protocol, "remote", opts.Remote)
	}
	return c, nil
}

// SetKick sets how Hub.KickPublisher ends the publisher's connection, when
// that is known only after the claim (PublishOptions.OnKick).
func (c *Claim) SetKick(f func()) { c.opts.OnKick = f }

// Path returns the path claimed (a stream key given as the path's last
// segment resolved to the stream's public path).
func (c *Claim) Path() string { return c.path }

// Standby reports whether the publisher will wait as a standby behind the
// path's live publisher (paths.*.standby) when it publishes.
func (c *Claim) Standby() bool { return c.standby }

// Publish attaches the publisher with its tracks, as Hub.Publish does, and
// ends the claim.
func (c *Claim) Publish(tracks []*media.Track) (*Publisher, error) {
	if len(tracks) == 0 {
		c.Release()
		return nil, ErrNoTracks
	}
	p, err := c.h.attachClaimed(c, tracks)
	if err != nil {
		c.Release()
		return nil, err
	}
	c.release = nil // the publisher has it (attachPublisher)
	return p, nil
}

// Release gives up a claim that will not publish (its tracks could not be
// read, the connection ended): a stream it held waits for a publisher for
// gracePeriod again, or ends when nobody reads it. Release after Publish
// does nothing.
func (c *Claim) Release() {
	if c.release != nil {
		c.release()
		c.release = nil
	}
	s := c.s
	if s == nil {
		return
	}
	h := s.hub
	h.mu.Lock()
	s.mu.Lock()
	if s.claim != c {
		s.mu.Unlock()
		h.mu.Unlock()
		return
	}
	s.claim = nil
	if s.publisher != nil || s.ended {
		s.mu.Unlock()
		h.mu.Unlock()
		return
	}
	if s.conf.GracePeriod <= 0 || s.readerCount.Load() == 0 {
		if h.streams[s.path] == s {
			delete(h.streams, s.path)
		}
		s.endLocked()
		s.mu.Unlock()
		h.mu.Unlock()
		h.log.Info("stream ended", "path", s.path, "cause", "the publisher that took it over left before publishing")
		return
	}
	s.startGraceLocked(s.conf.GracePeriod)
	s.mu.Unlock()
	h.mu.Unlock()
}

// startGraceLocked starts a grace period of d; s.mu must be held.
func (s *Stream) startGraceLocked(d time.Duration) {
	s.graceGen++
	gen := s.graceGen
	s.grace = time.AfterFunc(d, func() { s.graceExpired(gen) })
}
