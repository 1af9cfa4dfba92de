package server

// Locks of the hub, what each guards, and who takes it:
//
//	lock               guards                                   taken by
//	Hub.mu             streams, published, closed               Publish, Read, detach, grace expiry (first)
//	Stream.mu (RW)     tracks, publisher, cache, ring, head,    Write, attach/detach (exclusive, O(1) work);
//	                   wake, grace, offsets, timeline fields    readers copying from the ring, Tracks, Stats,
//	                                                            Sessions (shared, O(1) work)
//	Stream.readersMu   readers (the set)                        addReader (after mu), removeReader, Stats,
//	                                                            Sessions, KickSession: never by Write
//	Publisher.mu       a standby's GOP buffer, its tracks       a standby's Write (alone), takeover, failback,
//	                                                            Stats (after Stream.mu)
//	atomics            counters (units, bytes, drops, readers,  anyone, lock-free
//	                   publishes, key interval), waiting
//
// Lock order: Hub.mu, then Stream.mu, then Stream.readersMu; Stream.mu, then
// Publisher.mu (standby.go). Nothing that
// only reads takes Stream.mu exclusively, and nothing walks the readers
// under it, so a scrape or an API listing never stalls Publisher.Write for
// work proportional to the number of readers. A transport's link figures
// (SetLinkStats) are read with no hub lock held: a publisher's transport
// may hold its own lock around Write, and take it again to count.

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamhub/streamhub/gopcache"
	"github.com/streamhub/streamhub/media"
)

// republishGap separates the last unit of a publisher from the first unit of
// the next one on the stream's timeline, so readers never see time go back.
const republishGap = 40 * time.Millisecond

// audioWakeInterval bounds how long audio units wait for a video unit to
// wake the readers (see write).
const audioWakeInterval = 50 * time.Millisecond

// Stream is one live path: at most one live publisher, the standbys waiting
// to take over (standby.go), and any number of readers.
type Stream struct {
	hub  *Hub
	path string
	conf PathConfig

	// mu guards every field below it up to waiting. Write holds it for a
	// few pointer stores; nothing under it allocates per reader or touches
	// a socket. Readers take it shared (RLock) to copy units out of the
	// ring; whatever only reads (Tracks, Stats) takes it shared and does
	// O(1) work under it, so a scrape never holds Write up.
	mu        sync.RWMutex
	tracks    []*media.Track
	hasVideo  bool
	publisher *Publisher
	claim     *Claim       // a publisher accepted, its tracks not known yet (claim.go)
	standbys  []*Publisher // publishers waiting to take over, in arrival order (standby.go)
	cache     *gopcache.Cache
	ring      []*media.Unit // len is a power of two; unit seq n lives at ring[n&mask]
	mask      uint64
	head      uint64        // seq of the next unit written
	wake      chan struct{} // closed (and replaced) to wake the waiting readers
	lastWake  time.Time     // when wake was last closed
	ended     bool
	grace     *time.Timer
	graceGen  uint64          // counts grace periods; a timer acts only for its own
	offset    time.Duration   // added to the current publisher's timestamps
	newPub    bool            // the next Write sets offset
	needKey   bool            // drop video until a keyframe (a republish that starts mid-GOP)
	lastDTS   time.Duration   // highest DTS written, on the stream timeline
	trackDTS  []time.Duration // last DTS written per track ID
	lastKey   time.Duration   // DTS of the last video keyframe (with keySeen)
	keySeen   bool
	started   time.Time
	derived   bool // the stream is a ladder rung (PublishOptions.Derived)
	// sessionSeq numbers the stream's publishers, live or standby
	// (Track.Session; numberLocked).
	sessionSeq uint64

	// readersMu guards readers, the set the session listings, Stats and
	// the reader cap walk. Write never takes it, so a walk over thousands
	// of readers never stalls the publisher. Lock order: mu, then readersMu.
	readersMu sync.Mutex
	readers   map[*Reader]struct{}

	// joins keeps the last join plan (join.go).
	joins joinMemo

	// waiting is set by a reader (under RLock) that found nothing to read and
	// is about to wait on wake; Write (under Lock) clears it when it wakes them.
	waiting atomic.Bool

	// readerCount is len(readers), for readers to read without the lock.
	readerCount atomic.Int64
	// keyInterval is the time between the last two video keyframes.
	keyInterval atomic.Int64

	unitsIn, bytesIn atomic.Uint64
	publishes        atomic.Uint64
	// lastIn is when the live publisher last wrote (unix ns), for a
	// standby to see that it stalled (PathConfig.StandbyTimeout).
	lastIn atomic.Int64
	// takeovers counts the standbys that took over from a publisher that
	// left; failbacks the main publishers that took the path back.
	takeovers, failbacks atomic.Uint64
	// dropsTotal counts the units every reader of the stream ever skipped;
	// bytesOut the bytes written to them (Reader.AddBytesOut).
	dropsTotal, bytesOut atomic.Uint64
}

