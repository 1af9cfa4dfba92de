package server

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamhub/streamhub/gopcache"
	"github.com/streamhub/streamhub/media"
)

// Publisher feeds one stream. Its methods are safe to call from one
// goroutine at a time (the publishing connection's).
//
// A publisher is live (its units go to the stream) or, on a path with
// standby on, waiting as a standby (standby.go): its units go to a GOP
// buffer of its own until it takes over. The connection does not know
// which: Write is the same call.
type Publisher struct {
	s     *Stream
	opts  PublishOptions
	id    uint64 // for the session list
	since time.Time
	link  atomic.Pointer[func() LinkStats]

	// waiting is true while the publisher is a standby; it changes under
	// s.mu and mu (both held), so either lock is enough to read it stable.
	waiting atomic.Bool
	// closed is set by Close: Writes are ignored from then on.
	closed atomic.Bool
	// unitsIn counts the units this publisher wrote, live or waiting.
	unitsIn atomic.Uint64
	// hasVideo is set when the publisher is made (a track's kind never
	// changes).
	hasVideo bool

	// mu guards buf and tracks (and the waiting flag's transitions, with
	// s.mu). Lock order: Stream.mu, then Publisher.mu.
	mu     sync.Mutex
	buf    *gopcache.Cache // a standby's latest GOP; nil while live
	tracks []*media.Track  // this publisher's tracks, kept for a takeover
	// session is the Track.Session of this publisher's tracks, given when
	// it was made (live or standby) and kept when it goes live again.
	session uint64
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

// Standby reports whether the publisher waits as a standby now (its units
// are kept, not published).
func (p *Publisher) Standby() bool { return p.waiting.Load() }

// Write hands u to the hub; the hub owns u from then on and the caller must
// not read or modify it or its payload (a standby's unit is retimed by a
// takeover on another goroutine: keep what you need before the call). Write never blocks on readers and allocates
// nothing per reader. It moves u's timestamps onto the stream timeline (they
// continue after the previous publisher's on a republish) and fills u.Size.
// A standby's units are kept as its latest GOP instead. After Close, Write
// does nothing.
func (p *Publisher) Write(u *media.Unit) {
	if p.waiting.Load() && p.s.writeStandby(p, u) {
		return
	}
	p.s.write(p, u)
}

// UpdateTrack replaces the track with t.ID by t (a new generation after a
// parameter change), so that readers who join later see it in Tracks. Units
// written afterwards should point at t.
func (p *Publisher) UpdateTrack(t *media.Track) { p.s.updateTrack(p, t) }

// Close ends the publisher. A standby waiting on the path takes over at
// once (paths.*.standby); otherwise readers stay attached for the path's
// grace period and continue if a new publisher comes, or the stream ends.
// Close may be called more than once.
func (p *Publisher) Close() {
	p.s.detachPublisher(p)
	if p.release != nil && p.released.CompareAndSwap(false, true) {
		p.release()
	}
}
