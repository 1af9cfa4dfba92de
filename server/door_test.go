package server

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

// Every exported way into the hub that attaches a reader or a publisher is
// either the guarded door (Read, Publish: access checked in the same call)
// or named Trusted, so a reviewer can grep for every place that skips the
// checks. A new entry point fails this test until it is one of them.
func TestHubAPISurface(t *testing.T) {
	attaching := map[reflect.Type]bool{
		reflect.TypeFor[*Reader]():    true,
		reflect.TypeFor[*Publisher](): true,
		reflect.TypeFor[*Claim]():     true,
	}
	var got []string
	ht := reflect.TypeFor[*Hub]()
	for i := range ht.NumMethod() {
		m := ht.Method(i)
		for j := range m.Type.NumOut() {
			if attaching[m.Type.Out(j)] {
				got = append(got, m.Name)
			}
		}
	}
	want := []string{"Publish", "PublishTrusted", "Read", "ReadTrusted"}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("exported Hub methods that attach a reader or publisher: %v, want %v: a new one must check access "+
			"(like Read and Publish) or be named ...Trusted", got, want)
	}
}

// The guarded door refuses a wrong key in the same call that would attach,
// with the refusal delay, and attaches with the right one.
func TestGuardedDoor(t *testing.T) {
	pc := testConf()
	pc.ReadKey, pc.PublishKey = "rk", "pk"
	h := newTestHub(t, pc)
	ctx := context.Background()
	start := time.Now()
	if _, err := h.Publish(ctx, "live/d", PublishRequest{Key: "wrong", Peer: Peer{Protocol: "test", Remote: "192.0.2.1:1"}}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Publish with a wrong key: %v", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("a refused publisher was answered after %s, want the refusal delay", d)
	}
	c, err := h.Publish(ctx, "live/d", PublishRequest{Key: "pk"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Publish(videoTracks())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := h.Read(ctx, "live/d", ReadRequest{Key: "nope", Peer: Peer{Protocol: "test", Remote: "192.0.2.1:2"}}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Read with a wrong key: %v", err)
	}
	r, err := h.Read(ctx, "live/d", ReadRequest{Key: "rk", Peer: Peer{Protocol: "test", Remote: "192.0.2.1:3"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n := h.Stream("live/d").Stats().ReadersByProtocol["test"]; n != 1 {
		t.Fatalf("the reader is listed %d times under its protocol, want 1 (Read sets its peer)", n)
	}
}
