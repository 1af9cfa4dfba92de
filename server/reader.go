package server

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/streamhub/streamhub/media"
)

// Reader pulls a stream's units in its own goroutine. It starts at the
// cached GOP (join mode cache) or at the next keyframe (join mode live). A
// reader that falls more than readerQueue units behind skips to the next
// keyframe, counting what it skipped; one that has not caught up with live
// for readerLagBound gets ErrReaderTooSlow. Its methods are for one
// goroutine, except Close and Stats.
type Reader struct {
	s      *Stream
	tracks []*media.Track

	pending []*media.Unit // cached GOP copied at join, delivered first
	cursor  uint64        // seq of the next ring unit to deliver
	waitKey bool          // skip everything until a video keyframe
	// audioFloor (while floorOn) drops audio older than the reader's first
	// picture: publishers that send audio late (ffmpeg's MPEG-TS muxer packs
	// ~370 ms per PES) would otherwise hand a joining player audio from
	// before its first frame, and players that sync tracks by time (RTCP
	// sender reports) then move the audio back.
	audioFloor time.Duration
	floorOn    bool
	caughtUp   time.Time   // when cursor last reached head
	err        error       // sticky end
	lastOut    time.Time   // when NextBatch last returned units
	pace       *time.Timer // waits out the batch interval

	closed          atomic.Bool
	unitsOut, drops atomic.Uint64
	overruns        atomic.Uint64

	// id, since, peer and bytesOut are for the session list (session.go).
	id       uint64
	since    time.Time
	peer     atomic.Pointer[readerPeer]
	bytesOut atomic.Uint64
	link     atomic.Pointer[func() LinkStats]
	relay    atomic.Bool // an edge of the cluster reading for its viewers (Hub.Read)
}

// Tracks returns the stream's tracks at the time the reader joined. Units
// may later point at newer tracks (parameter change, republish).
func (r *Reader) Tracks() []*media.Track { return r.tracks }

// Stream returns the stream being read.
func (r *Reader) Stream() *Stream { return r.s }

// Next returns the next unit. See NextBatch for the errors.
func (r *Reader) Next(ctx context.Context) (*media.Unit, error) {
	var one [1]*media.Unit
	b, err := r.NextBatch(ctx, one[:0])
	if err != nil {
		return nil, err
	}
	return b[0], nil
}

// NextBatch appends to dst every unit available now, at least one and at
// most cap(dst)-len(dst) (at least one if dst is full), waiting until one is
// available. It returns ErrStreamClosed once the stream has ended and all
// before the end was delivered, ErrReaderTooSlow, ErrReaderClosed, or
// ctx.Err(). The units are shared: the caller must not modify them.
func (r *Reader) NextBatch(ctx context.Context, dst []*media.Unit) ([]*media.Unit, error) {
	room := max(cap(dst)-len(dst), 1)
	n0 := len(dst)
	if r.closed.Load() {
		return dst, ErrReaderClosed
	}
	if len(r.pending) > 0 {
		return r.takePending(dst, room), nil
	}
	s := r.s
	if iv := s.conf.BatchInterval; iv > 0 && !r.lastOut.IsZero() && s.readerCount.Load() >= int64(s.conf.BatchReaders) {
		if err := r.waitPace(ctx, iv-time.Since(r.lastOut)); err != nil {
			return dst, err
		}
	}
	for {
		var wake <-chan struct{}
		var err error
		if dst, wake, err = r.poll(dst, n0, room); err != nil || wake == nil {
			return dst, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return dst, ctx.Err()
		}
	}
}

// TryNextBatch is NextBatch without waiting and without the batch
// interval's pacing (a caller that serves many readers in one pass paces
// them itself, see Stream.BatchPace): it appends the units available now,
// at most cap(dst)-len(dst) (at least one). When there are none it returns
// dst unchanged with a channel that is closed when the stream has more
// (or ends); wake is nil when it returned units or an error.
func (r *Reader) TryNextBatch(dst []*media.Unit) (out []*media.Unit, wake <-chan struct{}, err error) {
	room := max(cap(dst)-len(dst), 1)
	if r.closed.Load() {
		return dst, nil, ErrReaderClosed
	}
	if len(r.pending) > 0 {
		return r.takePending(dst, room), nil, nil
	}
	return r.poll(dst, len(dst), room)
}

