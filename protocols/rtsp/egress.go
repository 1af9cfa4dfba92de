package rtsp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// rtpHeaderSize is the RTP header our packets carry (no CSRC, no
// extension), counted in the bytes sent to a player.
const rtpHeaderSize = 12

// playBatch is how many units a play loop takes from its reader at once.
const playBatch = 256

// queueFullRetry is how often a play loop retries a packet the session's
// write queue had no room for (the GOP burst at start, a slow link).
const queueFullRetry = 2 * time.Millisecond

// outStream is what RTSP players of one path share: the SDP made from the
// hub tracks, a ServerStream that DESCRIBE and unicast SETUPs return (never
// written: each unicast session is written on its own), and the multicast
// ServerStream with its one feeder.
type outStream struct {
	s      *Server
	path   string
	tracks []*media.Track // what desc was made from
	desc   *description.Session
	byID   []*trackOut // by hub track ID; nil for a track RTSP cannot carry

	unicast *gortsplib.ServerStream

	// guarded by s.mu
	refs      int // sessions using it
	stale     bool
	multi     *gortsplib.ServerStream // the multicast group's stream, while it has sessions
	mcReaders int                     // sessions set up for multicast
	mcStop    func()                  // stops the group's feeder, once one plays
}

// trackOut turns one hub track's units into RTP payloads. It is also the
// Unit.Memo key, so the payloads of a unit are made once for all players.
type trackOut struct {
	media     *description.Media
	format    format.Format
	codec     media.Codec
	clockRate int

	mu     sync.Mutex // mu guards encode (the library encoders keep state)
	encode func(u *media.Unit) ([]*rtp.Packet, error)
}

// outFor returns the path's outStream, made from the stream's current
// tracks (a new one when they changed since). demand starts an on-demand
// source and waits for it.
func (s *Server) outFor(path string, demand bool) (*outStream, error) {
	st := s.hub.Stream(path)
	if st == nil && demand {
		ctx, cancel := context.WithTimeout(s.ctx, server.OnDemandTimeout)
		r, err := s.hub.ReadTrusted(ctx, path, server.ReadOptions{Wait: true}) // the caller checked the reader
		cancel()
		if err != nil {
			return nil, err
		}
		r.Close()
		st = s.hub.Stream(path)
	}
	if st == nil {
		return nil, server.ErrStreamNotFound
	}
	tracks := st.Tracks()
	if len(tracks) == 0 {
		return nil, server.ErrStreamNotFound
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.outs[path]; o != nil {
		if sameLayout(o.tracks, tracks) {
			return o, nil
		}
		o.stale = true
		if o.refs == 0 {
			o.close()
		}
		delete(s.outs, path)
	}
	// Drop what no session holds and whose stream is gone (a DESCRIBE
	// that was never followed by a SETUP leaves one behind).
	for p, old := range s.outs {
		if old.refs == 0 && s.hub.Stream(p) == nil {
			old.close()
			delete(s.outs, p)
		}
	}
	o, err := newOutStream(s, path, tracks)
	if err != nil {
		return nil, err
	}
	s.outs[path] = o
	return o, nil
}

// release drops a session's hold on o.
func (s *Server) release(o *outStream, multicast bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o.refs--
	if multicast {
		o.mcReaders--
		if o.mcReaders == 0 {
			// The group is empty: stop its feeder and drop its stream, so
			// the next group starts afresh (a kept stream would answer
			// PLAY with the old group's RTP-Info while a new feeder
			// numbers its packets anew, and players drop them).
			stop, ms := o.mcStop, o.multi
			o.mcStop, o.multi = nil, nil
			s.mu.Unlock()
			if stop != nil {
				stop()
			}
			if ms != nil {
				ms.Close()
			}
			s.mu.Lock()
		}
	}
	if o.refs > 0 {
		return
	}
	if o.stale || s.hub.Stream(o.path) == nil {
		o.close()
		if s.outs[o.path] == o {
			delete(s.outs, o.path)
		}
	}
}

// sameLayout reports whether an SDP made for a still fits b: the same
// codecs and audio parameters per track (H264/H265 parameter sets may
// change: they travel in-band at every keyframe).
func sameLayout(a, b []*media.Track) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Codec != b[i].Codec || a[i].SampleRate != b[i].SampleRate || a[i].Channels != b[i].Channels ||
			string(a[i].AudioConfig) != string(b[i].AudioConfig) {
			return false
		}
	}
	return true
}

