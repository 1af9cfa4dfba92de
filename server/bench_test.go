package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

// benchUnits is a cyclic source: 25 fps video with a keyframe every 50
// frames, an audio unit after each video unit. Write fills Size and adds the
// (zero) stream offset, so the units can be written again and again.
func benchUnits() []*media.Unit { return genUnits(0, 500, 50, true) }

// BenchmarkPublisherWrite measures Publisher.Write with N readers attached,
// half of them draining in their own goroutines (waking on every unit) and
// half idle. The stream keeps one shared ring, so ns/op and allocs/op should
// not grow with N beyond the cost of waking the draining goroutines.
func BenchmarkPublisherWrite(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("readers=%d", n), func(b *testing.B) {
			pc := testConf()
			pc.ReaderQueue = 1024
			pc.MaxReaders = 0
			h := newTestHub(b, pc)
			p := mustPublish(b, h, "live/bench", videoTracks())
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for i := range n {
				r := mustRead(b, h, "live/bench")
				if i%2 == 0 || n == 1 { // half idle (with one reader, it drains)
					drain(ctx, &wg, r)
				}
			}
			units := benchUnits()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.Write(units[i%len(units)])
				i++
			}
			b.StopTimer()
			cancel()
			p.Close()
			wg.Wait()
		})
	}
}

// BenchmarkPublisherWriteIdleReaders is Write with every reader idle: the
// pure cost of the write path, which must be the same for any N.
func BenchmarkPublisherWriteIdleReaders(b *testing.B) {
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("readers=%d", n), func(b *testing.B) {
			h := newTestHub(b, testConf())
			p := mustPublish(b, h, "live/bench", videoTracks())
			for range n {
				mustRead(b, h, "live/bench")
			}
			units := benchUnits()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.Write(units[i%len(units)])
				i++
			}
		})
	}
}

// BenchmarkReaderDrain measures one reader draining what the publisher wrote,
// by NextBatch (batch of 64) and by Next; ns/unit is per unit delivered.
func BenchmarkReaderDrain(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			pc := testConf()
			pc.ReaderQueue = 1024
			h := newTestHub(b, pc)
			p := mustPublish(b, h, "live/bench", videoTracks())
			r := mustRead(b, h, "live/bench")
			units := benchUnits()
			ctx := context.Background()
			buf := make([]*media.Unit, 0, batch)
			const perRound = 256
			delivered := 0
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				b.StopTimer()
				for range perRound {
					p.Write(units[i%len(units)])
					i++
				}
				b.StartTimer()
				got := 0
				for got < perRound {
					var err error
					buf, err = r.NextBatch(ctx, buf[:0])
					if err != nil {
						b.Fatal(err)
					}
					got += len(buf)
				}
				delivered += got
			}
			if st := r.Stats(); st.Drops != 0 {
				b.Fatalf("reader dropped %d units", st.Drops)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(delivered), "ns/unit")
		})
	}
}

// BenchmarkJoin measures Hub.Read on a stream with a full cached GOP.
func BenchmarkJoin(b *testing.B) {
	h := newTestHub(b, testConf())
	p := mustPublish(b, h, "live/bench", videoTracks())
	writeAll(p, genUnits(0, 50, 50, true)) // 100 cached units
	b.ReportAllocs()
	for b.Loop() {
		r, err := h.ReadTrusted(context.Background(), "live/bench", ReadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

// BenchmarkWriteUnderStats measures Publisher.Write with 1000 readers (half
// draining) while other goroutines poll what the API, the home page and a
// Prometheus scrape read: Stream.Stats, Stream.Tracks and Hub.Sessions, in
// a loop. It reports the p99 and max latency of one Write: a reader-count
// walk under the lock Write needs would show there.
func BenchmarkWriteUnderStats(b *testing.B) {
	pc := testConf()
	pc.ReaderQueue = 1024
	pc.MaxReaders = 0
	h := newTestHub(b, pc)
	p := mustPublish(b, h, "live/bench", videoTracks())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 1000 {
		r := mustRead(b, h, "live/bench")
		r.SetPeer(Peer{Protocol: "httpflv", Remote: "127.0.0.1:1"}, nil)
		if i%2 == 0 {
			drain(ctx, &wg, r)
		}
	}
	s := h.Stream("live/bench")
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				s.Stats()
				s.Tracks()
				h.Sessions()
			}
		})
	}
	units := benchUnits()
	lat := make([]time.Duration, 0, 1<<16)
	i := 0
	for b.Loop() {
		t0 := time.Now()
		p.Write(units[i%len(units)])
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(t0))
		}
		i++
	}
	b.StopTimer()
	cancel()
	p.Close()
	wg.Wait()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
		b.ReportMetric(float64(lat[len(lat)*999/1000].Nanoseconds()), "p99.9-ns")
		b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
	}
}

// drain reads r in a goroutine of wg until ctx ends.
func drain(ctx context.Context, wg *sync.WaitGroup, r *Reader) {
	wg.Go(func() {
		buf := make([]*media.Unit, 0, 64)
		for {
			var err error
			buf, err = r.NextBatch(ctx, buf[:0])
			if err != nil {
				return
			}
		}
	})
}
