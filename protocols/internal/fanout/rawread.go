package fanout

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawReader reads a socket with raw read system calls, through its
// RawConn: the read never blocks (the socket is non-blocking; on EAGAIN
// the runtime's poller waits, and deadlines and Close work as for
// net.Conn.Read), and the goroutine does not enter and leave the
// runtime's system call state for it.
//
// Why: each exit from that state, with the process otherwise idle, wakes
// the runtime's monitor thread, which then polls every 20 µs for a while.
// A publisher's reads and a thousand players' acknowledgements did that
// dozens of times a second: the monitor's sleeps were 6 % of the server's
// CPU at 1000 RTMP players (perf).
//
// Unlike a net.Conn, it takes one Read at a time (every caller reads from
// one goroutine).
type rawReader struct {
	c   net.Conn
	raw syscall.RawConn
	p   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

// NewRawReader returns a reader of c that makes raw system calls when c is
// a socket (syscall.Conn), or c itself.
func NewRawReader(c net.Conn) io.Reader {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	r := &rawReader{c: c, raw: raw}
	r.fn = r.read
	return r
}

func (r *rawReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.p, r.n, r.err = p, 0, nil
	err := r.raw.Read(r.fn)
	r.p = nil
	if err != nil {
		return 0, err // a deadline, or the connection closed
	}
	if r.err != nil {
		return 0, &net.OpError{Op: "read", Net: r.c.LocalAddr().Network(), Source: r.c.LocalAddr(),
			Addr: r.c.RemoteAddr(), Err: os.NewSyscallError("read", r.err)}
	}
	if r.n == 0 {
		return 0, io.EOF
	}
	return r.n, nil
}

// read is one attempt; false asks the poller to wait for readability.
func (r *rawReader) read(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&r.p[0])), uintptr(len(r.p)))
		switch e {
		case 0:
			r.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r.err = e
			return true
		}
	}
}
