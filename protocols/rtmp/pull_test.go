package rtmp_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/rtmp"
	"github.com/streamhub/streamhub/server"
)

// recorder is a units.Writer that keeps what it gets.
type recorder struct {
	mu    sync.Mutex
	units []*media.Unit
}

func (r *recorder) Write(u *media.Unit) {
	r.mu.Lock()
	r.units = append(r.units, u)
	r.mu.Unlock()
}
func (r *recorder) UpdateTrack(*media.Track) {}
func (r *recorder) snapshot() []*media.Unit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*media.Unit(nil), r.units...)
}

// An edge's pull (DialUpstream, as a relay) gets the origin's units with
// their own timestamps: B-frame PTS/DTS pairs as published, the cached GOP
// at its real timing although the path has a catch-up, audio times as
// published.
func TestUpstreamKeepsTimestamps(t *testing.T) {
	logs := &testfixtures.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	hub := server.NewHub(server.HubConfig{Logger: log, // default path config: catchUp 300ms
		RelayKey: func(_, key string) (bool, error) { return key == "relay-key", nil }})
	srv := rtmp.New(rtmp.Config{Address: "127.0.0.1:0", HandshakeTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Second}, hub, log)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	defer hub.Close()
	if hub.PathConfig("live/b").CatchUp == 0 {
		t.Fatal("the default path config has no catch-up: the test would not show that a relay skips it")
	}

	v := &media.Track{ID: 0, Codec: media.CodecH264, SPS: testfixtures.H264SPS, PPS: testfixtures.H264PPS}
	a := &media.Track{ID: 1, Codec: media.CodecAAC, AudioConfig: []byte{0x12, 0x10}, SampleRate: 44100, Channels: 2}
	pub, err := hub.PublishTrusted("live/b", []*media.Track{v, a}, server.PublishOptions{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const frame = 40 * time.Millisecond
	reorder := []time.Duration{2 * frame, 4 * frame, frame, frame} // I/P then B B: PTS - DTS per picture
	type times struct{ pts, dts time.Duration }
	published := map[times]bool{}
	audio := map[time.Duration]bool{}
	var mu sync.Mutex // guards published and audio
	write := func(from, to int, pace time.Duration) {
		for i := from; i < to; i++ {
			time.Sleep(pace)
			mu.Lock()
			dts := 10*time.Second + time.Duration(i)*frame
			pts := dts + reorder[i%len(reorder)]
			key := i%24 == 0
			au := [][]byte{{0x41, 0x9a, byte(i), 1}}
			if key {
				au = [][]byte{testfixtures.H264SPS, testfixtures.H264PPS, {0x65, 0x88, byte(i), 1}}
			}
			pub.Write(&media.Unit{Track: v, PTS: pts, DTS: dts, KeyFrame: key, Payload: au})
			published[times{pts, dts}] = true
			apts := dts + 5*time.Millisecond
			pub.Write(&media.Unit{Track: a, PTS: apts, DTS: apts, KeyFrame: true, Payload: [][]byte{{0x21, byte(i), 3}}})
			audio[apts] = true
			mu.Unlock()
		}
	}
	write(0, 30, 0) // a cached GOP (from unit 24) for the relay's join
	// The pull reads the tracks from the media: the stream goes on.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		write(30, 120, 10*time.Millisecond)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	up, err := rtmp.DialUpstream(ctx, srv.Addr().String(), "live/b", "relay-key", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	if tr := up.Tracks(); len(tr) != 2 || tr[0].Codec != media.CodecH264 || tr[1].Codec != media.CodecAAC {
		t.Fatalf("tracks %v", tr)
	}
	rec := &recorder{}
	done := make(chan error, 1)
	go func() { done <- up.Run(rec) }()
	<-wrote
	waitFor(t, "the pull's units", 10*time.Second, func() bool {
		n := 0
		for _, u := range rec.snapshot() {
			if u.Track.IsVideo() {
				n++
			}
		}
		return n >= 120-24
	})
	if st := hub.Stream("live/b").Stats(); st.Relays != 1 || st.ReadersByProtocol["rtmp"] != 0 {
		t.Errorf("during the pull: relays %d, rtmp viewers %d; want 1 and 0", st.Relays, st.ReadersByProtocol["rtmp"])
	}
	up.Close()
	<-done
	var videos, audios int
	for _, u := range rec.snapshot() {
		if u.Track.IsVideo() {
			videos++
			if !published[times{u.PTS, u.DTS}] {
				t.Errorf("video unit PTS %v DTS %v: not a published pair (retimed or reordered)", u.PTS, u.DTS)
			}
			continue
		}
		audios++
		if !audio[u.PTS] {
			t.Errorf("audio unit at %v: not a published time", u.PTS)
		}
	}
	if videos < 120-24 || audios == 0 {
		t.Fatalf("%d video and %d audio units", videos, audios)
	}
	waitFor(t, "the relay leaving", 5*time.Second, func() bool { return hub.Stream("live/b").Stats().Relays == 0 })
}
