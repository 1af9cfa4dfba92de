package fanout

import (
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

// benchStream is a published stream with n readers whose sockets are
// drained by goroutines of the benchmark, as members of one group.
func benchStream(b testing.TB, n int, drain bool) (*server.Publisher, *media.Track, *group, []*member) {
	b.Helper()
	log := slog.New(slog.DiscardHandler)
	hub := server.NewHub(server.HubConfig{Logger: log, PathConfig: func(string) server.PathConfig {
		c := server.DefaultPathConfig()
		c.GracePeriod = 0
		c.Join = server.JoinLive
		return c
	}})
	b.Cleanup(hub.Close)
	tr := &media.Track{ID: 0, Codec: media.CodecH264, SPS: []byte{0x67, 0x42, 0, 0x1e}, PPS: []byte{0x68, 0xce}}
	pub, err := hub.PublishTrusted("live/b", []*media.Track{tr}, server.PublishOptions{Protocol: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	g := &group{p: &Passes{}, st: hub.Stream("live/b"), kick: make(chan struct{}, 1)}
	var members []*member
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
	}
	return pub, tr, g, members
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
	}{{1, false}, {100, false}, {1000, false}, {1000, true}} {
		n := c.n
		b.Run(fmt.Sprintf("readers=%d/shared=%v", n, c.shared), func(b *testing.B) {
			pub, tr, g, members := benchStream(b, n, true)
			if c.shared {
				frame := make([]byte, 16)
				sh := &Shared{Encode: func(dst [][]byte, batch []*media.Unit) [][]byte {
					dst = append(dst, frame)
					for _, u := range batch {
						dst = append(dst, u.Payload...)
					}
					return dst
				}}
				for _, m := range members {
					m.sink.Shared, m.sink.Plain = sh, func([]*media.Unit) bool { return true }
				}
			}
			payload := make([]byte, 11000) // a 2.7 Mbit/s 30 fps picture
			var ps passScratch
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d := time.Duration(i) * 33 * time.Millisecond
				pub.Write(&media.Unit{Track: tr, DTS: d, PTS: d, KeyFrame: i == 0, Payload: [][]byte{payload}})
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
	pub, tr, g, members := benchStream(t, 5, true)
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
		if len(ps.shared) != 0 {
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
