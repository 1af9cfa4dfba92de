package server

// Hot standby (paths.*.standby): a path may take more than one publisher
// with the same key. One is live; the others wait, connected, and their
// units are kept only as their latest GOP (a gopcache of their own), so a
// standby that takes over starts with a keyframe at once:
//
//	live publisher ──Write──▶ Stream (ring, cache) ──▶ readers
//	standby ─────────Write──▶ its own latest GOP ──(takeover: flushed)──┘
//
// When the live publisher leaves (Publisher.Close: its connection ended or
// it was kicked), or sent nothing for paths.*.standbyTimeout while a
// standby sends (then it waits as a standby itself), the first standby (one with a keyframe cached first)
// becomes the publisher in the same call, under the stream lock: no grace
// period, no unpublish, its GOP is written into the stream at once. The
// readers stay attached and go on through the republish path: timestamps
// offset onto the stream's timeline, new sequence headers.
//
// Roles: a publisher is the main one or a backup. It says which with
// role=main or role=backup in its URL query (RTMP ?role=, RTSP and WHIP
// URL query, SRT publish:PATH?role= or #!::...,role=); without one, the
// first to arrive is the main and a publisher arriving while a main is live
// is a backup, but one arriving while a backup is live is the main coming
// back. With standby: failback, the main coming back takes the path back at
// its next keyframe (the backup goes back to waiting); with takeover, it
// waits.
//
// Lock order: Hub.mu, Stream.mu, Publisher.mu. A standby's Write takes only
// its own Publisher.mu (the live publisher's Writes never wait for it),
// except at a keyframe of a main that may fail back, which takes Stream.mu.

import (
	"errors"
	"net/url"
	"slices"
	"time"

	"github.com/streamhub/streamhub/gopcache"
	"github.com/streamhub/streamhub/media"
)

// Standby modes (PathConfig.Standby).
const (
	// StandbyOff refuses a second publisher on a live path (ErrPathBusy).
	StandbyOff = "off"
	// StandbyTakeover keeps a second publisher waiting; it takes over when
	// the live one leaves and keeps the path when the main one comes back.
	StandbyTakeover = "takeover"
	// StandbyFailback is StandbyTakeover, and the main publisher coming
	// back takes the path back at its next keyframe.
	StandbyFailback = "failback"
)

// Publisher roles (PublishOptions.Role), given as role= in the URL query.
const (
	RoleMain   = "main"
	RoleBackup = "backup"
)

// Kinds of StandbyEvent.
const (
	// EventTakeover: the live publisher left and a standby took over.
	EventTakeover = "takeover"
	// EventFailback: the main publisher took the path back from a backup.
	EventFailback = "failback"
	// EventPromote: Hub.Promote made a standby live.
	EventPromote = "promote"
)

// maxStandbys bounds the publishers waiting on one path.
const maxStandbys = 4

// ErrBadRole is returned by Hub.Publish for a role= that is neither main
// nor backup.
var ErrBadRole = errors.New("server: role must be main or backup (?role=backup marks a backup publisher)")

// ErrNoStandby is returned by Hub.Promote when the path has no standby.
var ErrNoStandby = errors.New("server: no standby publisher waits on this path (paths.*.standby)")

// StandbyEvent tells HubConfig.OnStandby that a path changed publisher
// without the stream ending. From and To are "protocol remote".
type StandbyEvent struct {
	Path     string
	Kind     string // EventTakeover, EventFailback or EventPromote
	From, To string
	// Stalled is set on a takeover from a publisher still connected but
	// silent for paths.*.standbyTimeout (it waits as a standby now).
	Stalled bool
}

// StandbyStats describe a publisher waiting on a path.
type StandbyStats struct {
	Protocol string    `json:"protocol"`
	Remote   string    `json:"remote"`
	Role     string    `json:"role"`
	Since    time.Time `json:"since"`
	// UnitsIn counts the units it sent; CachedUnits those it keeps (its
	// latest GOP: 0 means it would start at its next keyframe).
	UnitsIn     uint64 `json:"unitsIn"`
	CachedUnits int    `json:"cachedUnits"`
}

