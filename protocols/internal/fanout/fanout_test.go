package fanout

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// benchStream is a published stream with n readers, as members of one
// group, whose sockets are drained by goroutines of the benchmark if drain
// is set; peers are the readers' ends of the connections.
func benchStream(b testing.TB, n int, drain bool) (pub *server.Publisher, tr *media.Track, g *group, members []*member, peers []net.Conn) {
	b.Helper()
	log := slog.New(slog.DiscardHandler)
	hub := server.NewHub(server.HubConfig{Logger: log, PathConfig: func(string) server.PathConfig {
		c := server.DefaultPathConfig()
		c.GracePeriod = 0
		c.Join = server.JoinLive
		return c
	}})
	b.Cleanup(hub.Close)
	tr = &media.Track{ID: 0, Codec: media.CodecH264, SPS: []byte{0x67, 0x42, 0, 0x1e}, PPS: []byte{0x68, 0xce}}
	var err error
	pub, err = hub.PublishTrusted("live/b", []*media.Track{tr}, server.PublishOptions{Protocol: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	g = &group{p: &Passes{}, st: hub.Stream("live/b"), kick: make(chan struct{}, 1)}
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close(); s.Close() })
		if drain {
			go io.Copy(io.Discard, c) //nolint:errcheck // until the benchmark closes it
		}
		r, err := hub.ReadTrusted(context.Background(), "live/b", server.ReadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(r.Close)
		raw, _ := s.(syscall.Conn).SyscallConn()
		frame := make([]byte, 16)
		m := &member{raw: raw, ev: make(chan event, 1), sink: &Sink{Reader: r, Conn: s, WriteTimeout: time.Second,
			Encode: func(dst [][]byte, batch []*media.Unit) [][]byte {
				// A reader's own framing around the shared bytes, as
				// HTTP-FLV's chunk-size line.
				dst = append(dst, frame)
				for _, u := range batch {
					dst = append(dst, u.Payload...)
				}
				return dst
			}}}
		members = append(members, m)
		peers = append(peers, c)
	}
	return pub, tr, g, members, peers
}

// BenchmarkPass: one unit published, then one pass over every reader (its
// units from the hub, encoded, one non-blocking writev each). ns/op is a
// pass; ns/reader is what one reader costs in it, kernel included.
//
// shared=true gives every reader the batch's shared bytes (Sink.Shared):
// the pass encodes each batch once.
func BenchmarkPass(b *testing.B) {
	for _, c := range []struct {
		n      int
		shared bool
		units  int // units a pass
	}{{1, false, 1}, {100, false, 1}, {1000, false, 1}, {1000, true, 1}, {2, true, 8}, {1000, true, 8}} {
		n := c.n
		b.Run(fmt.Sprintf("readers=%d/shared=%v/units=%d", n, c.shared, c.units), func(b *testing.B) {
			pub, tr, g, members, _ := benchStream(b, n, true)
			if c.shared {
				sh := &Shared{Encode: func(dst [][]byte, batch []*media.Unit) [][]byte {
					for _, u := range batch {
						// A header of its own before each unit's
						// payload, as an RTMP message's or an FLV tag's.
						dst = append(dst, make([]byte, 16))
						dst = append(dst, u.Payload...)
					}
					return dst
				}}
				for _, m := range members {
					m.sink.Shared, m.sink.Plain = sh, func([]*media.Unit) bool { return true }
				}
			}
			// A 2.7 Mbit/s 30 fps picture, or with units=8 about 100 ms of
			// such a stream: 3 pictures and 5 AAC frames.
			payload := make([]byte, 11000)
			if c.units > 1 {
				payload = payload[:4200]
			}
			var ps passScratch
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range c.units {
					d := time.Duration(i*c.units+j) * 12 * time.Millisecond
					pub.Write(&media.Unit{Track: tr, DTS: d, PTS: d, KeyFrame: i == 0 && j == 0, Payload: [][]byte{payload}})
				}
				g.pass(members, &ps)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/reader")
			for _, m := range members {
				select {
				case ev := <-m.ev:
					b.Fatalf("a reader left the pass: %v", ev.err)
				default:
				}
			}
		})
	}
}

