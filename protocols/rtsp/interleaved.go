package rtsp

import (
	"context"
	"encoding/binary"
	"net"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/ntp"
	"github.com/pion/rtcp"
	"golang.org/x/net/ipv4"
)

// A TCP player's packets are written here, not through gortsplib:
//
//	player.send ──per packet: $ ch len + RTP header (own bytes) + payload (shared)──▶ interleaved.bufs
//	playLoop ──flush: one writev per batch, under the connection's write lock──▶ player
//	                  (gortsplib writes its responses under the same lock, see conn.go)
//
// gortsplib's own path costs, per packet and player, a marshal into a new
// buffer, a queue entry, a SetWriteDeadline and one write(2) in the
// session's writer goroutine. Here a batch of units (all packets of a
// GOP's catch-up, or the packets of one batch interval) goes out in one
// writev, with 16 bytes of framing per packet in an arena reused from
// batch to batch and the payload bytes shared by every player of the path.
// gortsplib sees none of these packets, so the RTCP sender reports are
// ours too (srPeriod).

// interleavedHeaderSize is the bytes before a packet's payload: the
// interleaved frame's 4 ($, channel, length) and the RTP header's 12.
const interleavedHeaderSize = 4 + rtpHeaderSize

// flushBufs is the buffers (two per packet) after which a play loop writes
// what it has of a batch.
const flushBufs = 256

// firstSRDelay is how long after a track's first packets its first sender
// report goes.
const firstSRDelay = 200 * time.Millisecond

// srPeriod is how often a player gets a sender report per track (the first
// firstSRDelay after its first packets): players map RTP time to wall time
// with them (ffmpeg and GStreamer sync audio and video by them).
const srPeriod = 5 * time.Second

// trackDest is where one set-up track goes: a channel of the player's
// connection (TCP) or the player's ports (UDP).
type trackDest struct {
	channel           int          // TCP: the RTP channel; RTCP is channel+1
	rtpAddr, rtcpAddr *net.UDPAddr // UDP: the player's ports
	ssrc              uint32       // the SSRC the SETUP response announced
}

// interleaved sends a player's packets itself: interleaved frames on a TCP
// player's connection, or datagrams to a UDP player (udp.go).
type interleaved struct {
	conn    *deadlineConn
	timeout time.Duration
	tracks  []*trackDest // by hub track ID; nil when not set up
	// gate is closed once the PLAY response was written: no packet may
	// go before it.
	gate <-chan struct{}

	// A UDP player's packets go from gortsplib's RTP and RTCP sockets,
	// one sendmmsg per batch (udp.go); conn is nil then.
	udpRTP, udpRTCP *ipv4.PacketConn
	msgs, rtcpMsgs  []ipv4.Message // the batch's datagrams (UDP), in bufs

	hdr  []byte      // framing of the batch being built (reused)
	bufs net.Buffers // the batch: framing and shared payloads
	sent int         // bytes in bufs

	// For sender reports, by hub track ID.
	pkts    []uint32
	octets  []uint32
	lastRTP []uint32
	lastNTP []time.Time
	nextSR  []time.Time // zero: before the first packet
}

func newInterleaved(conn *deadlineConn, timeout time.Duration, tracks []*trackDest, gate <-chan struct{}) *interleaved {
	n := len(tracks)
	return &interleaved{conn: conn, timeout: timeout, tracks: tracks, gate: gate,
		pkts: make([]uint32, n), octets: make([]uint32, n), lastRTP: make([]uint32, n),
		lastNTP: make([]time.Time, n), nextSR: make([]time.Time, n)}
}