func newStream(h *Hub, path string, pc PathConfig) *Stream {
	size := uint64(1) << bits.Len64(uint64(max(pc.ReaderQueue, 2)-1)) // next power of two
	return &Stream{
		hub:     h,
		path:    path,
		conf:    pc,
		ring:    make([]*media.Unit, size),
		mask:    size - 1,
		wake:    make(chan struct{}),
		readers: map[*Reader]struct{}{},
		started: time.Now(),
	}
}

// Path returns the stream's path.
func (s *Stream) Path() string { return s.path }

// KeyframeInterval returns the time between the last two video keyframes
// (the GOP length), 0 before the second one.
func (s *Stream) KeyframeInterval() time.Duration { return time.Duration(s.keyInterval.Load()) }

// ReaderCount returns how many readers the stream has now.
func (s *Stream) ReaderCount() int { return int(s.readerCount.Load()) }

// BatchPace is how long readers of s may be left between deliveries: the
// path's batchInterval once s has batchReaders readers, else 0 (a reader
// wakes for every picture). NextBatch paces itself by it; a caller that
// serves many readers in one pass (TryNextBatch) paces the pass.
func (s *Stream) BatchPace() time.Duration {
	if iv := s.conf.BatchInterval; iv > 0 && s.readerCount.Load() >= int64(s.conf.BatchReaders) {
		return iv
	}
	return 0
}

// Derived reports whether the stream is made by streamhub from another (a
// ladder rung).
func (s *Stream) Derived() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.derived
}

// Publishing reports whether the stream has a publisher now (false in the
// grace period).
func (s *Stream) Publishing() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.publisher != nil
}

// RequestKeyframe asks the publisher for a keyframe, if it can be asked
// (PublishOptions.OnKeyframeRequest), and reports whether it could. Safe
// from any goroutine; it does not block.
func (s *Stream) RequestKeyframe() bool {
	s.mu.RLock()
	var f func()
	if s.publisher != nil {
		f = s.publisher.opts.OnKeyframeRequest
	}
	s.mu.RUnlock()
	if f == nil {
		return false
	}
	f()
	return true
}

// Config returns the path settings the stream was created with.
func (s *Stream) Config() PathConfig { return s.conf }

// Tracks returns the current tracks.
func (s *Stream) Tracks() []*media.Track {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]*media.Track(nil), s.tracks...)
}

// StreamStats are a stream's figures.
type StreamStats struct {
	Path       string
	Publishing bool
	Publisher  string // protocol and remote address, "" in the grace period
	Readers    int
	UnitsIn    uint64
	BytesIn    uint64
	Publishes  uint64 // how many publishers the stream has had
	CachedGOP  int    // units in the GOP cache
	Uptime     time.Duration
	// Drops counts the units the current readers skipped (slow readers);
	// DropsTotal those of every reader the stream has had.
	Drops, DropsTotal uint64
	// Derived is true for a ladder rung.
	Derived bool
	// Relays counts the readers that are edges of the cluster (counted in
	// Readers too, never in ReadersByProtocol).
	Relays int
	// ReadersByProtocol counts the readers that said who they are
	// (Reader.SetPeer), relays aside; BytesOut the bytes written to readers.
	ReadersByProtocol map[string]int
	BytesOut          uint64
	// Link sums the transport's own figures (LinkStats) over the
	// publisher and readers that have them (SRT), with the largest RTT.
	Link LinkStats
	// PublisherRole is the live publisher's role (RoleMain, RoleBackup),
	// Standbys the publishers waiting to take over (paths.*.standby).
	PublisherRole string
	Standbys      []StandbyStats
	// Takeovers counts the standbys that took over from a publisher that
	// left, Failbacks the main publishers that took the path back.
	Takeovers, Failbacks uint64
}