// A pass encodes a batch once for the readers whose Plain says it is the
// same for them, and each of them gets those bytes; a reader whose Plain
// says no gets its own Encode's.
func TestPassSharesPlainBatches(t *testing.T) {
	pub, tr, g, members, _ := benchStream(t, 5, true)
	shares := 0
	sh := &Shared{Encode: func(dst [][]byte, batch []*media.Unit) [][]byte {
		shares++
		for _, u := range batch {
			dst = append(dst, u.Payload...)
		}
		return dst
	}}
	for i, m := range members {
		plain := i != 0 // the first reader is never in step: its own framing
		m.sink.Shared, m.sink.Plain = sh, func([]*media.Unit) bool { return plain }
	}
	payload := make([]byte, 1000)
	var ps passScratch
	for i := range 3 {
		d := time.Duration(i) * 33 * time.Millisecond
		pub.Write(&media.Unit{Track: tr, DTS: d, PTS: d, KeyFrame: i == 0, Payload: [][]byte{payload}})
		g.pass(members, &ps)
		if shares != i+1 {
			t.Fatalf("after %d passes, %d shared encodings, want one a pass", i+1, shares)
		}
		if ps.nshared != 0 {
			t.Fatal("a pass kept its shared encodings")
		}
	}
	// Readers at two places in the stream: two encodings in one pass.
	pub.Write(&media.Unit{Track: tr, DTS: 99 * time.Millisecond, PTS: 99 * time.Millisecond, Payload: [][]byte{payload}})
	g.pass(members[1:3], &ps)
	pub.Write(&media.Unit{Track: tr, DTS: 132 * time.Millisecond, PTS: 132 * time.Millisecond, Payload: [][]byte{payload}})
	before := shares
	g.pass(members, &ps)
	if shares-before != 2 {
		t.Errorf("%d shared encodings for readers at two places, want 2", shares-before)
	}
	if got, want := members[0].total.Load(), int64(4*16+5*len(payload)); got != want {
		t.Errorf("the reader out of step got %d bytes, want %d (its own framing)", got, want)
	}
	for _, m := range members[1:] {
		if got, want := m.total.Load(), int64(5*len(payload)); got != want {
			t.Errorf("a reader in step got %d bytes, want %d (the shared bytes)", got, want)
		}
	}
}

// A pass keeps at most maxSharedBatches encodings: readers at more places
// than that still get their own batch's bytes, the oldest encoding being
// made again when a later reader needs it.
func TestSharedBytesEviction(t *testing.T) {
	encodes := 0
	sh := &Shared{Encode: func(dst [][]byte, batch []*media.Unit) [][]byte {
		encodes++
		for _, u := range batch {
			dst = append(dst, append([]byte(nil), u.Payload[0]...))
		}
		return dst
	}}
	unit := func(b ...byte) *media.Unit { return &media.Unit{Payload: [][]byte{b}} }
	batches := make([][]*media.Unit, maxSharedBatches+2)
	for i := range batches {
		batches[i] = []*media.Unit{unit(byte(i)), unit(byte(i), 0xfe), unit(byte(i), 0xff)}
	}
	var ps passScratch
	check := func(batch []*media.Unit) {
		t.Helper()
		var want []byte
		for _, u := range batch {
			want = append(want, u.Payload[0]...)
		}
		// The first reader gets the encoding as made, the second its
		// copy in one buffer.
		for reader := range 2 {
			got, _ := ps.sharedBytes(sh, batch)
			if reader == 1 && len(got) != 1 {
				t.Fatalf("the second reader got %d buffers, want 1", len(got))
			}
			if b := bytes.Join(got, nil); !bytes.Equal(b, want) {
				t.Fatalf("reader %d got %x, want %x", reader, b, want)
			}
		}
	}
	for _, b := range batches {
		check(b)
	}
	if encodes != len(batches) || ps.nshared != maxSharedBatches {
		t.Fatalf("%d encodings, %d kept; want %d, %d kept", encodes, ps.nshared, len(batches), maxSharedBatches)
	}
	newest := batches[len(batches)-1]
	check(newest)
	if encodes != len(batches) {
		t.Fatal("the newest batch was encoded again")
	}
	check(batches[0]) // evicted: encoded again
	if encodes != len(batches)+1 {
		t.Fatalf("an evicted batch was not encoded again (%d encodings)", encodes)
	}
	// A batch with the newest one's ends and length but another unit
	// between them (a reader that dropped one and has a later one) is
	// another encoding.
	check([]*media.Unit{newest[0], unit(0xaa), newest[2]})
	if encodes != len(batches)+2 {
		t.Fatal("a batch was matched by its ends")
	}
}

