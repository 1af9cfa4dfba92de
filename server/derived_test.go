package server

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

// A derived stream (a ladder rung) needs no publish key, keeps its
// timestamps across a republish, and the hub tells OnPublish and
// OnUnpublish about every publisher with the derived flag.
func TestDerivedStream(t *testing.T) {
	pc := testConf()
	pc.GracePeriod = time.Minute
	pc.PublishKey = "secret"
	var mu sync.Mutex
	var events []string
	record := func(kind string) func(string, bool) {
		return func(path string, derived bool) {
			mu.Lock()
			defer mu.Unlock()
			d := ""
			if derived {
				d = " derived"
			}
			events = append(events, kind+" "+path+d)
		}
	}
	h := NewHub(HubConfig{PathConfig: func(string) PathConfig { return pc }, Logger: discardLogger(),
		OnPublish: record("publish"), OnUnpublish: record("unpublish")})
	t.Cleanup(h.Close)

	if _, err := h.PublishTrusted("live/x/240p", []*media.Track{{Codec: media.CodecH264}}, PublishOptions{}); err != ErrUnauthorized {
		t.Fatalf("a plain publisher without the key: %v, want ErrUnauthorized", err)
	}
	v := &media.Track{ID: 0, Codec: media.CodecH264}
	p, err := h.PublishTrusted("live/x/240p", []*media.Track{v}, PublishOptions{Derived: true, Protocol: "transcode"})
	if err != nil {
		t.Fatalf("a derived publisher needs no key: %v", err)
	}
	if !p.Stream().Derived() || !p.Stream().Publishing() {
		t.Fatal("the stream is not flagged derived and publishing")
	}
	r := mustRead(t, h, "live/x/240p")
	p.Write(&media.Unit{Track: v, PTS: 10 * time.Second, DTS: 10 * time.Second, KeyFrame: true, Payload: [][]byte{{0x65}}})
	p.Close()
	// The restarted process goes on with the source's timestamps, 3 s later.
	v2 := &media.Track{ID: 0, Codec: media.CodecH264}
	p2, err := h.PublishTrusted("live/x/240p", []*media.Track{v2}, PublishOptions{Derived: true})
	if err != nil {
		t.Fatal(err)
	}
	p2.Write(&media.Unit{Track: v2, PTS: 13 * time.Second, DTS: 13 * time.Second, KeyFrame: true, Payload: [][]byte{{0x65}}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, want := range []time.Duration{10 * time.Second, 13 * time.Second} {
		u, err := r.Next(ctx)
		if err != nil || u.DTS != want {
			t.Fatalf("got %v (%v), want DTS %v: a derived stream keeps its timestamps", u, err, want)
		}
	}
	p2.Close()
	mu.Lock()
	defer mu.Unlock()
	want := []string{"publish live/x/240p derived", "unpublish live/x/240p derived", "publish live/x/240p derived", "unpublish live/x/240p derived"}
	if len(events) != len(want) {
		t.Fatalf("events %q, want %q", events, want)
	}
	for i := range want {
		if events[i] != want[i] {
			t.Fatalf("events %q, want %q", events, want)
		}
	}
}

// While a source is published, only its ladder may publish on its rung
// paths; a restarted ladder takes its rung over from the stopping one.
func TestRungPathReserved(t *testing.T) {
	conf := func(path string) PathConfig {
		pc := testConf()
		if path == "live/x/240p" {
			pc.RungOf = "live/x"
		}
		return pc
	}
	h := NewHub(HubConfig{PathConfig: conf, Logger: discardLogger()})
	t.Cleanup(h.Close)
	v := func() []*media.Track { return []*media.Track{{ID: 0, Codec: media.CodecH264}} }
	// No source yet: the path is anyone's.
	p, err := h.PublishTrusted("live/x/240p", v(), PublishOptions{})
	if err != nil {
		t.Fatalf("a rung path with no live source: %v", err)
	}
	p.Close()
	src := mustPublish(t, h, "live/x", v())
	if _, err := h.Publish(context.Background(), "live/x/240p", PublishRequest{}); err != ErrRungPath {
		t.Fatalf("Publish on a live source's rung: %v, want ErrRungPath", err)
	}
	if _, err := h.PublishTrusted("live/x/240p", v(), PublishOptions{Protocol: "rtmp"}); err != ErrRungPath {
		t.Fatalf("Publish on a live source's rung: %v, want ErrRungPath", err)
	}
	old, err := h.PublishTrusted("live/x/240p", v(), PublishOptions{Derived: true})
	if err != nil {
		t.Fatalf("the ladder: %v", err)
	}
	next, err := h.PublishTrusted("live/x/240p", v(), PublishOptions{Derived: true})
	if err != nil {
		t.Fatalf("a restarted ladder does not take its rung over: %v", err)
	}
	old.Close() // the stopping process's late Close changes nothing
	if !next.Stream().Publishing() {
		t.Fatal("the old publisher's Close ended the new one's stream")
	}
	if _, err := h.PublishTrusted("live/x", v(), PublishOptions{Derived: true}); err != ErrPathBusy {
		t.Fatalf("a derived publisher took a plain stream over: %v", err)
	}
	src.Close()
	next.Close()
}

// Sessions lists publishers and the readers that said who they are; a
// kick ends one.
func TestSessions(t *testing.T) {
	h := newTestHub(t, testConf())
	kickedPub := make(chan struct{})
	v := &media.Track{ID: 0, Codec: media.CodecH264}
	p, err := h.PublishTrusted("live/s", []*media.Track{v}, PublishOptions{Protocol: "rtmp", Remote: "1.2.3.4:5", OnKick: func() { close(kickedPub) }})
	if err != nil {
		t.Fatal(err)
	}
	r1 := mustRead(t, h, "live/s")
	kickedReader := make(chan struct{})
	r1.SetPeer(Peer{Protocol: "httpflv", Remote: "5.6.7.8:9"}, func() { close(kickedReader) })
	r2 := mustRead(t, h, "live/s") // an internal reader: not listed
	defer r2.Close()
	r1.AddBytesOut(1234)
	ss := h.Sessions()
	if len(ss) != 2 || ss[0].Kind != "publisher" || ss[0].Protocol != "rtmp" || ss[1].Kind != "reader" || ss[1].Protocol != "httpflv" ||
		ss[1].Bytes != 1234 || ss[1].Remote != "5.6.7.8:9" {
		t.Fatalf("sessions %+v", ss)
	}
	if st := p.Stream().Stats(); st.ReadersByProtocol["httpflv"] != 1 || st.BytesOut != 1234 {
		t.Fatalf("stats %+v", st)
	}
	if h.KickSession("r999999") || h.KickSession("x") || h.KickSession("") {
		t.Fatal("kicked a session that does not exist")
	}
	if !h.KickSession(ss[1].ID) {
		t.Fatal("reader not kicked")
	}
	<-kickedReader
	if _, err := r1.Next(context.Background()); err != ErrReaderClosed {
		t.Fatalf("a kicked reader: %v", err)
	}
	if !h.KickSession(ss[0].ID) {
		t.Fatal("publisher not kicked")
	}
	<-kickedPub
	if p.Stream().Publishing() {
		t.Fatal("the kicked publisher still publishes")
	}
}

// A pulled source (paths.*.source) is the operator's: no registry, no key.
func TestPulledSourceTrusted(t *testing.T) {
	pc := testConf()
	pc.PublishKey = "k"
	h := NewHub(HubConfig{PathConfig: func(string) PathConfig { return pc }, Logger: discardLogger(),
		ResolvePublish: func(string, string) (string, string, bool, error) { return "", "", false, errors.New("keys required") }})
	t.Cleanup(h.Close)
	if _, err := h.PublishTrusted("cam1", []*media.Track{{Codec: media.CodecH264}}, PublishOptions{}); err == nil {
		t.Fatal("a plain publisher passed a refusing registry")
	}
	if _, err := h.PublishTrusted("cam1", []*media.Track{{Codec: media.CodecH264}}, PublishOptions{Pulled: true}); err != nil {
		t.Fatalf("a pulled source: %v", err)
	}
}