// roleFromQuery returns the role asked in a URL query ("" if none).
func roleFromQuery(q string) (string, error) {
	if q == "" {
		return "", nil
	}
	v, err := url.ParseQuery(q)
	if err != nil {
		return "", nil // a query the protocol accepted; no role in it
	}
	switch r := v.Get("role"); r {
	case "", RoleMain, RoleBackup:
		return r, nil
	default:
		return "", ErrBadRole
	}
}

// standbyRole is the role of a publisher that asked for asked ("" if it
// did not say) and waits behind a live publisher of role live ("" if none
// is known): not saying, it is the main coming back when a backup is live,
// a backup otherwise.
func standbyRole(asked, live string) string {
	switch {
	case asked != "":
		return asked
	case live == RoleBackup:
		return RoleMain
	default:
		return RoleBackup
	}
}

// describe is "protocol remote", for logs and events.
func (p *Publisher) describe() string { return p.opts.Protocol + " " + p.opts.Remote }

// standbyLimits bound a standby's buffer: one GOP, no backlog.
func standbyLimits(pc PathConfig) gopcache.Limits {
	l := pc.GOPCache.Limits()
	l.Backlog = 0
	return l
}

// standbyClaimLocked reports whether a publisher with opts may wait on s
// as a standby, and its role; s.mu must be held.
func (s *Stream) standbyClaimLocked(opts PublishOptions) (string, bool) {
	if s.conf.Standby == StandbyOff || opts.Derived || s.derived || s.ended || len(s.standbys) >= maxStandbys {
		return "", false
	}
	live := ""
	switch {
	case s.publisher != nil:
		live = s.publisher.opts.Role
	case s.claim != nil:
		live = s.claim.opts.Role
	}
	return standbyRole(opts.Role, live), true
}

// addStandbyLocked adds a waiting publisher; s.mu must be held.
func (s *Stream) addStandbyLocked(tracks []*media.Track, opts PublishOptions) (*Publisher, error) {
	if s.conf.Standby == StandbyOff || s.ended || len(s.standbys) >= maxStandbys {
		return nil, ErrPathBusy
	}
	p := &Publisher{s: s, opts: opts, id: sessionIDs.Add(1), since: time.Now(), tracks: append([]*media.Track(nil), tracks...)}
	for _, t := range tracks {
		p.hasVideo = p.hasVideo || t.IsVideo()
	}
	s.numberLocked(p)
	p.buf = gopcache.New(standbyLimits(s.conf), p.hasVideo)
	p.waiting.Store(true)
	s.standbys = append(s.standbys, p)
	if s.cache == nil {
		// A stream held only by standbys (the path is live on another
		// node): Stats and joins need a cache.
		s.cache = gopcache.New(s.conf.GOPCache.Limits(), p.hasVideo)
	}
	return p, nil
}

// writeStandby is Publisher.Write for a waiting publisher. It reports
// false when p is live after all (it took over meanwhile): the caller
// writes u to the stream.
func (s *Stream) writeStandby(p *Publisher, u *media.Unit) bool {
	if p.closed.Load() {
		return true
	}
	u.Size = u.PayloadSize()
	if u.Wall.IsZero() {
		u.Wall = time.Now()
	}
	if p.opts.Role == RoleMain && s.conf.Standby == StandbyFailback && u.KeyFrame && (u.Track.IsVideo() || !p.hasVideo) &&
		s.failback(p, u) {
		return true
	}
	if to := s.conf.StandbyTimeout; to > 0 && u.Wall.UnixNano()-s.lastIn.Load() > int64(to) && s.takeOverStalled(to) && !p.waiting.Load() {
		return false // p took over: u goes to the stream
	}
	p.mu.Lock()
	if !p.waiting.Load() {
		p.mu.Unlock()
		return false
	}
	if p.buf != nil {
		p.buf.Add(u)
	}
	p.mu.Unlock()
	p.unitsIn.Add(1)
	return true
}

