package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

// A publisher accepted within the grace period (Claim) keeps the stream and
// its readers for as long as its tracks take, even past the grace period;
// while it holds the path, another publisher is refused; once it publishes,
// the readers go on with its units.
func TestClaimHoldsTheGracePeriod(t *testing.T) {
	pc := testConf()
	pc.GracePeriod = 100 * time.Millisecond
	h := newTestHub(t, pc)
	p := mustPublish(t, h, "live/c", videoTracks())
	writeAll(p, genUnits(0, 10, 5, true))
	r := mustRead(t, h, "live/c")
	p.Close() // the grace period starts
	c, err := h.claim("live/c", PublishOptions{Protocol: "test", Remote: "again"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * pc.GracePeriod) // the tracks take longer than the grace period
	if h.Stream("live/c") == nil {
		t.Fatal("the stream ended while a claim held it")
	}
	if _, err := h.PublishTrusted("live/c", videoTracks(), PublishOptions{}); !errors.Is(err, ErrPathBusy) {
		t.Fatalf("another publisher while claimed: %v, want ErrPathBusy", err)
	}
	if _, err := h.claim("live/c", PublishOptions{}); !errors.Is(err, ErrPathBusy) {
		t.Fatalf("another claim: %v, want ErrPathBusy", err)
	}
	p2, err := c.Publish(copyTracks(videoTracks()))
	if err != nil {
		t.Fatal(err)
	}
	writeAll(p2, genUnits(100, 10, 5, true))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := 0
	for got < 30 {
		if _, err := r.Next(ctx); err != nil {
			t.Fatalf("the reader ended after %d units: %v", got, err)
		}
		got++
	}
	p2.Close()
}

// A claim that never publishes gives the stream back to the grace period:
// it ends after gracePeriod, or at once without readers.
func TestClaimReleased(t *testing.T) {
	pc := testConf()
	pc.GracePeriod = 100 * time.Millisecond
	h := newTestHub(t, pc)
	p := mustPublish(t, h, "live/r", videoTracks())
	writeAll(p, genUnits(0, 5, 5, true))
	r := mustRead(t, h, "live/r")
	p.Close()
	c, err := h.claim("live/r", PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Release()
	c.Release() // twice is fine
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, err := r.Next(ctx)
		if errors.Is(err, ErrStreamClosed) {
			break
		}
		if err != nil {
			t.Fatalf("the reader ended with %v, want ErrStreamClosed after the new grace period", err)
		}
	}
	if h.Stream("live/r") != nil {
		t.Fatal("the stream outlived its grace period after the claim was released")
	}
	// A claim on a path nobody publishes holds nothing; Publish works.
	c, err = h.claim("live/new", PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p3, err := c.Publish(copyTracks(videoTracks()))
	if err != nil {
		t.Fatal(err)
	}
	p3.Close()
}

func copyTracks(ts []*media.Track) []*media.Track {
	out := make([]*media.Track, len(ts))
	for i, t := range ts {
		c := *t
		out[i] = &c
	}
	return out
}