func newOutStream(s *Server, path string, tracks []*media.Track) (*outStream, error) {
	o := &outStream{s: s, path: path, tracks: tracks, desc: &description.Session{}, byID: make([]*trackOut, len(tracks))}
	for _, t := range tracks {
		to, err := newTrackOut(t)
		if err != nil {
			s.log.Warn("track not offered over RTSP", "path", path, "track", t.ID, "reason", err.Error())
			continue
		}
		if t.ID >= 0 && t.ID < len(o.byID) {
			o.byID[t.ID] = to
			o.desc.Medias = append(o.desc.Medias, to.media)
		}
	}
	if len(o.desc.Medias) == 0 {
		return nil, fmt.Errorf("rtsp: no track of %s can be sent over RTSP: %w", path, errNoRTSPTrack)
	}
	o.unicast = &gortsplib.ServerStream{Server: s.lib, Desc: o.desc}
	if err := o.unicast.Initialize(); err != nil {
		return nil, fmt.Errorf("rtsp: %w", err)
	}
	return o, nil
}

var errNoRTSPTrack = errors.New("RTSP carries H264, H265, AV1, AAC, Opus, MP3 and G.711")

// joinMulticastStream counts a session into the multicast group and returns
// the group's stream, made on first use. release counts it out.
func (o *outStream) joinMulticastStream() (*gortsplib.ServerStream, error) {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	if o.multi == nil {
		ms := &gortsplib.ServerStream{Server: o.s.lib, Desc: o.desc}
		if err := ms.Initialize(); err != nil {
			return nil, err
		}
		o.multi = ms
	}
	o.mcReaders++
	return o.multi, nil
}

// close closes o's streams (and with them any session still on them).
// s.mu must be held.
func (o *outStream) close() {
	o.unicast.Close()
	if o.multi != nil {
		o.multi.Close()
	}
}

func newTrackOut(t *media.Track) (*trackOut, error) {
	to := &trackOut{codec: t.Codec}
	typ := description.MediaTypeAudio
	switch t.Codec {
	case media.CodecH264:
		f := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: t.SPS, PPS: t.PPS}
		enc, err := f.CreateEncoder()
		if err != nil {
			return nil, err
		}
		to.format, typ = f, description.MediaTypeVideo
		to.encode = func(u *media.Unit) ([]*rtp.Packet, error) { return enc.Encode(u.Payload) }
	case media.CodecH265:
		f := &format.H265{PayloadTyp: 96, VPS: t.VPS, SPS: t.SPS, PPS: t.PPS}
		enc, err := f.CreateEncoder()
		if err != nil {
			return nil, err
		}
		to.format, typ = f, description.MediaTypeVideo
		to.encode = func(u *media.Unit) ([]*rtp.Packet, error) { return enc.Encode(u.Payload) }
	case media.CodecAV1:
		f := &format.AV1{PayloadTyp: 96}
		enc, err := f.CreateEncoder()
		if err != nil {
			return nil, err
		}
		to.format, typ = f, description.MediaTypeVideo
		to.encode = func(u *media.Unit) ([]*rtp.Packet, error) { return enc.Encode(u.Payload) }
	case media.CodecAAC:
		var asc mpeg4audio.AudioSpecificConfig
		if err := asc.Unmarshal(t.AudioConfig); err != nil {
			return nil, fmt.Errorf("AAC config: %w", err)
		}
		f := &format.MPEG4Audio{PayloadTyp: 97, Config: &asc, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}
		enc, err := f.CreateEncoder()
		if err != nil {
			return nil, err
		}
		to.format = f
		to.encode = func(u *media.Unit) ([]*rtp.Packet, error) { return enc.Encode(u.Payload) }
	case media.CodecOpus:
		f := &format.Opus{PayloadTyp: 97, ChannelCount: max(t.Channels, 1)}
		enc, err := f.CreateEncoder()
		if err != nil {
			return nil, err
		}
		to.format = f
		to.encode = func(u *media.Unit) ([]*rtp.Packet, error) {
			p, err := enc.Encode(u.Payload[0])
			return []*rtp.Packet{p}, err
		}
	case media.CodecMP3:
		f := &format.MPEG1Audio{}
		enc, err := f.CreateEncoder()
		if err != nil {
			return nil, err
		}
		to.format = f
		to.encode = func(u *media.Unit) ([]*rtp.Packet, error) { return enc.Encode(u.Payload) }
	case media.CodecG711A, media.CodecG711U:
		f := &format.G711{PayloadTyp: 97, MULaw: t.Codec == media.CodecG711U, SampleRate: t.SampleRate, ChannelCount: max(t.Channels, 1)}
		if f.SampleRate == 8000 && f.ChannelCount == 1 { // the static payload types
			f.PayloadTyp = 8
			if f.MULaw {
				f.PayloadTyp = 0
			}
		}
		enc, err := f.CreateEncoder()
		if err != nil {
			return nil, err
		}
		to.format = f
		to.encode = func(u *media.Unit) ([]*rtp.Packet, error) { return enc.Encode(u.Payload[0]) }
	default:
		return nil, fmt.Errorf("codec %s: %w", t.Codec, errNoRTSPTrack)
	}
	to.clockRate = to.format.ClockRate()
	to.media = &description.Media{Type: typ, Formats: []format.Format{to.format}}
	return to, nil
}

