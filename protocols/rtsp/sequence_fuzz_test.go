package rtsp

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/server"
)

// FuzzBadContentLength: the 400 sniffing of request heads never panics and
// only speaks of a Content-Length it found.
func FuzzBadContentLength(f *testing.F) {
	f.Add([]byte("DESCRIBE rtsp://x/a RTSP/1.0\r\nCSeq: 3\r\nContent-Length: -1\r\n\r\n"))
	f.Add([]byte("ANNOUNCE rtsp://x/a RTSP/1.0\r\ncontent-length: 131073\r\n\r\n"))
	f.Add([]byte("OPTIONS rtsp://x/a RTSP/1.0\r\nCSeq: 1\r\n\r\n"))
	f.Add([]byte("$\x00\x00\x04abcd"))
	f.Fuzz(func(t *testing.T, chunk []byte) {
		why, cseq := badContentLength(chunk)
		if why != "" && !strings.Contains(strings.ToLower(string(chunk)), "content-length") {
			t.Fatalf("a 400 for a chunk without Content-Length: %q", chunk)
		}
		if strings.ContainsAny(cseq, "\r\n") {
			t.Fatalf("CSeq %q would break the status line", cseq)
		}
	})
}

// FuzzMethodSequence drives the RTSP server through random method
// sequences on one or two connections: OPTIONS, DESCRIBE, SETUP of any
// track subset over TCP or UDP with any channels or ports, PLAY, PAUSE,
// TEARDOWN, GET_PARAMETER, ANNOUNCE and RECORD, in any order. The server
// must not panic and must answer a fresh DESCRIBE afterwards.
func FuzzMethodSequence(f *testing.F) {
	for _, seed := range [][]byte{
		{1, 2, 4, 6},             // DESCRIBE, SETUP video, PLAY, TEARDOWN
		{1, 2 | 8, 4, 5, 4},      // audio only, PLAY, PAUSE, PLAY
		{2, 4, 4, 7, 6, 4},       // SETUP without DESCRIBE, PLAY twice
		{1, 3, 3 | 8, 4, 0, 6},   // UDP video and audio
		{1, 2 | 48, 2 | 8, 4},    // odd channels
		{8 | 0x80, 9, 2, 4},      // ANNOUNCE, RECORD, SETUP, PLAY on a second connection
		{1, 2, 2, 2, 4, 6, 6, 4}, // SETUP the same track again, TEARDOWN twice
	} {
		f.Add(seed)
	}
	// One server with a live stream for every input (a server per input
	// would be too slow to fuzz).
	e := newEnvWith(f, server.HubConfig{}, nil)
	if _, err := startPublish(f, e.url("live/f"), publishOpts{speed: 1}); err != nil {
		f.Fatal(err)
	}
	testfixtures.WaitPublished(f, e.hub, "live/f")
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 24 {
			ops = ops[:24]
		}
		conns := [2]*seqConn{}
		defer func() {
			for _, c := range conns {
				if c != nil {
					c.nc.Close()
				}
			}
		}()
		for _, op := range ops {
			i := int(op>>7) & 1
			if conns[i] == nil {
				nc, err := net.Dial("tcp", e.addr)
				if err != nil {
					t.Fatal(err)
				}
				conns[i] = &seqConn{nc: nc, r: bufio.NewReader(nc), addr: e.addr}
			}
			conns[i].do(op)
		}
		for _, c := range conns {
			if c != nil {
				c.nc.Close()
			}
		}
		line := rawRequest(t, e.addr, "DESCRIBE rtsp://"+e.addr+"/live/f RTSP/1.0\r\nCSeq: 1\r\n\r\n")
		if !strings.Contains(line, " 200 ") {
			t.Fatalf("after %v: DESCRIBE answered %q", ops, line)
		}
	})
}

type seqConn struct {
	nc      net.Conn
	r       *bufio.Reader
	addr    string
	cseq    int
	session string
}

// do sends the request op names and reads what comes back for a moment.
func (c *seqConn) do(op byte) {
	c.cseq++
	path := "live/f"
	if op&0x80 != 0 && op&0x0f >= 8 {
		path = fmt.Sprintf("live/f%d", op&0x70>>4) // a publisher's own path
	}
	u := "rtsp://" + c.addr + "/" + path
	track := int(op>>3) & 1
	hdr := ""
	if c.session != "" {
		hdr = "Session: " + c.session + "\r\n"
	}
	var req string
	switch op & 0x0f % 10 {
	case 0:
		req = "OPTIONS " + u
	case 1:
		req = "DESCRIBE " + u
	case 2:
		ch := int(op>>4) & 7 * 2
		req = fmt.Sprintf("SETUP %s/trackID=%d", u, track)
		hdr += fmt.Sprintf("Transport: RTP/AVP/TCP;unicast;interleaved=%d-%d\r\n", ch, ch+1)
	case 3:
		port := 20000 + int(op>>4)*2
		req = fmt.Sprintf("SETUP %s/trackID=%d", u, track)
		hdr += fmt.Sprintf("Transport: RTP/AVP;unicast;client_port=%d-%d\r\n", port, port+1)
	case 4:
		req = "PLAY " + u
	case 5:
		req = "PAUSE " + u
	case 6:
		req = "TEARDOWN " + u
	case 7:
		req = "GET_PARAMETER " + u
	case 8:
		sdp := "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n"
		req = "ANNOUNCE " + u
		hdr += fmt.Sprintf("Content-Type: application/sdp\r\nContent-Length: %d\r\n", len(sdp))
		hdr += "\r\n" + sdp
		fmt.Fprintf(c.nc, "%s RTSP/1.0\r\nCSeq: %d\r\n%s", req, c.cseq, hdr)
		c.read()
		return
	case 9:
		req = "RECORD " + u
	}
	fmt.Fprintf(c.nc, "%s RTSP/1.0\r\nCSeq: %d\r\n%s\r\n", req, c.cseq, hdr)
	c.read()
}

// read takes what the server sends for up to 100 ms (a response, RTP
// frames after PLAY) and remembers a Session header.
func (c *seqConn) read() {
	c.nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	for {
		line, err := c.r.ReadString('\n')
		if strings.HasPrefix(line, "Session: ") {
			c.session, _, _ = strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "Session: ")), ";")
		}
		if err != nil {
			io.Copy(io.Discard, c.r) //nolint:errcheck // until the deadline
			return
		}
	}
}
