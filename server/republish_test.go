package server

import (
	"context"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

// A reader waiting for a keyframe (live join) gets the audio of a stream
// republished without video instead of waiting forever.
func TestLiveJoinThenAudioOnlyRepublish(t *testing.T) {
	pc := testConf()
	pc.Join = JoinLive
	pc.GracePeriod = time.Minute
	h := newTestHub(t, pc)
	p := mustPublish(t, h, "live/x", []*media.Track{
		{ID: 0, Codec: media.CodecH264, SPS: []byte{0x67}, PPS: []byte{0x68}},
		{ID: 1, Codec: media.CodecAAC},
	})
	r := mustRead(t, h, "live/x")
	p.Close()
	a := &media.Track{ID: 0, Codec: media.CodecAAC}
	p2 := mustPublish(t, h, "live/x", []*media.Track{a})
	for i := range 5 {
		d := time.Duration(i) * 21 * time.Millisecond
		p2.Write(&media.Unit{Track: a, PTS: d, DTS: d, KeyFrame: true, Payload: [][]byte{{1}}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := r.NextBatch(ctx, make([]*media.Unit, 0, 16))
	if err != nil || len(b) != 5 {
		t.Fatalf("got %d units, err %v; want the 5 audio units", len(b), err)
	}
	if p2.Stream().Tracks()[0].Session != 2 {
		t.Fatalf("Session = %d, want 2 for the second publisher", p2.Stream().Tracks()[0].Session)
	}
}

// Every track stays monotonic across a republish even when the new
// publisher's audio starts earlier than its video by more than the gap.
func TestRepublishKeepsEachTrackMonotonic(t *testing.T) {
	pc := testConf()
	pc.GracePeriod = time.Minute
	h := newTestHub(t, pc)
	v1 := &media.Track{ID: 0, Codec: media.CodecH264, SPS: []byte{0x67}, PPS: []byte{0x68}}
	a1 := &media.Track{ID: 1, Codec: media.CodecAAC}
	p := mustPublish(t, h, "live/x", []*media.Track{v1, a1})
	r := mustRead(t, h, "live/x")
	p.Write(&media.Unit{Track: v1, PTS: time.Second, DTS: time.Second, KeyFrame: true, Payload: [][]byte{{1}}})
	p.Write(&media.Unit{Track: a1, PTS: time.Second, DTS: time.Second, KeyFrame: true, Payload: [][]byte{{1}}})
	p.Close()
	v2 := &media.Track{ID: 0, Codec: media.CodecH264, SPS: []byte{0x67}, PPS: []byte{0x68}}
	a2 := &media.Track{ID: 1, Codec: media.CodecAAC}
	p2 := mustPublish(t, h, "live/x", []*media.Track{v2, a2})
	// Video first at 100 ms, then audio at 40 ms: 60 ms earlier than the video.
	p2.Write(&media.Unit{Track: v2, PTS: 100 * time.Millisecond, DTS: 100 * time.Millisecond, KeyFrame: true, Payload: [][]byte{{1}}})
	p2.Write(&media.Unit{Track: a2, PTS: 40 * time.Millisecond, DTS: 40 * time.Millisecond, KeyFrame: true, Payload: [][]byte{{1}}})
	p2.Write(&media.Unit{Track: v2, PTS: 140 * time.Millisecond, DTS: 140 * time.Millisecond, Payload: [][]byte{{1}}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	last := map[int]time.Duration{}
	for range 5 {
		u, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := last[u.Track.ID]; ok && u.DTS < prev {
			t.Fatalf("track %d went back from %v to %v", u.Track.ID, prev, u.DTS)
		}
		last[u.Track.ID] = u.DTS
	}
}
