package rtsp

import (
	"fmt"
	"net"
	"time"

	"golang.org/x/net/ipv4"
)

// A UDP player's packets are sent from gortsplib's own RTP and RTCP
// sockets (the server ports its SETUP answer named, which the player
// expects them from), taken at Start through gortsplib's ListenPacket
// hook, with one sendmmsg per batch instead of a queue entry and a sendto
// per packet in the session's writer goroutine:
//
//	player.send ──per packet: RTP header (own bytes) + payload (shared)──▶ interleaved.msgs
//	playLoop ──flushUDP: sendmmsg (ipv4.PacketConn.WriteBatch)──▶ player's RTP port
//	         ──sender reports──▶ player's RTCP port

// udpSockets are gortsplib's unicast UDP sockets.
type udpSockets struct {
	rtp, rtcp *ipv4.PacketConn
}

// listenPacket is gortsplib's ListenPacket hook: it keeps the RTP and
// RTCP sockets of the UDP transport for the play loops.
func (s *Server) listenPacket(network, address string) (net.PacketConn, error) {
	pc, err := net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	switch {
	case address == s.conf.UDPRTPAddress && s.udp.rtp == nil:
		s.udp.rtp = ipv4.NewPacketConn(pc)
	case address == s.conf.UDPRTCPAddress && s.udp.rtcp == nil:
		s.udp.rtcp = ipv4.NewPacketConn(pc)
	}
	return pc, nil
}

// flushUDP sends the batch's datagrams, then its sender reports.
func (w *interleaved) flushUDP() (int, error) {
	sent := w.sent
	err := sendAll(w.udpRTP, w.msgs, w.timeout)
	if err == nil {
		err = sendAll(w.udpRTCP, w.rtcpMsgs, w.timeout)
	}
	clear(w.msgs)
	clear(w.rtcpMsgs)
	clear(w.bufs)
	w.msgs, w.rtcpMsgs, w.bufs, w.hdr, w.sent = w.msgs[:0], w.rtcpMsgs[:0], w.bufs[:0], w.hdr[:0], 0
	if err != nil {
		return 0, fmt.Errorf("rtsp: sending to player: %w", err)
	}
	return sent, nil
}

// sendAll sends msgs with as few sendmmsg calls as the socket takes.
func sendAll(pc *ipv4.PacketConn, msgs []ipv4.Message, timeout time.Duration) error {
	for len(msgs) > 0 {
		pc.SetWriteDeadline(time.Now().Add(timeout)) //nolint:errcheck // a closed socket fails the write
		n, err := pc.WriteBatch(msgs, 0)
		if err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}