// failback makes p, a main publisher waiting behind a backup, live from
// its keyframe u; the backup goes back to waiting. It reports false when
// that does not apply (the live publisher is a main, or none).
func (s *Stream) failback(p *Publisher, u *media.Unit) bool {
	s.mu.Lock()
	live := s.publisher
	if s.ended || live == nil || live.opts.Role != RoleBackup || !slices.Contains(s.standbys, p) {
		s.mu.Unlock()
		return false
	}
	s.demoteLocked(live)
	s.removeStandbyLocked(p)
	p.mu.Lock()
	p.buf = nil // it starts at this keyframe, not at its older GOP
	p.waiting.Store(false)
	p.mu.Unlock()
	s.goLiveLocked(p)
	s.failbacks.Add(1)
	s.writeLocked(p, u)
	s.mu.Unlock()
	s.hub.standbyEvent(StandbyEvent{Path: s.path, Kind: EventFailback, From: live.describe(), To: p.describe()})
	return true
}

// takeOverStalled lets a standby take over from a live publisher that
// wrote nothing for the last to (PathConfig.StandbyTimeout), and reports
// whether one did. The stalled publisher waits as a standby from then on
// (a main comes back at its next keyframe with failback).
func (s *Stream) takeOverStalled(to time.Duration) bool {
	s.mu.Lock()
	live := s.publisher
	if s.ended || live == nil || time.Now().UnixNano()-s.lastIn.Load() <= int64(to) {
		s.mu.Unlock()
		return false
	}
	next := s.nextStandbyLocked()
	if next == nil {
		s.mu.Unlock()
		return false
	}
	s.demoteLocked(live)
	s.takeOverLocked(next)
	s.mu.Unlock()
	s.hub.standbyEvent(StandbyEvent{Path: s.path, Kind: EventTakeover, From: live.describe(), To: next.describe(), Stalled: true})
	return true
}

// demoteLocked makes the live publisher p wait as a standby; s.mu must be
// held. Its Writes waiting for s.mu are dropped (s.publisher is no longer
// p); the next ones fill its buffer from its next keyframe.
func (s *Stream) demoteLocked(p *Publisher) {
	p.mu.Lock()
	p.buf = gopcache.New(standbyLimits(s.conf), p.hasVideo)
	p.waiting.Store(true)
	p.mu.Unlock()
	s.publisher = nil
	s.standbys = append(s.standbys, p)
}

// removeStandbyLocked removes p from the standbys and reports whether it
// was one; s.mu must be held.
func (s *Stream) removeStandbyLocked(p *Publisher) bool {
	i := slices.Index(s.standbys, p)
	if i < 0 {
		return false
	}
	s.standbys = slices.Delete(s.standbys, i, i+1)
	return true
}

// dropStandbyLocked is Publisher.Close for a standby: it reports whether p
// was one. A stream held by standbys alone (the path live on another
// node) ends with its last. s.hub.mu and s.mu must be held.
func (s *Stream) dropStandbyLocked(p *Publisher) bool {
	if !s.removeStandbyLocked(p) {
		return false
	}
	p.closed.Store(true)
	p.mu.Lock()
	p.buf = nil
	p.mu.Unlock()
	s.hub.log.Info("stream standby publisher left", "path", s.path, "protocol", p.opts.Protocol, "remote", p.opts.Remote)
	if s.publisher == nil && s.claim == nil && len(s.standbys) == 0 && s.grace == nil && !s.ended {
		if s.hub.streams[s.path] == s {
			delete(s.hub.streams, s.path)
		}
		s.endLocked()
	}
	return true
}

// nextStandbyLocked returns the standby to take over: the first to arrive
// of those with a keyframe cached, else the first; nil if none. s.mu must
// be held.
func (s *Stream) nextStandbyLocked() *Publisher {
	if len(s.standbys) == 0 || s.ended {
		return nil
	}
	for _, p := range s.standbys {
		p.mu.Lock()
		ok := p.buf != nil && p.buf.Len() > 0
		p.mu.Unlock()
		if ok {
			return p
		}
	}
	return s.standbys[0]
}