// takePending appends up to room units of the join plan not yet delivered.
func (r *Reader) takePending(dst []*media.Unit, room int) []*media.Unit {
	k := min(room, len(r.pending))
	dst = append(dst, r.pending[:k]...)
	clear(r.pending[:k])
	r.pending = r.pending[k:]
	r.unitsOut.Add(uint64(k))
	return dst
}

// poll appends what the ring has for r (one pass, under the stream's read
// lock). With nothing to give it marks the stream as having a waiter and
// returns the channel to wait on.
func (r *Reader) poll(dst []*media.Unit, n0, room int) ([]*media.Unit, <-chan struct{}, error) {
	if r.closed.Load() {
		return dst, nil, ErrReaderClosed
	}
	if r.err != nil {
		return dst, nil, r.err
	}
	s := r.s
	now := time.Now()
	s.mu.RLock()
	var oldest uint64
	if s.head > uint64(len(s.ring)) {
		oldest = s.head - uint64(len(s.ring))
	}
	if r.cursor < oldest { // overrun: the ring wrapped past this reader
		r.drops.Add(oldest - r.cursor)
		s.dropsTotal.Add(oldest - r.cursor)
		r.overruns.Add(1)
		r.cursor = oldest
		r.waitKey = s.hasVideo
		if now.Sub(r.caughtUp) > s.conf.ReaderLagBound {
			s.mu.RUnlock()
			r.err = ErrReaderTooSlow
			return dst, nil, r.err
		}
	}
	if r.waitKey && !s.hasVideo {
		r.waitKey = false // republished without video: no keyframe will come
	}
	for r.cursor < s.head && len(dst)-n0 < room {
		u := s.ring[r.cursor&s.mask]
		r.cursor++
		if r.waitKey {
			// Audio waits too: a player starts at its earliest unit,
			// so audio ahead of the picture would add up to a GOP of delay.
			if !u.Track.IsVideo() || !u.KeyFrame {
				r.drops.Add(1)
				s.dropsTotal.Add(1)
				continue
			}
			r.waitKey = false
			r.audioFloor, r.floorOn = u.DTS, true
		}
		if r.floorOn && !u.Track.IsVideo() {
			if u.DTS < r.audioFloor {
				continue
			}
			r.floorOn = false
		}
		dst = append(dst, u)
	}
	if r.cursor == s.head {
		r.caughtUp = now
	}
	if len(dst) > n0 {
		s.mu.RUnlock()
		r.unitsOut.Add(uint64(len(dst) - n0))
		r.lastOut = now
		return dst, nil, nil
	}
	if s.ended {
		s.mu.RUnlock()
		r.err = ErrStreamClosed
		return dst, nil, r.err
	}
	s.waiting.Store(true)
	wake := s.wake
	s.mu.RUnlock()
	return dst, wake, nil
}

// waitPace waits d (if positive) or until ctx is done.
func (r *Reader) waitPace(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	if r.pace == nil {
		r.pace = time.NewTimer(d)
	} else {
		r.pace.Reset(d)
	}
	select {
	case <-r.pace.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ReaderStats are a reader's figures.
type ReaderStats struct {
	UnitsOut uint64 // units delivered
	Drops    uint64 // units skipped because the reader fell behind
	Overruns uint64 // times it fell more than readerQueue behind
}

// Stats returns the reader's figures. Safe from any goroutine.
func (r *Reader) Stats() ReaderStats {
	return ReaderStats{UnitsOut: r.unitsOut.Load(), Drops: r.drops.Load(), Overruns: r.overruns.Load()}
}

// Close detaches the reader. A NextBatch already waiting returns when its
// ctx is done or the next unit arrives; cancel that ctx to stop it at once.
// Close may be called more than once and from any goroutine.
func (r *Reader) Close() {
	if r.closed.CompareAndSwap(false, true) {
		r.s.removeReader(r)
	}
}
