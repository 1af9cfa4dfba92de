package srt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/internal/tsconv"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// readBatch is how many units a reader takes from the hub at once.
const readBatch = 256

// Egress, once per stream and layout:
//
//	hub ring ──*Unit──▶ reader goroutine ──Unit.Memo(layout)──▶ TS packets (muxed once, shared)
//	         ──copy 7 packets, this reader's continuity counters──▶ gosrt Write (1316-byte messages)
//
// Every SRT reader of a stream shares one tsconv.Muxer per set of codecs
// (a layout: a republish with other codecs makes another), and each unit
// is muxed once per layout (Unit.Memo). What is per reader is only the
// 4-bit continuity counter of each PID, written into the copy each reader
// makes anyway for gosrt (which keeps its own copy of every message for
// retransmission): a reader's counters start at its first packet, so a
// decoder sees a continuous stream from the join on, and a gap only where
// a reader dropped units itself. A reader starts (and restarts after a
// drop or a new layout) at a video keyframe, with the PAT and PMT first.
// Until it has caught up with live (the join backlog: retimed copies of
// the cache made for it), a reader muxes with the shared muxer into its
// own buffer: memoized, those packets would stay on its copies.

// streamMux is the MPEG-TS state shared by the SRT readers of one stream.
type streamMux struct {
	refs int // guarded by Server.mu

	mu      sync.Mutex // mu guards layouts
	layouts []*tsLayout
}

// maxLayouts bounds the layouts a stream keeps (one per set of codecs its
// publishers used while it had SRT readers).
const maxLayouts = 4

// layout returns the stream's layout for tracks, made on first use.
func (m *streamMux) layout(tracks []*media.Track) (*tsLayout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.layouts {
		if l.mux.SameCodecs(tracks) {
			return l, nil
		}
	}
	mux, err := tsconv.NewMuxer(tracks)
	if err != nil {
		return nil, fmt.Errorf("srt: %w", err)
	}
	l := &tsLayout{mux: mux, hasVideo: mux.HasVideo()}
	if len(m.layouts) == maxLayouts {
		m.layouts = m.layouts[1:]
	}
	m.layouts = append(m.layouts, l)
	return l, nil
}

// tsLayout is one muxer shared by the readers of a stream whose tracks
// have one set of codecs. Its pointer is the Unit.Memo key of the TS
// packets it makes.
type tsLayout struct {
	hasVideo bool // immutable

	mu     sync.Mutex // mu guards mux and tables
	mux    *tsconv.Muxer
	tables []byte // PAT and PMT, made after the first unit (which picks the PCR track)
}

// private returns the TS packets of u muxed for one reader alone, in buf
// (reused): nothing is kept on the unit.
func (l *tsLayout) private(u *media.Unit, buf []byte) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append(buf[:0], l.mux.Encode(u)...)
}

// unit returns the TS packets of u, muxed once for every reader of the
// layout; nil for a unit the layout does not carry. The bytes are shared:
// readers copy them and must not modify them.
func (l *tsLayout) unit(u *media.Unit) []byte {
	return u.Memo(l, func(u *media.Unit) []byte {
		l.mu.Lock()
		defer l.mu.Unlock()
		b := l.mux.Encode(u)
		if len(b) == 0 {
			return nil
		}
		return append(make([]byte, 0, len(b)), b...)
	})
}

// tablesPackets returns the layout's PAT and PMT packets (shared, not to
// be modified). Call it after unit: the first unit muxed decides which
// track carries the PCR, which the PMT names.
func (l *tsLayout) tablesPackets() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tables == nil {
		l.tables = append([]byte(nil), l.mux.Tables()...)
	}
	return l.tables
}

// muxFor returns the shared MPEG-TS state of st, for a reader that
// releases it with releaseMux.
func (s *Server) muxFor(st *server.Stream) *streamMux {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.muxes[st]
	if m == nil {
		m = &streamMux{}
		s.muxes[st] = m
	}
	m.refs++
	return m
}

// releaseMux drops a reader's hold of st's shared state; the last reader
// frees it.
func (s *Server) releaseMux(st *server.Stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.muxes[st]; m != nil {
		if m.refs--; m.refs <= 0 {
			delete(s.muxes, st)
		}
	}
}