// payloads returns u's RTP payloads as made once per unit and shared (see
// packetList), or nil when u cannot be sent.
func (to *trackOut) payloads(u *media.Unit) []byte {
	if len(u.Payload) == 0 {
		return nil
	}
	return u.Memo(to, func(u *media.Unit) []byte {
		to.mu.Lock()
		pkts, err := to.encode(u)
		to.mu.Unlock()
		if err != nil {
			return nil
		}
		return appendPacketList(nil, pkts, to.clockRate)
	})
}

// A packet list is the RTP payloads of one unit in one byte slice, each as
// [4-byte timestamp offset from the unit's][1-byte marker][2-byte length][payload].
// The library encoders number packets and set timestamps from 0 within one
// call; we keep only what differs per packet, and every player adds its own
// sequence numbers and time base.
func appendPacketList(dst []byte, pkts []*rtp.Packet, clockRate int) []byte {
	if len(pkts) == 0 {
		return dst
	}
	first := pkts[0].Timestamp
	for _, p := range pkts {
		if len(p.Payload) > 0xFFFF {
			return nil
		}
		dst = binary.BigEndian.AppendUint32(dst, p.Timestamp-first)
		m := byte(0)
		if p.Marker {
			m = 1
		}
		dst = append(dst, m)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(p.Payload)))
		dst = append(dst, p.Payload...)
	}
	return dst
}

// nextPacket splits the first packet off a packet list; ok is false at the
// end or on a malformed list.
func nextPacket(list []byte) (tsOff uint32, marker bool, payload, rest []byte, ok bool) {
	if len(list) < 7 {
		return 0, false, nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(list[5:7]))
	if len(list) < 7+n {
		return 0, false, nil, nil, false
	}
	return binary.BigEndian.Uint32(list), list[4] == 1, list[7 : 7+n], list[7+n:], true
}

// rtpClock converts a hub time to a clock of rate Hz without overflow.
func rtpClock(d time.Duration, rate int) int64 {
	r := int64(rate)
	return int64(d/time.Second)*r + int64(d%time.Second)*r/int64(time.Second)
}

// packetWriter is where a play loop sends packets: one session (unicast) or
// the multicast stream.
type packetWriter func(m *description.Media, p *rtp.Packet, ntp time.Time) error

// player numbers and timestamps one hub reader's packets for one output.
type player struct {
	out    *outStream
	write  packetWriter
	il     *interleaved // a TCP or UDP player's own sender, used instead of write when set
	on     []bool       // by hub track ID: the output has the track (a player may set up only some)
	seq    []uint16
	base   []uint32
	origin time.Time // NTP of hub time 0 for sender reports
	hasVid bool
	// waitKey skips units until a video keyframe (after a drop).
	waitKey bool
	drops   uint64
	sent    int // bytes written since playLoop last counted them
}

// newPlayer returns a player writing the tracks of o whose media is in
// setup (a session's set-up medias, in any order and any subset), or every
// track of o when setup is nil (the multicast stream).
func newPlayer(o *outStream, w packetWriter, setup []*description.Media) *player {
	p := &player{out: o, write: w, on: make([]bool, len(o.byID)), seq: make([]uint16, len(o.byID)), base: make([]uint32, len(o.byID))}
	var b [6]byte
	rand.Read(b[:]) //nolint:errcheck // never fails on Linux; a zero base is valid anyway
	for i := range p.base {
		p.base[i] = binary.BigEndian.Uint32(b[:4]) + uint32(i)*0x10000000
		p.seq[i] = binary.BigEndian.Uint16(b[4:]) + uint16(i)*0x1000
	}
	for id, to := range o.byID {
		if to == nil || (setup != nil && !slices.Contains(setup, to.media)) {
			continue
		}
		p.on[id] = true
		// Only a video track the player gets can end a wait for a keyframe.
		p.hasVid = p.hasVid || to.media.Type == description.MediaTypeVideo
	}
	return p
}

