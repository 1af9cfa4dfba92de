package webrtc

import (
	"time"

	"github.com/pion/rtp"
)

// reorderer puts a track's RTP packets back in sequence order. A gap
// waits for the missing packet (a retransmission after our NACK) at most
// reorderWait or until reorderSize packets queue behind it, then is given
// up as lost. Late and duplicate packets are dropped.
type reorderer struct {
	init  bool
	next  uint16 // the sequence number due
	buf   [reorderSize]*rtp.Packet
	count int       // packets in buf
	since time.Time // when the current gap was first seen
	lost  uint64    // packets given up on, for the session's figures
}

const (
	reorderSize = 128
	reorderWait = 150 * time.Millisecond
)

// push takes p, which arrived at now, and returns the packets now in
// order (its backing array is reused by the next push) and whether
// packets were given up as lost.
func (r *reorderer) push(p *rtp.Packet, now time.Time, out []*rtp.Packet) ([]*rtp.Packet, bool) {
	out = out[:0]
	if !r.init {
		r.init, r.next = true, p.SequenceNumber+1
		return append(out, p), false
	}
	d := int16(p.SequenceNumber - r.next)
	switch {
	case d < 0: // late or duplicate
		return out, false
	case d == 0:
		out = append(out, p)
		r.next++
		return r.drain(out, now), false
	case int(d) >= reorderSize: // a jump: flush and start over at p
		out = r.flush(out)
		r.next = p.SequenceNumber + 1
		return append(out, p), true
	}
	i := p.SequenceNumber % reorderSize
	if r.buf[i] == nil {
		r.buf[i] = p
		r.count++
		if r.count == 1 {
			r.since = now
		}
	}
	if now.Sub(r.since) < reorderWait && r.count < reorderSize/2 {
		return out, false
	}
	// Give the gap up: skip to the first packet held.
	for r.buf[r.next%reorderSize] == nil {
		r.next++
		r.lost++
	}
	return r.drain(out, now), true
}

// drain appends the held packets that are now in order.
func (r *reorderer) drain(out []*rtp.Packet, now time.Time) []*rtp.Packet {
	for {
		i := r.next % reorderSize
		p := r.buf[i]
		if p == nil || p.SequenceNumber != r.next {
			break
		}
		out = append(out, p)
		r.buf[i] = nil
		r.count--
		r.next++
	}
	if r.count > 0 {
		r.since = now // a next gap starts its wait now
	}
	return out
}

// flush appends every held packet in sequence order and empties the buffer.
func (r *reorderer) flush(out []*rtp.Packet) []*rtp.Packet {
	for n := 0; n < reorderSize && r.count > 0; n++ {
		i := (r.next + uint16(n)) % reorderSize
		if p := r.buf[i]; p != nil {
			out = append(out, p)
			r.buf[i] = nil
			r.count--
		}
	}
	r.count = 0
	clear(r.buf[:])
	return out
}
