//go:build linux

package webrtc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestCorkSendsEveryDatagramInOrder: what a viewer gathers reaches the
// peer as the same datagrams, in the same order, whatever their sizes
// (runs of equal sizes go as one GSO send), from a dual-stack socket to
// an IPv4 peer and from an IPv4 socket; and one datagram a call where a
// device refuses GSO.
func TestCorkSendsEveryDatagramInOrder(t *testing.T) {
	for _, tc := range []struct {
		listen string
		noGSO  bool
	}{{"[::]:0", false}, {"127.0.0.1:0", false}, {"[::]:0", true}} {
		listen := tc.listen
		t.Run(fmt.Sprintf("%s/noGSO=%v", listen, tc.noGSO), func(t *testing.T) {
			ua, _ := net.ResolveUDPAddr("udp", listen)
			uc, err := net.ListenUDP("udp", ua)
			if err != nil {
				t.Skipf("no %s socket here: %v", listen, err)
			}
			g := newGSOConn(uc, slog.New(slog.DiscardHandler))
			defer g.Close()
			if !g.gso.Load() {
				t.Fatal("this kernel has no UDP GSO (Linux 4.18+): the batched path is untested")
			}
			peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			pa := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			dst := pa
			if listen[0] == '[' {
				dst = netip.AddrPortFrom(netip.AddrFrom16(pa.Addr().As16()), pa.Port()) // as pion may hand it: mapped
			}

			var want [][]byte
			sizes := []int{1200, 1200, 1200, 700, 1200, 1200, 90, 90, 91, 1300, 20}
			for i := 0; i < 70; i++ { // more than one GSO send's 64 segments
				sizes = append(sizes, 1100)
			}
			k := g.corkFor(dst)
			if k == nil {
				t.Fatal("no cork for", dst)
			}
			if tc.noGSO {
				g.gso.Store(false) // as after a send said EIO
			}
			k.begin()
			for i, n := range sizes {
				b := bytes.Repeat([]byte{byte(i)}, n)
				want = append(want, bytes.Clone(b))
				if _, err := g.WriteToAddrPort(b, dst); err != nil {
					t.Fatal(err)
				}
				b[0] ^= 0xff // the caller reuses its buffer: the cork keeps a copy
			}
			k.flush()
			// Not gathering any more: a write goes at once.
			last := []byte("after")
			want = append(want, last)
			if _, err := g.WriteToAddrPort(last, dst); err != nil {
				t.Fatal(err)
			}
			g.release(k)

			buf := make([]byte, 2048)
			_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i, w := range want {
				n, err := peer.Read(buf)
				if err != nil {
					t.Fatalf("datagram %d of %d: %v", i, len(want), err)
				}
				if !bytes.Equal(buf[:n], w) {
					t.Fatalf("datagram %d: %d bytes starting %d, want %d bytes starting %d", i, n, buf[0], len(w), w[0])
				}
			}
			if d := g.dropped.Load(); d != 0 {
				t.Fatalf("%d datagrams dropped", d)
			}
		})
	}
}

