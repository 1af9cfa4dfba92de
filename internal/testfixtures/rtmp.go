package testfixtures

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// HostileRTMPConnect connects to an RTMP server at addr (from the local
// address src, "" for any), does the handshake and sends a connect command
// whose argument is a string of size bytes instead of an object, then reads
// until the server closes the connection: what a log-flood attack sends.
func HostileRTMPConnect(addr, src string, size int) error {
	d := net.Dialer{Timeout: 3 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(append([]byte{3}, make([]byte, 1536)...)); err != nil {
		return err
	}
	s0s1s2 := make([]byte, 1+2*1536)
	if _, err := io.ReadFull(c, s0s1s2); err != nil {
		return fmt.Errorf("RTMP handshake: %w", err)
	}
	if _, err := c.Write(s0s1s2[1 : 1+1536]); err != nil { // C2 echoes S1
		return err
	}
	// Set Chunk Size to the largest allowed, so the command is one chunk.
	var msg bytes.Buffer
	msg.Write([]byte{0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0})
	binary.Write(&msg, binary.BigEndian, uint32(0x7fffffff)) //nolint:errcheck // a bytes.Buffer
	// connect: AMF0 "connect", 1.0, then a long string, not an object.
	var body bytes.Buffer
	body.Write([]byte{0x02, 0, 7})
	body.WriteString("connect")
	body.WriteByte(0x00)
	binary.Write(&body, binary.BigEndian, float64(1)) //nolint:errcheck // a bytes.Buffer
	body.WriteByte(0x0c)
	binary.Write(&body, binary.BigEndian, uint32(size)) //nolint:errcheck // a bytes.Buffer
	body.Write(bytes.Repeat([]byte("x"), size))
	n := body.Len()
	msg.Write([]byte{0x03, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n), 0x14, 0, 0, 0, 0})
	msg.Write(body.Bytes())
	c.Write(msg.Bytes())   //nolint:errcheck // the server may close before it has it all
	io.Copy(io.Discard, c) //nolint:errcheck // until the server closes
	return nil
}