// Stats returns the stream's figures. It holds Write up for O(1) work
// only: the per-reader figures are summed under readersMu.
func (s *Stream) Stats() StreamStats {
	s.mu.RLock()
	st := StreamStats{
		Path: s.path, UnitsIn: s.unitsIn.Load(), BytesIn: s.bytesIn.Load(),
		Publishes: s.publishes.Load(), CachedGOP: s.cache.Len(), Uptime: time.Since(s.started),
		Derived: s.derived, DropsTotal: s.dropsTotal.Load(), BytesOut: s.bytesOut.Load(),
	}
	var links []func() LinkStats // called once the locks are released (linkFunc)
	if s.publisher != nil {
		st.Publishing = true
		st.Publisher = s.publisher.opts.Protocol + " " + s.publisher.opts.Remote
		st.PublisherRole = s.publisher.opts.Role
		links = append(links, linkFunc(&s.publisher.link))
	}
	st.Standbys = s.standbyStatsLocked()
	st.Takeovers, st.Failbacks = s.takeovers.Load(), s.failbacks.Load()
	s.mu.RUnlock()
	s.readersMu.Lock()
	st.Readers = len(s.readers)
	for r := range s.readers {
		st.Drops += r.drops.Load()
		if r.relay.Load() {
			st.Relays++
		}
		links = append(links, linkFunc(&r.link))
	}
	st.ReadersByProtocol = s.readersByProtocolLocked()
	s.readersMu.Unlock()
	for _, f := range links {
		if f != nil {
			l := f()
			st.Link.RTTMs = max(st.Link.RTTMs, l.RTTMs)
			st.Link.LostPackets += l.LostPackets
			st.Link.Retransmitted += l.Retransmitted
			st.Link.Dropped += l.Dropped
		}
	}
	return st
}

// attachPublisher is called with h.mu held. A standby claim on a path
// that has a publisher adds a waiting publisher (standby.go).
func (s *Stream) attachPublisher(tracks []*media.Track, opts PublishOptions, claim *Claim) (*Publisher, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	busy := (s.claim != nil && s.claim != claim) || s.publisher != nil
	if claim != nil && claim.standby && (busy || claim.elsewhere) && !(opts.Derived && s.derived) {
		p, err := s.addStandbyLocked(tracks, opts)
		if err == nil {
			p.release = claim.release
		}
		return p, err
	}
	if busy && (!opts.Derived || !s.derived) {
		return nil, ErrPathBusy
	}
	s.claim = nil
	// A restarted ladder takes its rung over from the process that is
	// still stopping; that one's Writes and Close are ignored from now.
	s.publisher = nil
	p := &Publisher{s: s, opts: opts, id: sessionIDs.Add(1), since: time.Now(), tracks: append([]*media.Track(nil), tracks...)}
	if claim != nil {
		// Set before anyone can see p: a kick may Close it at once.
		p.release = claim.release
	}
	s.numberLocked(p)
	s.goLiveLocked(p)
	return p, nil
}

// numberLocked gives a new publisher's tracks their Track.Session (a
// number per publisher of the stream, in arrival order), in the
// publisher's own goroutine: the tracks are its, and its ingest copies
// them into new generations (UpdateTrack), so nobody else may write them
// once it runs. s.mu must be held.
func (s *Stream) numberLocked(p *Publisher) {
	s.sessionSeq++
	p.session = s.sessionSeq
	for _, t := range p.tracks {
		t.Session = p.session
	}
}

// goLiveLocked makes p the stream's publisher with its tracks: a new
// publisher, or a standby taking over. s.mu must be held.
func (s *Stream) goLiveLocked(p *Publisher) {
	if s.grace != nil {
		s.grace.Stop() // a callback already waiting for the lock sees graceGen moved on
		s.grace = nil
		s.graceGen++
	}
	tracks := p.tracks
	hasVideo := false
	for _, t := range tracks {
		hasVideo = hasVideo || t.IsVideo()
	}
	p.hasVideo = hasVideo
	s.tracks = append([]*media.Track(nil), tracks...)
	s.hasVideo = hasVideo
	if s.cache == nil {
		s.cache = gopcache.New(s.conf.GOPCache.Limits(), hasVideo)
	} else {
		s.cache.Reset(hasVideo) // a new publisher's readers start at its own keyframe
		s.newPub = !p.opts.Derived
		// Readers that stay attached across the republish read on from the
		// ring: they must not get the new source's video before its first
		// keyframe (it refers to pictures they never had).
		s.needKey = hasVideo
	}
	s.publishes.Add(1)
	s.publisher = p
	s.derived = p.opts.Derived
	s.lastIn.Store(time.Now().UnixNano())
}

