package fanout

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// A raw reader of a TCP connection reads what the peer sent, waits for
// more, honours the read deadline (and a later one cleared), and ends
// with io.EOF when the peer hangs up and with net.ErrClosed once closed.
func TestRawReader(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := NewRawReader(c)
	if _, ok := r.(*rawReader); !ok {
		t.Fatalf("a TCP connection got %T, not a raw reader", r)
	}

	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 8)
	if n, err := r.Read(buf); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("nothing sent: %d, %v; want a deadline error", n, err)
	}
	c.SetReadDeadline(time.Time{})

	go func() {
		time.Sleep(20 * time.Millisecond) // the read waits in the poller first
		peer.Write([]byte("hello, reader"))
	}()
	got, err := io.ReadAll(io.LimitReader(r, 13))
	if err != nil || string(got) != "hello, reader" {
		t.Fatalf("read %q, %v", got, err)
	}

	peer.Close()
	if n, err := r.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("after the peer hung up: %d, %v; want io.EOF", n, err)
	}
	c.Close()
	if _, err := r.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after Close: %v; want net.ErrClosed", err)
	}
}

// Anything but a socket is read as itself.
func TestRawReaderNotASocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if r := NewRawReader(a); r != io.Reader(a) {
		t.Fatalf("a pipe got %T", r)
	}
}