// add frames one RTP packet of track id into the batch. payload is shared:
// it is only referenced until flush.
func (w *interleaved) add(id int, pt uint8, marker bool, seq uint16, ts uint32, ntpTime time.Time, payload []byte) {
	t := w.tracks[id]
	start := len(w.hdr)
	w.hdr = appendInterleavedRTP(w.hdr, t.channel, pt, marker, seq, ts, t.ssrc, len(payload))
	if w.udpRTP != nil {
		// A datagram: the RTP header (without the interleaved prefix)
		// and the payload.
		w.bufs = append(w.bufs, w.hdr[start+4:len(w.hdr):len(w.hdr)], payload)
		n := len(w.bufs)
		w.msgs = append(w.msgs, ipv4.Message{Buffers: w.bufs[n-2 : n : n], Addr: t.rtpAddr})
		w.sent += rtpHeaderSize + len(payload)
	} else {
		// A later append may move hdr; this slice keeps the bytes it framed.
		w.bufs = append(w.bufs, w.hdr[start:len(w.hdr):len(w.hdr)], payload)
		w.sent += interleavedHeaderSize + len(payload)
	}
	w.pkts[id]++
	w.octets[id] += uint32(len(payload))
	w.lastRTP[id], w.lastNTP[id] = ts, ntpTime
}

// appendInterleavedRTP appends the interleaved frame header and RTP header
// of a packet of n payload bytes.
func appendInterleavedRTP(dst []byte, channel int, pt uint8, marker bool, seq uint16, ts, ssrc uint32, n int) []byte {
	b1 := pt & 0x7f
	if marker {
		b1 |= 0x80
	}
	dst = append(dst, '$', byte(channel))
	dst = binary.BigEndian.AppendUint16(dst, uint16(rtpHeaderSize+n))
	dst = append(dst, 0x80, b1) // version 2, no padding, extension or CSRC
	dst = binary.BigEndian.AppendUint16(dst, seq)
	dst = binary.BigEndian.AppendUint32(dst, ts)
	return binary.BigEndian.AppendUint32(dst, ssrc)
}

// fits reports whether a payload of n bytes fits one interleaved frame.
func fits(n int) bool { return rtpHeaderSize+n <= 0xFFFF }

// addReports appends a sender report for every track that is due one. It
// maps the RTP time of the track's last packet in the batch to that
// packet's NTP time: the report goes out right behind the packet, so
// there is nothing to carry forward to the time of sending.
func (w *interleaved) addReports(now time.Time) {
	for id, t := range w.tracks {
		if t == nil || w.pkts[id] == 0 || now.Before(w.nextSR[id]) {
			continue
		}
		if w.nextSR[id].IsZero() {
			// The first report a moment after the track's first packets:
			// over UDP, a report that overtakes them (it has a socket of
			// its own) finds no RTP to map and is dropped (gortsplib's
			// client does), and the next comes srPeriod later.
			w.nextSR[id] = now.Add(firstSRDelay)
			continue
		}
		sr := rtcp.SenderReport{
			SSRC:        t.ssrc,
			NTPTime:     ntp.Encode(w.lastNTP[id]),
			RTPTime:     w.lastRTP[id],
			PacketCount: w.pkts[id],
			OctetCount:  w.octets[id],
		}
		b, err := sr.Marshal()
		if err != nil {
			continue
		}
		if w.udpRTP != nil {
			w.rtcpMsgs = append(w.rtcpMsgs, ipv4.Message{Buffers: [][]byte{b}, Addr: t.rtcpAddr})
			w.sent += len(b)
		} else {
			start := len(w.hdr)
			w.hdr = append(w.hdr, '$', byte(t.channel+1))
			w.hdr = binary.BigEndian.AppendUint16(w.hdr, uint16(len(b)))
			w.bufs = append(w.bufs, w.hdr[start:len(w.hdr):len(w.hdr)], b)
			w.sent += 4 + len(b)
		}
		w.nextSR[id] = now.Add(srPeriod)
	}
}

// flush writes the batch in one writev (the first waits for the PLAY
// response) and returns the bytes written.
func (w *interleaved) flush(ctx context.Context) (int, error) {
	if len(w.bufs) == 0 {
		return 0, nil
	}
	if w.gate != nil {
		select {
		case <-w.gate:
			w.gate = nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	w.addReports(time.Now())
	if w.udpRTP != nil {
		return w.flushUDP()
	}
	bufs := w.bufs // writeBuffers consumes its copy
	n, err := w.conn.writeBuffers(&bufs, w.timeout)
	clear(w.bufs) // no payload kept past the batch
	w.bufs, w.hdr, w.sent = w.bufs[:0], w.hdr[:0], 0
	return int(n), err
}