// write is Publisher.Write.
func (s *Stream) write(p *Publisher, u *media.Unit) {
	u.Size = u.PayloadSize()
	if u.Wall.IsZero() {
		u.Wall = time.Now()
	}
	s.mu.Lock()
	if s.publisher != p {
		s.mu.Unlock()
		return
	}
	s.writeLocked(p, u)
	s.mu.Unlock()
}

// writeLocked is write with s.mu held and p the stream's publisher.
func (s *Stream) writeLocked(p *Publisher, u *media.Unit) {
	s.lastIn.Store(u.Wall.UnixNano())
	p.unitsIn.Add(1)
	s.unitsIn.Add(1)
	s.bytesIn.Add(uint64(u.Size))
	if s.newPub {
		s.newPub = false
		s.offset = s.lastDTS + republishGap - u.DTS
	}
	if s.needKey && u.Track.IsVideo() {
		if !u.KeyFrame {
			return
		}
		s.needKey = false
	}
	// A track must not go back in time, also when the new publisher's
	// tracks start further apart than republishGap: raise the offset (it
	// only grows, so the other tracks stay monotonic too).
	if id := u.Track.ID; id >= 0 && id < 64 {
		if id >= len(s.trackDTS) {
			s.trackDTS = append(s.trackDTS, make([]time.Duration, id+1-len(s.trackDTS))...)
		}
		if last := s.trackDTS[id]; s.publishes.Load() > 1 && u.DTS+s.offset < last {
			s.offset = last - u.DTS
		}
	}
	u.PTS += s.offset
	u.DTS += s.offset
	s.lastDTS = max(s.lastDTS, u.DTS)
	if id := u.Track.ID; id >= 0 && id < len(s.trackDTS) {
		s.trackDTS[id] = u.DTS
	}
	if u.KeyFrame && u.Track.IsVideo() {
		if s.keySeen && u.DTS > s.lastKey {
			s.keyInterval.Store(int64(u.DTS - s.lastKey))
		}
		s.lastKey, s.keySeen = u.DTS, true
	}
	s.cache.Add(u)
	s.ring[s.head&s.mask] = u
	s.head++
	// Wake readers on video units only: the audio queued meanwhile goes out
	// in the same write as the next picture. A player needs both tracks up
	// to a time to play it, so this saves a write per audio frame per reader
	// without delaying playback. Audio-only streams, and audio while the
	// video stalls, wake at least every audioWakeInterval.
	if s.waiting.Load() && (u.Track.IsVideo() || !s.hasVideo || u.Wall.Sub(s.lastWake) >= audioWakeInterval) {
		s.wakeLocked(u.Wall)
	}
}

// updateTrack is Publisher.UpdateTrack.
func (s *Stream) updateTrack(p *Publisher, t *media.Track) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.publisher == p && t.ID >= 0 && t.ID < len(s.tracks) {
		s.tracks[t.ID] = t
	}
	p.mu.Lock()
	if t.ID >= 0 && t.ID < len(p.tracks) {
		p.tracks[t.ID] = t // kept for a takeover (standby.go)
	}
	p.mu.Unlock()
}

// detachPublisher is Publisher.Close.
func (s *Stream) detachPublisher(p *Publisher) {
	// Lock order: hub, then stream (as in Publish). Holding the hub lock while
	// the stream is removed and ended keeps a concurrent Publish on the path
	// from attaching to this stream in between and being ended with it.
	s.hub.mu.Lock()
	s.mu.Lock()
	if s.dropStandbyLocked(p) {
		s.mu.Unlock()
		s.hub.mu.Unlock()
		return
	}
	p.closed.Store(true)
	if s.publisher != p {
		s.mu.Unlock()
		s.hub.mu.Unlock()
		return
	}
	s.publisher = nil
	if next := s.nextStandbyLocked(); next != nil {
		// Hot standby: the stream goes on with the next publisher now, no
		// grace period, no unpublish (standby.go).
		s.takeOverLocked(next)
		s.mu.Unlock()
		s.hub.mu.Unlock()
		s.hub.standbyEvent(StandbyEvent{Path: s.path, Kind: EventTakeover, From: p.describe(), To: next.describe()})
		return
	}
	derived := s.derived
	if f := s.hub.conf.OnUnpublish; f != nil {
		defer f(s.path, derived) // after the unlocks below
	}
	if s.conf.GracePeriod <= 0 || s.readerCount.Load() == 0 {
		if s.hub.streams[s.path] == s {
			delete(s.hub.streams, s.path)
		}
		s.endLocked()
		s.mu.Unlock()
		s.hub.mu.Unlock()
		s.hub.log.Info("stream ended", "path", s.path)
		return
	}
	s.startGraceLocked(s.conf.GracePeriod)
	s.mu.Unlock()
	s.hub.mu.Unlock()
	s.hub.log.Info("stream waiting for a publisher", "path", s.path, "grace", s.conf.GracePeriod)
}

