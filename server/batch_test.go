package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

// With batching on (enough readers), a reader returns at most once per
// BatchInterval and gets what queued meanwhile in one batch; below
// BatchReaders it returns for every unit.
func TestBatchInterval(t *testing.T) {
	for _, tc := range []struct {
		name      string
		readers   int
		wantBatch bool
	}{{"below batchReaders", 1, false}, {"at batchReaders", 2, true}} {
		t.Run(tc.name, func(t *testing.T) {
			pc := testConf()
			pc.BatchInterval = 150 * time.Millisecond
			pc.BatchReaders = 2
			h := newTestHub(t, pc)
			p := mustPublish(t, h, "live/batch", videoTracks())
			units := genUnits(0, 40, 10, false)
			p.Write(units[0])
			r := mustRead(t, h, "live/batch")
			for i := 1; i < tc.readers; i++ {
				mustRead(t, h, "live/batch")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := r.NextBatch(ctx, nil); err != nil { // the cached GOP: at once
				t.Fatal(err)
			}
			// A unit every 10 ms while the reader reads.
			go func() {
				for _, u := range units[1:] {
					time.Sleep(10 * time.Millisecond)
					p.Write(u)
				}
			}()
			start := time.Now()
			got := 0
			var sizes []int
			for got < len(units)-1 {
				b, err := r.NextBatch(ctx, make([]*media.Unit, 0, 64))
				if err != nil {
					t.Fatal(err)
				}
				got += len(b)
				sizes = append(sizes, len(b))
			}
			elapsed := time.Since(start)
			if tc.wantBatch {
				// 39 units over ~390 ms in batches at most every 150 ms.
				if len(sizes) > 5 || elapsed < 300*time.Millisecond {
					t.Errorf("batches %v in %v: want at most 5 batches and ≥300ms", sizes, elapsed)
				}
			} else if len(sizes) < 10 {
				t.Errorf("batches %v: want a return for (nearly) every unit", sizes)
			}
		})
	}
}

// A reader waiting out its batch interval stops at once when ctx is done.
func TestBatchIntervalCancel(t *testing.T) {
	pc := testConf()
	pc.BatchInterval = time.Second
	pc.BatchReaders = 1
	h := newTestHub(t, pc)
	p := mustPublish(t, h, "live/batch", videoTracks())
	units := genUnits(0, 4, 2, false)
	p.Write(units[0])
	r := mustRead(t, h, "live/batch")
	if _, err := r.NextBatch(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	p.Write(units[1])
	if _, err := r.NextBatch(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := r.NextBatch(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("cancel took %v", d)
	}
}