// A reader whose socket fills in a pass keeps the rest of the shared bytes
// as its pending bytes, unchanged by the passes that follow (which encode
// other batches, and copy them, for the other readers), and its peer gets
// every byte in order once its goroutine writes them. The stalled reader is
// a batch's first reader (the encoding as made) or its last (the pass's
// copy, which the reader takes from the group: without that the next
// passes' copies overwrite its bytes).
func TestSharedShortWriteKeepsBytes(t *testing.T) {
	for _, last := range []bool{false, true} {
		t.Run(fmt.Sprintf("copy=%v", last), func(t *testing.T) { testSharedShortWrite(t, last) })
	}
}

func testSharedShortWrite(t *testing.T, last bool) {
	pub, tr, g, members, peers := benchStream(t, 3, false)
	for _, c := range peers[1:] {
		go io.Copy(io.Discard, c) //nolint:errcheck // until the test closes it
	}
	stalled := members[0]
	// Small buffers: the stalled reader's socket fills in a few passes.
	if err := stalled.sink.Conn.(*net.TCPConn).SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	if err := peers[0].(*net.TCPConn).SetReadBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	sh := &Shared{Encode: func(dst [][]byte, batch []*media.Unit) [][]byte {
		for _, u := range batch {
			dst = append(dst, append([]byte(nil), u.Payload[0]...)) // fresh memory, as the contract asks
		}
		return dst
	}}
	for _, m := range members {
		m.sink.Shared, m.sink.Plain = sh, func([]*media.Unit) bool { return true }
	}
	order := members
	if last {
		order = []*member{members[1], members[2], members[0]}
	}
	var want bytes.Buffer
	var ps passScratch
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("the stalled reader's socket never filled")
		}
		payload := bytes.Repeat([]byte{byte(i)}, 64<<10)
		d := time.Duration(i) * 33 * time.Millisecond
		pub.Write(&media.Unit{Track: tr, DTS: d, PTS: d, KeyFrame: i == 0, Payload: [][]byte{payload}})
		want.Write(payload)
		g.pass(order, &ps)
		select {
		case ev := <-stalled.ev:
			if ev.err != nil {
				t.Fatalf("the stalled reader ended: %v", ev.err)
			}
		default:
			continue
		}
		break
	}
	if len(stalled.pending) == 0 {
		t.Fatal("the stalled reader left the pass with nothing pending")
	}
	if copied := ps.shared[0].one == nil; copied != last {
		t.Fatalf("the group gave up its copy: %v, want %v (the stalled reader had the copy)", copied, last)
	}
	// More passes for the other readers: new shared encodings and their
	// copies.
	for i := range 5 {
		d := time.Duration(1000+i) * 33 * time.Millisecond
		pub.Write(&media.Unit{Track: tr, DTS: d, PTS: d, Payload: [][]byte{bytes.Repeat([]byte{0xee}, 64<<10)}})
		g.pass(members[1:], &ps)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peers[0], int64(want.Len())))
		got <- b
	}()
	if err := stalled.drain(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("the stalled reader's peer got %d bytes that differ from the %d sent", len(b), want.Len())
	}
	if stalled.total.Load() != int64(want.Len()) {
		t.Errorf("%d bytes counted, want %d", stalled.total.Load(), want.Len())
	}
}
