package hls

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

// HLS viewers are the distinct clients (address and User-Agent) seen
// lately: 20 players are 20, one player asking many times is one, the
// segmenter is none, and a player that left stops counting.
func TestHLSViewersCounted(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 3*time.Second)
	window := func(d time.Duration) {
		l.h.viewers.mu.Lock()
		l.h.viewers.window = d
		l.h.viewers.mu.Unlock()
	}
	hlsViewers := func() int { return l.hub.Stream("live/x").Stats().ReadersByProtocol["hls"] }
	window(time.Nanosecond) // the warm-up request leaves the window
	if n := hlsViewers(); n != 0 {
		t.Fatalf("%d HLS viewers with the segmenter running and nobody asking, want 0", n)
	}
	get := func(ua string) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, l.base+"stream.m3u8", nil)
		req.Header.Set("User-Agent", ua)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	window(time.Hour)
	for i := range 20 {
		get(fmt.Sprintf("player %d", i))
	}
	for range 10 {
		get("player 0")
	}
	if n := hlsViewers(); n != 20 {
		t.Fatalf("%d HLS viewers for 20 players, want 20", n)
	}
	window(time.Nanosecond) // every player left
	if n := hlsViewers(); n != 0 {
		t.Fatalf("%d HLS viewers after every player left, want 0", n)
	}
}