// pidCC is a reader's continuity counter of one PID.
type pidCC struct {
	pid uint16
	cc  uint8 // the last counter sent; 0xff: none sent yet
	pes bool  // the PID carries media (PES), not tables
}

// tsOut sends a reader's units as MPEG-TS, each access unit as whole SRT
// messages, from the bytes its stream's layout muxed once.
type tsOut struct {
	conn       messageWriter
	mux        *streamMux
	layout     *tsLayout
	session    uint64  // the publisher session of the last unit seen
	waitKey    bool    // skip to the next video keyframe (at the start, after a full send queue, on a new layout)
	needTables bool    // send the PAT and PMT before the next packets
	live       bool    // caught up: units are muxed once for all (until then, for this reader alone)
	own        []byte  // this reader's TS packets of a unit, while catching up
	cc         []pidCC // this reader's continuity counters
	msg        [PayloadSize]byte
	lastOK     time.Time // last successful send
	drops      uint64
	sent       int // bytes sent
}

// messageWriter is what tsOut needs of a gosrt.Conn.
type messageWriter interface {
	Write(p []byte) (int, error)
}

// newTSOut starts a reader of mux with the layout for its tracks.
func newTSOut(conn messageWriter, mux *streamMux, tracks []*media.Track) (*tsOut, error) {
	l, err := mux.layout(tracks)
	if err != nil {
		return nil, err
	}
	return &tsOut{conn: conn, mux: mux, layout: l, waitKey: l.hasVideo, needTables: true, lastOK: time.Now()}, nil
}

// liveAge is how recent a picture's arrival must be for a reader to count
// as caught up with live (see tsOut.write).
const liveAge = time.Second

// errTooSlow ends a reader whose send queue stayed full.
var errTooSlow = errors.New("srt: reader too slow: its send queue stayed full for srt.writeTimeout")

// write sends u's shared TS packets. A full send queue (gosrt's Write
// returns EOF instead of blocking) drops the rest of the unit and skips to
// the next keyframe; staying full for writeTimeout ends the reader. tracks
// returns the stream's current tracks; it is called when u comes from a
// new publisher.
func (o *tsOut) write(u *media.Unit, tracks func() []*media.Track, writeTimeout time.Duration) error {
	if u.Track.Session != o.session {
		if o.session != 0 {
			// A new publisher may lay its tracks out differently.
			l, err := o.mux.layout(tracks())
			if err != nil {
				return err
			}
			if l != o.layout {
				o.layout, o.needTables, o.waitKey = l, true, l.hasVideo
			}
		}
		o.session = u.Track.Session
	}
	if o.waitKey {
		if !u.Track.IsVideo() || !u.KeyFrame {
			return nil
		}
		o.waitKey = false
	}
	// A joining reader first gets the backlog: copies of the cached units
	// retimed for it (or for the few joining at the same moment). Their TS
	// packets, memoized, would stay on those copies as long as the reader
	// holds them: megabytes per reader for a reader's first seconds. So a
	// reader muxes for itself until a picture comes within liveAge of its
	// arrival, and from then on shares the live units' packets. (Pictures:
	// the backlog's recent audio, sent early for players that probe the
	// stream, are the cached units themselves, with a recent arrival.)
	if !o.live && u.Track.IsVideo() && (u.Wall.IsZero() || time.Since(u.Wall) < liveAge) {
		o.live = true
	}
	var b []byte
	if o.live {
		b = o.layout.unit(u)
	} else {
		o.own = o.layout.private(u, o.own)
		b = o.own
	}
	if len(b) == 0 {
		return nil
	}
	if o.needTables {
		if err := o.send(o.layout.tablesPackets()); err != nil {
			return o.dropped(err, writeTimeout)
		}
		o.needTables = false
	}
	if err := o.send(b); err != nil {
		return o.dropped(err, writeTimeout)
	}
	o.lastOK = time.Now()
	return nil
}