// takeOverLocked makes the standby p live and writes its cached GOP into
// the stream; s.mu must be held and the stream have no publisher.
func (s *Stream) takeOverLocked(p *Publisher) {
	s.removeStandbyLocked(p)
	p.mu.Lock()
	var gop []*media.Unit
	if p.buf != nil {
		gop = p.buf.AppendTo(nil)
	}
	p.buf = nil
	p.waiting.Store(false)
	p.mu.Unlock()
	s.goLiveLocked(p)
	s.takeovers.Add(1)
	if len(gop) == 0 && p.opts.OnKeyframeRequest != nil {
		// Nothing cached to start from (a WHIP encoder sends keyframes
		// when asked): ask now rather than at the next reader.
		go p.opts.OnKeyframeRequest()
	}
	for _, u := range gop {
		s.writeLocked(p, u)
	}
}

// endStandbysLocked ends the standbys of a stream that ends; s.mu must be
// held.
func (s *Stream) endStandbysLocked() {
	for _, p := range s.standbys {
		p.closed.Store(true)
		if p.opts.OnKick != nil {
			go p.opts.OnKick()
		}
	}
	s.standbys = nil
}

// standbyStatsLocked describes the standbys; s.mu must be held (shared).
func (s *Stream) standbyStatsLocked() []StandbyStats {
	if len(s.standbys) == 0 {
		return nil
	}
	out := make([]StandbyStats, 0, len(s.standbys))
	for _, p := range s.standbys {
		p.mu.Lock()
		n := 0
		if p.buf != nil {
			n = p.buf.Len()
		}
		p.mu.Unlock()
		out = append(out, StandbyStats{Protocol: p.opts.Protocol, Remote: p.opts.Remote, Role: p.opts.Role, Since: p.since,
			UnitsIn: p.unitsIn.Load(), CachedUnits: n})
	}
	return out
}

// Promote makes a standby of path its live publisher now (the first to
// arrive of those with a keyframe cached, else the first): its cached GOP
// goes out at once and readers go on as after any takeover. A live
// publisher, if any, goes back to waiting as a standby. It is how the
// cluster hands a path to this node's standby when the publisher on
// another node is gone (HubConfig.LiveElsewhere), and how an operator
// switches over. It returns ErrStreamNotFound or ErrNoStandby.
func (h *Hub) Promote(path string) error {
	h.mu.Lock()
	s := h.streams[path]
	if s == nil {
		h.mu.Unlock()
		return ErrStreamNotFound
	}
	s.mu.Lock()
	next := s.nextStandbyLocked()
	if next == nil {
		s.mu.Unlock()
		h.mu.Unlock()
		return ErrNoStandby
	}
	from := ""
	live := s.publisher
	if live != nil {
		from = live.describe()
		s.demoteLocked(live)
	}
	s.takeOverLocked(next)
	if live == nil {
		// The path had standbys only (they waited for another node): it
		// is published from now, as after Claim.Publish.
		close(h.published)
		h.published = make(chan struct{})
	}
	s.mu.Unlock()
	h.mu.Unlock()
	h.standbyEvent(StandbyEvent{Path: path, Kind: EventPromote, From: from, To: next.describe()})
	if live == nil {
		h.log.Info("stream publishing", "path", path, "protocol", next.opts.Protocol, "remote", next.opts.Remote, "promoted", true)
		if h.conf.OnPublish != nil {
			h.conf.OnPublish(path, next.opts.Derived)
		}
	}
	return nil
}

// standbyEvent logs ev and tells HubConfig.OnStandby; no lock is held.
func (h *Hub) standbyEvent(ev StandbyEvent) {
	h.log.Info("stream publisher switched", "path", ev.Path, "event", ev.Kind, "from", ev.From, "to", ev.To, "stalled", ev.Stalled)
	if h.conf.OnStandby != nil {
		h.conf.OnStandby(ev)
	}
}
