package server

import (
	"sync/atomic"
	"testing"

	"github.com/streamhub/streamhub/media"
)

// A reader that joins with no keyframe cached asks the publisher for one;
// one that gets the cached GOP does not. Stream.RequestKeyframe reaches the
// publisher's hook, and reports false when there is none.
func TestKeyframeRequest(t *testing.T) {
	h := newTestHub(t, testConf())
	var asked atomic.Int32
	tracks := []*media.Track{{ID: 0, Codec: media.CodecH264}}
	p, err := h.PublishTrusted("live/k", tracks, PublishOptions{Protocol: "test", OnKeyframeRequest: func() { asked.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	r := mustRead(t, h, "live/k")
	defer r.Close()
	if got := asked.Load(); got != 1 {
		t.Fatalf("join with nothing cached: %d keyframe requests, want 1", got)
	}
	p.Write(mkUnit(tracks[0], 1, true, 0))
	r2 := mustRead(t, h, "live/k")
	defer r2.Close()
	if got := asked.Load(); got != 1 {
		t.Fatalf("join with a cached keyframe: %d keyframe requests, want still 1", got)
	}
	if !r2.Stream().RequestKeyframe() || asked.Load() != 2 {
		t.Fatalf("RequestKeyframe did not reach the publisher (%d requests)", asked.Load())
	}
	mustPublish(t, h, "live/nohook", videoTracks())
	if h.Stream("live/nohook").RequestKeyframe() {
		t.Fatal("RequestKeyframe reported true for a publisher without a hook")
	}
}