func (s *Stream) graceExpired(gen uint64) {
	// Lock order: hub, then stream (as in Publish).
	s.hub.mu.Lock()
	s.mu.Lock()
	if s.publisher != nil || s.claim != nil || s.ended || s.graceGen != gen {
		s.mu.Unlock()
		s.hub.mu.Unlock()
		return
	}
	if s.hub.streams[s.path] == s {
		delete(s.hub.streams, s.path)
	}
	s.mu.Unlock()
	s.hub.mu.Unlock()
	s.end()
	s.hub.log.Info("stream ended", "path", s.path, "cause", "no publisher within the grace period")
}

// end marks the stream ended and wakes every reader; they get ErrStreamClosed
// after draining what is queued.
func (s *Stream) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked()
}

// endLocked is end with s.mu held.
func (s *Stream) endLocked() {
	if s.ended {
		return
	}
	s.ended = true
	s.publisher = nil
	s.endStandbysLocked()
	if s.grace != nil {
		s.grace.Stop()
	}
	s.wakeLocked(time.Now())
}

// wakeLocked wakes every waiting reader; s.mu must be held for writing.
func (s *Stream) wakeLocked(now time.Time) {
	s.waiting.Store(false)
	close(s.wake)
	s.wake = make(chan struct{})
	s.lastWake = now
}

// addReader is Hub.Read for this stream, with the catch-up window to
// apply (0: none). The join is atomic: under the stream lock (shared: it
// only reads), the reader gets the cached GOP and a cursor at the next
// unit to be written, so there is no gap and no duplicate. The plan is
// made outside the lock, once per cache state (joinMemo).
func (s *Stream) addReader(window, backlog time.Duration) (*Reader, error) {
	now := time.Now()
	s.mu.RLock()
	if s.ended {
		s.mu.RUnlock()
		return nil, ErrStreamNotFound
	}
	s.readersMu.Lock()
	if s.conf.MaxReaders > 0 && len(s.readers) >= s.conf.MaxReaders {
		s.readersMu.Unlock()
		s.mu.RUnlock()
		return nil, ErrTooManyReaders
	}
	r := &Reader{s: s, cursor: s.head, caughtUp: now, tracks: append([]*media.Track(nil), s.tracks...),
		id: sessionIDs.Add(1), since: now}
	s.readers[r] = struct{}{}
	s.readerCount.Store(int64(len(s.readers)))
	s.readersMu.Unlock()
	key := joinKey{head: s.head, publishes: s.publishes.Load(), window: window, backlog: backlog}
	plan, ok := s.joins.lookup(key)
	var gop []*media.Unit
	if !ok && s.conf.Join != JoinLive {
		if backlog > 0 {
			gop = s.cache.AppendBacklog(nil, backlog)
		} else {
			gop = s.cache.AppendTo(nil)
		}
	}
	hasVideo := s.hasVideo
	s.mu.RUnlock()
	if !ok {
		plan = planJoin(gop, hasVideo, s.conf.Join, window, backlog > 0)
		s.joins.store(key, plan)
	}
	// The reader consumes its own copy of the slice; the units are shared.
	r.pending = append([]*media.Unit(nil), plan.units...)
	r.waitKey, r.audioFloor, r.floorOn = plan.waitKey, plan.audioFloor, plan.floorOn
	return r, nil
}

func (s *Stream) removeReader(r *Reader) {
	s.readersMu.Lock()
	delete(s.readers, r)
	s.readerCount.Store(int64(len(s.readers)))
	s.readersMu.Unlock()
}