// errLayoutChanged ends a player whose stream was republished with tracks
// its SDP cannot describe.
var errLayoutChanged = errors.New("rtsp: the stream was republished with other tracks: reconnect to get the new SDP")

// send writes a batch of units. It returns an error only when the player
// must stop.
func (p *player) send(ctx context.Context, batch []*media.Unit, retryFull bool) error {
	if p.origin.IsZero() && len(batch) > 0 {
		// Sender reports map RTP time to the units' wall time. One fixed
		// mapping for every track keeps them in sync; it is taken from
		// the newest unit at hand, since the cached GOP at the start is
		// retimed (caught up) and its wall times are older than its
		// timestamps say.
		for _, u := range batch {
			if o := u.Wall.Add(-u.DTS); o.After(p.origin) {
				p.origin = o
			}
		}
	}
	for _, u := range batch {
		id := u.Track.ID
		if id < 0 || id >= len(p.out.byID) {
			continue
		}
		if !p.on[id] {
			continue // not offered over RTSP, or not set up by this player
		}
		to := p.out.byID[id]
		if to.codec != u.Track.Codec {
			return errLayoutChanged
		}
		if p.waitKey {
			if !u.Track.IsVideo() || !u.KeyFrame {
				continue
			}
			p.waitKey = false
		}
		list := to.payloads(u)
		ts := uint32(rtpClock(u.PTS, to.clockRate))
		ntp := p.origin.Add(u.PTS)
		for len(list) > 0 {
			off, marker, payload, rest, ok := nextPacket(list)
			if !ok {
				break
			}
			list = rest
			if p.il != nil {
				if fits(len(payload)) {
					p.il.add(id, to.format.PayloadType(), marker, p.seq[id], p.base[id]+ts+off, ntp, payload)
					p.seq[id]++
				}
				continue
			}
			pkt := &rtp.Packet{Header: rtp.Header{
				Version: 2, PayloadType: to.format.PayloadType(), Marker: marker,
				SequenceNumber: p.seq[id], Timestamp: p.base[id] + ts + off,
			}, Payload: payload}
			err := p.write(to.media, pkt, ntp)
			for retryFull && isQueueFull(err) {
				// Back-pressure instead of a lost packet: wait for the
				// session's queue; the hub reader behind us handles a
				// player that stays slow (skip to a keyframe, then drop).
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(queueFullRetry):
				}
				err = p.write(to.media, pkt, ntp)
			}
			if isQueueFull(err) {
				p.drops++
				p.waitKey = p.hasVid
				break
			}
			if err != nil {
				return err
			}
			p.sent += rtpHeaderSize + len(payload)
			p.seq[id]++
		}
		if p.il != nil && len(p.il.bufs) >= flushBufs {
			// A long batch (the GOP at the start) goes out in parts:
			// the batch's memory, and the iovecs the connection keeps
			// for writev, stay small.
			n, err := p.il.flush(ctx)
			p.sent += n
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func isQueueFull(err error) bool {
	var full liberrors.ErrServerWriteQueueFull
	return err != nil && errors.As(err, &full)
}

// startPlay runs a unicast player's loop until the session ends, the
// stream ends or stop is called. stop waits for the loop.
// il, if not nil, sends the packets of a TCP or UDP player (else
// gortsplib does).
func (s *Server) startPlay(ss *gortsplib.ServerSession, st *session, o *outStream, r *server.Reader, il *interleaved) (stop func()) {
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	p := newPlayer(o, ss.WritePacketRTPWithNTP, ss.Medias())
	p.il = il
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		defer r.Close()
		defer func() {
			if v := recover(); v != nil {
				guard.Report(s.log, "rtsp play loop", v, "path", st.path, "remote", st.remote)
				st.endReason = guard.ErrPanic.Error()
				ss.Close()
			}
		}()
		err := s.playLoop(ctx, r, p, true)
		st.drops = p.drops
		if ctx.Err() == nil {
			// The stream ended or the player cannot follow it: end the
			// session; OnSessionClose logs this reason (read after stop,
			// which waits for this goroutine).
			st.endReason = err.Error()
			ss.Close()
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// playWriter returns the writer of a unicast player whose packets we send
// ourselves (interleaved.go, udp.go), or nil when gortsplib sends them:
// RTSP tunneled in HTTP or WebSocket (the connection is not ours), SRTP,
// or a set-up media whose channel or ports the SETUP answer did not show.
// Called from OnPlay when it answers 200: the writer's first packet waits
// for that answer.
func (s *Server) playWriter(ss *gortsplib.ServerSession, sc *gortsplib.ServerConn, st *session) *interleaved {
	tr := ss.Transport()
	if tr == nil || tr.Profile != headers.TransportProfileAVP {
		return nil
	}
	tracks := make([]*trackDest, len(st.out.byID))
	for _, m := range ss.Medias() {
		t := st.dests[m]
		if t == nil {
			return nil
		}
		for id, to := range st.out.byID {
			if to != nil && to.media == m {
				tracks[id] = t
			}
		}
	}
	switch tr.Protocol {
	case gortsplib.ProtocolTCP:
		dc, ok := sc.NetConn().(*deadlineConn)
		if !ok {
			return nil
		}
		return newInterleaved(dc, s.conf.WriteTimeout, tracks, dc.gateNextWrite())
	case gortsplib.ProtocolUDP:
		if s.udp.rtp == nil || s.udp.rtcp == nil {
			return nil
		}
		for _, t := range tracks {
			if t != nil && t.rtpAddr == nil {
				return nil
			}
		}
		// The first packets wait for the PLAY answer too: a player that
		// has not read it yet may drop them, and the first sender
		// report with them.
		var gate <-chan struct{}
		if dc, ok := sc.NetConn().(*deadlineConn); ok {
			gate = dc.gateNextWrite()
		}
		w := newInterleaved(nil, s.conf.WriteTimeout, tracks, gate)
		w.udpRTP, w.udpRTCP = s.udp.rtp, s.udp.rtcp
		return w
	}
	return nil
}

// testHookPlay, when set by a test, is called with the path before each
// batch a play loop sends (to inject a fault into one session).
var testHookPlay atomic.Pointer[func(path string)]

// playLoop feeds p from r until an error.
func (s *Server) playLoop(ctx context.Context, r *server.Reader, p *player, retryFull bool) error {
	batch := make([]*media.Unit, 0, playBatch)
	for {
		if hook := testHookPlay.Load(); hook != nil {
			(*hook)(p.out.path)
		}
		var err error
		batch, err = r.NextBatch(ctx, batch[:0])
		if err != nil {
			return err
		}
		err = p.send(ctx, batch, retryFull)
		clear(batch) // the batch's units are let go; the payloads in p.il stay referenced until flush
		if err == nil && p.il != nil {
			var n int
			n, err = p.il.flush(ctx)
			p.sent += n
		}
		if p.sent > 0 {
			r.AddBytesOut(p.sent)
			p.sent = 0
		}
		if err != nil {
			return err
		}
	}
}

// playMulticast starts the group's feeder for its first player. The
// returned stop is a no-op: release stops the feeder with the last session.
func (s *Server) playMulticast(o *outStream) (stop func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o.mcStop == nil && o.multi != nil {
		ctx, cancel := context.WithCancel(s.ctx)
		done := make(chan struct{})
		ms := o.multi
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(done)
			defer func() {
				if v := recover(); v != nil {
					guard.Report(s.log, "rtsp multicast feeder", v, "path", o.path)
					ms.Close() // ends the group's sessions; release drops the group
				}
			}()
			// One reader feeds the group; each member was checked at SETUP.
			r, err := s.hub.ReadTrusted(ctx, o.path, server.ReadOptions{})
			if err == nil {
				err = s.playLoop(ctx, r, newPlayer(o, ms.WritePacketRTPWithNTP, nil), false)
				r.Close()
			}
			if ctx.Err() == nil {
				// The stream ended (or could not be read): end the group's
				// sessions with it, so no group stays without a feeder.
				s.log.Info("multicast feeder stopped", "path", o.path, "cause", err.Error())
				s.mu.Lock()
				if o.multi == ms {
					o.multi, o.mcStop = nil, nil
				}
				s.mu.Unlock()
				ms.Close()
			}
		}()
		o.mcStop = func() {
			cancel()
			<-done
		}
	}
	return func() {}
}