// TestCorkReleasedWritesDirectly: after release, the peer's writes are
// not gathered (nothing is left waiting for a flush that never comes).
func TestCorkReleasedWritesDirectly(t *testing.T) {
	g, peer, dst := corkPair(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	k := g.corkFor(dst)
	k.begin()
	if _, err := g.WriteToAddrPort([]byte("gathered"), dst); err != nil {
		t.Fatal(err)
	}
	g.release(k) // a viewer that ends mid-batch: what it gathered is sent
	k.flush()    // and a late flush is harmless
	if _, err := g.WriteToAddrPort([]byte("direct"), dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, w := range []string{"gathered", "direct"} {
		n, err := peer.Read(buf)
		if err != nil || string(buf[:n]) != w {
			t.Fatalf("got %q, %v; want %q", buf[:n], err, w)
		}
	}
}

// TestCorksManyWritersInOrder: writers to several peers at once, some
// gathering, some not: every peer gets all its datagrams in the order
// they were written; a write after Close fails.
func TestCorksManyWritersInOrder(t *testing.T) {
	uc, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	g := newGSOConn(uc, slog.New(slog.DiscardHandler))
	const peers, each = 8, 400
	var wg sync.WaitGroup
	got := make([][]uint32, peers)
	ready := make(chan netip.AddrPort, peers)
	for p := 0; p < peers; p++ {
		pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		_ = pc.SetReadBuffer(4 << 20)
		ready <- pc.LocalAddr().(*net.UDPAddr).AddrPort()
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
			for len(got[p]) < each {
				n, err := pc.Read(buf)
				if err != nil || n < 4 {
					return
				}
				got[p] = append(got[p], binary.BigEndian.Uint32(buf))
			}
		}()
	}
	var wr sync.WaitGroup
	for p := 0; p < peers; p++ {
		dst := <-ready
		wr.Add(1)
		go func() {
			defer wr.Done()
			var k *cork
			if p%2 == 0 {
				k = g.corkFor(dst)
			}
			b := make([]byte, 1000)
			for i := 0; i < each; i++ {
				if i%10 == 0 {
					k.flush()
					k.begin()
				}
				binary.BigEndian.PutUint32(b, uint32(i))
				if _, err := g.WriteToAddrPort(b[:100+i%7*150], dst); err != nil {
					t.Error(err)
					return
				}
			}
			k.flush()
			g.release(k)
		}()
	}
	wr.Wait()
	g.Close()
	wg.Wait()
	t.Logf("dropped %d", g.dropped.Load())
	for p, seq := range got {
		if len(seq) != each {
			t.Fatalf("peer %d got %d of %d datagrams", p, len(seq), each)
		}
		for i, v := range seq {
			if v != uint32(i) {
				t.Fatalf("peer %d: datagram %d is %d", p, i, v)
			}
		}
	}
	if _, err := g.WriteToAddrPort([]byte("late"), netip.MustParseAddrPort("127.0.0.1:9")); err == nil {
		t.Fatal("a write after Close was taken")
	}
}

// corkPair returns a gsoConn listening on local and a peer socket on IPv4
// loopback with its address; both are closed when the test ends.
func corkPair(t *testing.T, local *net.UDPAddr) (*gsoConn, *net.UDPConn, netip.AddrPort) {
	t.Helper()
	uc, err := net.ListenUDP("udp", local)
	if err != nil {
		t.Fatal(err)
	}
	g := newGSOConn(uc, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { g.Close() })
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return g, peer, peer.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestCorkBatchRefusedByTheKernel: a flush of several runs (the sound and
// a picture) to a peer the kernel refuses (port 0: EINVAL, as a firewall's
// EPERM or an unreachable network) returns, counts the loss and leaves the
// cork usable; a batch whose second run the kernel refuses (more segments
// than UDP GSO takes: EINVAL, as a route MTU below the segment size) sends
// the first run once and the second through the fallbacks.
func TestCorkBatchRefusedByTheKernel(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "[::]:0"} {
		t.Run(listen, func(t *testing.T) {
			ua, _ := net.ResolveUDPAddr("udp", listen)
			g, _, _ := corkPair(t, ua)
			dst := netip.MustParseAddrPort("127.0.0.1:0")
			k := g.corkFor(dst)
			done := make(chan any, 1)
			go func() {
				defer func() { done <- recover() }()
				k.begin()
				g.WriteToAddrPort([]byte("audio"), dst) //nolint:errcheck // gathered
				for _, n := range []int{1200, 1200, 300} {
					g.WriteToAddrPort(make([]byte, n), dst) //nolint:errcheck // gathered
				}
				k.flush()
			}()
			select {
			case r := <-done:
				if r != nil {
					t.Fatalf("flush panicked: %v", r)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("flush did not return")
			}
			if !k.mu.TryLock() {
				t.Fatal("the cork's lock is still held")
			}
			k.mu.Unlock()
			if g.dropped.Load() == 0 {
				t.Fatal("the refused datagrams were not counted as dropped")
			}
			g.release(k)
		})
	}

	t.Run("second run refused", func(t *testing.T) {
		g, peer, dst := corkPair(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		_ = peer.SetReadBuffer(1 << 20)
		k := g.corkFor(dst)
		done := make(chan struct{})
		go func() {
			defer close(done)
			k.mu.Lock()
			defer k.mu.Unlock()
			k.runs = append(k.runs[:0], gsoRun{b: []byte("audio"), seg: 5, count: 1}, gsoRun{b: make([]byte, 400), seg: 1, count: 400})
			k.sendBatch()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("sendBatch did not return")
		}
		buf := make([]byte, 2048)
		audio, other := 0, 0
		_ = peer.SetReadDeadline(time.Now().Add(time.Second))
		for audio+other < 401 {
			n, err := peer.Read(buf)
			if err != nil {
				break
			}
			if string(buf[:n]) == "audio" {
				audio++
			} else {
				other++
			}
		}
		if audio != 1 || other != 400 {
			t.Fatalf("the peer got the audio %d times and %d of the 400 one-byte datagrams, want 1 and 400", audio, other)
		}
	})
}

// A packet whose sealing panics (here: no SRTP context) leaves the cork
// unlocked, so that the flush deferred above it and the guard of the
// viewer's pass run: the panic ends that viewer, it does not hang the
// goroutine (and with it a fan's other viewers).
func TestSealPanicUnlocksTheCork(t *testing.T) {
	g, _, peer := corkPair(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	k := g.corkFor(peer)
	if k == nil {
		t.Skip("no UDP GSO on this kernel: no cork to lock") // the kernels CI runs on have it
	}
	v := &viewer{}
	v.cork.Store(k)
	s := &srtpSender{} // no context: EncryptRTP panics
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		k.begin()
		defer k.flush()
		s.write(v, peer, &trackBinding{pt: 96, ssrc: 1}, true, 1, 0, []byte{1, 2, 3}) //nolint:errcheck
	}()
	select {
	case p := <-done:
		if p == nil {
			t.Fatal("sealing without a context did not panic: the test checks nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the goroutine hung: the cork stayed locked after the panic")
	}
	k.begin() // usable again
	k.flush()
}
