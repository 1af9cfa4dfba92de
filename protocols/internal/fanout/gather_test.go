package fanout

import (
	"bytes"
	"net"
	"testing"
)

// recorder counts the writes it takes.
type recorder struct {
	bytes.Buffer
	writes int
}

func (r *recorder) Write(p []byte) (int, error) { r.writes++; return r.Buffer.Write(p) }

// TestWriteBuffersGathers: a writer that is not a socket (a TLS
// connection) gets many small buffers in few writes, every byte in order.
func TestWriteBuffersGathers(t *testing.T) {
	var want []byte
	var bufs net.Buffers
	for i := range 3000 {
		b := bytes.Repeat([]byte{byte(i)}, 1+i%50)
		if i == 1000 {
			b = bytes.Repeat([]byte{7}, 200<<10) // bigger than one gathered write
		}
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	var r recorder
	n, err := WriteBuffers(&r, &bufs)
	if err != nil || n != int64(len(want)) {
		t.Fatalf("wrote %d, %v; want %d", n, err, len(want))
	}
	if !bytes.Equal(r.Bytes(), want) {
		t.Error("the bytes differ")
	}
	if len(bufs) != 0 {
		t.Errorf("%d buffers left", len(bufs))
	}
	if max := len(want)/gatherSize + 1; r.writes > max {
		t.Errorf("%d writes for %d bytes, want at most %d", r.writes, len(want), max)
	}
}
