package server

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// A session is one publisher or one reader as the API lists it: who, on
// which path, since when, how much. Protocols describe their readers with
// Reader.SetPeer; publishers describe themselves in PublishOptions.

// sessionIDs numbers publishers and readers, process-wide.
var sessionIDs atomic.Uint64

// readerPeer is what SetPeer recorded.
type readerPeer struct {
	Peer
	kick func()
}

// SetPeer records who reads (for the session list, the per-protocol
// figures and the metrics) and how to end its connection (kick may be
// nil: Kick then only closes the reader, which ends it at its next unit).
func (r *Reader) SetPeer(p Peer, kick func()) {
	r.peer.Store(&readerPeer{Peer: p, kick: kick})
}

// AddBytesOut counts n bytes written to the reader's peer.
func (r *Reader) AddBytesOut(n int) {
	r.bytesOut.Add(uint64(n))
	r.s.bytesOut.Add(uint64(n))
}

// SetLinkStats gives the session list and the metrics the transport's own
// figures of this reader (SRT: round trip, losses, retransmissions).
func (r *Reader) SetLinkStats(f func() LinkStats) { r.link.Store(&f) }

// LinkStats are a transport's own figures of one session: what SRT's
// retransmission (ARQ) layer measures, or WebRTC's ICE checks, NACKs and
// receiver reports (no link capacity, nothing dropped).
type LinkStats struct {
	RTTMs         float64 `json:"rttMs"`         // smoothed round-trip time
	LinkMbps      float64 `json:"linkMbps"`      // estimated link capacity
	LostPackets   uint64  `json:"lostPackets"`   // detected lost (receiving) or reported lost (sending)
	Retransmitted uint64  `json:"retransmitted"` // packets sent or received again
	Dropped       uint64  `json:"dropped"`       // packets given up on (too late)
}

// linkFunc returns the link figures' function set by SetLinkStats, nil if
// none. The hub calls it with no lock held: it may take the transport's
// own locks, which its writing goroutine holds around Publisher.Write.
func linkFunc(p *atomic.Pointer[func() LinkStats]) func() LinkStats {
	if f := p.Load(); f != nil {
		return *f
	}
	return nil
}

// Session is one publisher or reader.
type Session struct {
	// ID is "p<n>" for a publisher, "r<n>" for a reader.
	ID       string    `json:"id"`
	Kind     string    `json:"kind"` // publisher, standby (a publisher waiting: paths.*.standby) or reader
	Path     string    `json:"path"`
	Protocol string    `json:"protocol"`
	Remote   string    `json:"remote"`
	Since    time.Time `json:"since"`
	Bytes    uint64    `json:"bytes"` // in for a publisher, out for a reader
	Drops    uint64    `json:"drops"`
	// Link is the transport's own figures (SRT, WebRTC), nil for other protocols.
	Link *LinkStats `json:"link,omitempty"`
	// Relay marks a reader that is an edge of the cluster (Hub.Read).
	Relay bool `json:"relay,omitempty"`
}

// Sessions returns every publisher and every reader that said who it is,
// by path and then age.
func (h *Hub) Sessions() []Session {
	var out []Session
	var links []func() LinkStats // out[i]'s, called once the locks are released
	for _, s := range h.Streams() {
		s.mu.RLock()
		if p := s.publisher; p != nil {
			out = append(out, Session{ID: "p" + strconv.FormatUint(p.id, 10), Kind: "publisher", Path: s.path, Protocol: p.opts.Protocol,
				Remote: p.opts.Remote, Since: p.since, Bytes: s.bytesIn.Load()})
			links = append(links, linkFunc(&p.link))
		}
		for _, p := range s.standbys {
			out = append(out, Session{ID: "p" + strconv.FormatUint(p.id, 10), Kind: "standby", Path: s.path, Protocol: p.opts.Protocol,
				Remote: p.opts.Remote, Since: p.since})
			links = append(links, linkFunc(&p.link))
		}
		s.mu.RUnlock()
		s.readersMu.Lock()
		for r := range s.readers {
			if rp := r.peer.Load(); rp != nil {
				out = append(out, Session{ID: "r" + strconv.FormatUint(r.id, 10), Kind: "reader", Path: s.path, Protocol: rp.Protocol,
					Remote: rp.Remote, Since: r.since, Bytes: r.bytesOut.Load(), Drops: r.drops.Load(), Relay: r.relay.Load()})
				links = append(links, linkFunc(&r.link))
			}
		}
		s.readersMu.Unlock()
	}
	for i, f := range links {
		if f != nil {
			ls := f()
			out[i].Link = &ls
		}
	}
	slices.SortFunc(out, func(a, b Session) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return a.Since.Compare(b.Since)
	})
	return out
}

// KickSession ends the publisher or reader with id and reports whether
// it existed.
func (h *Hub) KickSession(id string) bool {
	n, err := strconv.ParseUint(id[min(1, len(id)):], 10, 64)
	if err != nil || len(id) < 2 {
		return false
	}
	for _, s := range h.Streams() {
		s.mu.RLock()
		var kick func()
		// One publisher, live or standby: a standby takes over from a
		// live one kicked this way (KickPublisher ends them all).
		if p := s.publisher; id[0] == 'p' && p != nil && p.id == n {
			kick = func() { h.kick(p) }
		}
		for _, p := range s.standbys {
			if id[0] == 'p' && p.id == n {
				kick = func() { h.kick(p) }
			}
		}
		s.mu.RUnlock()
		s.readersMu.Lock()
		for r := range s.readers {
			if rp := r.peer.Load(); id[0] == 'r' && r.id == n && rp != nil {
				kick = func() {
					r.Close()
					if rp.kick != nil {
						rp.kick()
					}
					h.log.Info("reader kicked", "path", s.path, "protocol", rp.Protocol, "remote", rp.Remote)
				}
			}
		}
		s.readersMu.Unlock()
		if kick != nil {
			kick()
			return true
		}
	}
	return false
}

// readersByProtocolLocked counts the readers that said who they are, and
// the viewers the protocols count themselves (CountViewers); s.readersMu
// must be held.
func (s *Stream) readersByProtocolLocked() map[string]int {
	out := map[string]int{}
	for r := range s.readers {
		if rp := r.peer.Load(); rp != nil && !r.relay.Load() {
			out[rp.Protocol]++
		}
	}
	if cs := s.hub.viewerCounters.Load(); cs != nil {
		for proto, count := range *cs {
			if n := count(s.path); n > 0 {
				out[proto] += n
			}
		}
	}
	return out
}

// CountViewers makes count(path) the number of viewers of protocol on a
// path, for a protocol whose viewers are not hub readers of their own:
// LL-HLS, where one segmenter serves every player, counts the distinct
// clients it has seen lately. Stats adds them to ReadersByProtocol.
func (h *Hub) CountViewers(protocol string, count func(path string) int) {
	for {
		old := h.viewerCounters.Load()
		m := map[string]func(string) int{}
		if old != nil {
			maps.Copy(m, *old)
		}
		m[protocol] = count
		if h.viewerCounters.CompareAndSwap(old, &m) {
			return
		}
	}
}
