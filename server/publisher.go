package server

import (
	"sync/atomic"
	"time"

	"github.com/streamhub/streamhub/media"
)

// Publisher feeds one stream. Its methods are safe to call from one
// goroutine at a time (the publishing connection's).
type Publisher struct {
	s     *Stream
	opts  PublishOptions
	id    uint64 // for the session list
	since time.Time
	link  atomic.Pointer[func() LinkStats]
	// release gives the path back to HubConfig.PublishGuard (nil if it
	// was not asked); released makes that happen once.
	release  func()
	released atomic.Bool
}

// SetLinkStats gives the session list and the metrics the transport's own
// figures of this publisher (SRT: round trip, losses, retransmissions).
func (p *Publisher) SetLinkStats(f func() LinkStats) { p.link.Store(&f) }

// Stream returns the stream this publisher feeds.
func (p *Publisher) Stream() *Stream { return p.s }

// Write hands u to the hub; the hub owns u from then on and the caller must
// not modify it or its payload. Write never blocks on readers and allocates
// nothing per reader. It moves u's timestamps onto the stream timeline (they
// continue after the previous publisher's on a republish) and fills u.Size.
// After Close, Write does nothing.
func (p *Publisher) Write(u *media.Unit) { p.s.write(p, u) }

// UpdateTrack replaces the track with t.ID by t (a new generation after a
// parameter change), so that readers who join later see it in Tracks. Units
// written afterwards should point at t.
func (p *Publisher) UpdateTrack(t *media.Track) { p.s.updateTrack(p, t) }

// Close ends the publisher. Readers stay attached for the path's grace
// period and continue if a new publisher comes; otherwise the stream ends.
// Close may be called more than once.
func (p *Publisher) Close() {
	p.s.detachPublisher(p)
	if p.release != nil && p.released.CompareAndSwap(false, true) {
		p.release()
	}
}
