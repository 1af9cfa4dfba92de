package fanout

import (
	"io"
	"net"
	"sync"
	"syscall"
)

// gatherSize is the most one gathered write holds: four TLS records.
const gatherSize = 64 << 10

var gatherPool = sync.Pool{New: func() any { b := make([]byte, 0, gatherSize); return &b }}

// WriteBuffers writes bufs to w and consumes them, as net.Buffers.WriteTo
// does. A socket (syscall.Conn) takes them in one writev. Anything else
// (a *tls.Conn, for which every Write is at least one TLS record and one
// system call) gets them gathered into writes of up to 64 KiB: a batch of
// small frames and headers is a few records, not one per buffer.
func WriteBuffers(w io.Writer, bufs *net.Buffers) (int64, error) {
	if _, ok := w.(syscall.Conn); ok {
		return bufs.WriteTo(w)
	}
	bp := gatherPool.Get().(*[]byte)
	defer gatherPool.Put(bp)
	var total int64
	for len(*bufs) > 0 {
		b := (*bp)[:0]
		for len(*bufs) > 0 && len(b) < cap(b) {
			head := (*bufs)[0]
			n := copy(b[len(b):cap(b)], head)
			b = b[:len(b)+n]
			if n == len(head) {
				(*bufs)[0] = nil
				*bufs = (*bufs)[1:]
			} else {
				(*bufs)[0] = head[n:]
			}
		}
		n, err := w.Write(b)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