// send writes b (whole TS packets) in messages of up to seven packets,
// each a copy with this reader's continuity counters.
func (o *tsOut) send(b []byte) error {
	for len(b) > 0 {
		n := min(len(b), PayloadSize)
		m := o.msg[:n]
		copy(m, b)
		o.number(m)
		if _, err := o.conn.Write(m); err != nil {
			return err
		}
		b = b[n:]
		o.sent += n
	}
	return nil
}

// number writes this reader's continuity counters into the TS packets of
// m: a packet with a payload takes the next counter of its PID, one
// without repeats the last.
func (o *tsOut) number(m []byte) {
	for p := m; len(p) >= tsPacket; p = p[tsPacket:] {
		pid := uint16(p[1]&0x1f)<<8 | uint16(p[2])
		c := o.counter(pid)
		if p[3]&0x10 != 0 { // payload present
			c.cc = (c.cc + 1) & 0xf
			if !c.pes && p[1]&0x40 != 0 { // a payload start: a PES start code, or a table
				pl := p[4:]
				if p[3]&0x20 != 0 {
					pl = pl[min(1+int(pl[0]), len(pl)):]
				}
				c.pes = len(pl) >= 3 && pl[0] == 0 && pl[1] == 0 && pl[2] == 1
			}
		} else if c.cc == 0xff {
			c.cc = 0
		}
		p[3] = p[3]&0xf0 | c.cc
	}
}

// tsPacket is the MPEG-TS packet size.
const tsPacket = 188

func (o *tsOut) counter(pid uint16) *pidCC {
	for i := range o.cc {
		if o.cc[i].pid == pid {
			return &o.cc[i]
		}
	}
	// 0xff+1 wraps to 0: the PID's first packet carries counter 0.
	o.cc = append(o.cc, pidCC{pid: pid, cc: 0xff})
	return &o.cc[len(o.cc)-1]
}

// dropped handles a failed send: a full queue drops the rest of the unit,
// skips the counter of every media PID once (the decoder sees a gap where
// data is missing; the tables lose nothing) and waits for the next
// keyframe; another error ends the reader.
func (o *tsOut) dropped(err error, writeTimeout time.Duration) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	o.drops++
	for i := range o.cc {
		if o.cc[i].pes && o.cc[i].cc != 0xff {
			o.cc[i].cc = (o.cc[i].cc + 1) & 0xf
		}
	}
	o.waitKey = o.layout.hasVideo
	if time.Since(o.lastOK) > writeTimeout {
		return errTooSlow
	}
	return nil
}

// read sends the hub stream as MPEG-TS until the caller leaves, the stream
// ends or the reader falls too far behind.
func (c *conn) read(r *server.Reader) error {
	defer r.Close()
	r.SetPeer(server.Peer{Protocol: "srt", Remote: c.remote}, func() { c.sc.Close() })
	r.SetLinkStats(c.link)
	s := c.srv
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// A reader sends nothing but control packets; Read returns when the
	// connection closes.
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer guard.Recover(s.log, "srt reader's control loop", "remote", c.remote)
		var b [PayloadSize]byte
		for {
			if _, err := c.sc.Read(b[:]); err != nil {
				cancel()
				return
			}
		}
	}()
	defer func() {
		c.sc.Close()
		<-readDone
	}()
	mux := s.muxFor(r.Stream())
	defer s.releaseMux(r.Stream())
	out, err := newTSOut(c.sc, mux, r.Tracks())
	if err != nil {
		return err
	}
	tracks := func() []*media.Track { return r.Stream().Tracks() }
	batch := make([]*media.Unit, 0, readBatch)
	defer func() {
		c.mu.Lock()
		c.slowDrops = out.drops
		c.mu.Unlock()
	}()
	for {
		batch, err = r.NextBatch(ctx, batch[:0])
		if err != nil {
			if ctx.Err() != nil && s.ctx.Err() == nil {
				return nil // the caller left
			}
			return fmt.Errorf("srt: %w", err)
		}
		before := out.sent
		for _, u := range batch {
			if err := out.write(u, tracks, s.conf.WriteTimeout); err != nil {
				return err
			}
		}
		r.AddBytesOut(out.sent - before)
		c.mu.Lock()
		c.slowDrops = out.drops
		c.mu.Unlock()
	}
}
