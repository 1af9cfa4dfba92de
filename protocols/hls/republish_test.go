package hls

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// A publisher that leaves (past its grace period) and comes back gets a
// muxer that goes on numbering where the last one stopped, one
// discontinuity later: a player still blocking for the old session's next
// segment is answered with the new one, not refused with a 400 forever.
func TestMediaSequenceContinuesAcrossRepublish(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 3*time.Second)
	l.publishSync(3 * time.Second)
	before, _ := l.playlist("")
	oldNext := l.nextMSN()
	m := l.muxer()

	// The publisher leaves: with no grace period the stream and its muxer end.
	l.pub.Close()
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the muxer did not stop when the stream ended")
	}
	// A player asks for the next segment of the old session.
	waiting := l.async("stream.m3u8?_HLS_msn=" + strconv.FormatUint(oldNext, 10))

	// The publisher comes back (timestamps from 0 again).
	src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC})
	pub, err := l.hub.PublishTrusted("live/x", src.tracks(), server.PublishOptions{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	l.pub, l.src = pub, src
	deadline := time.Now().Add(20 * time.Second)
	var r response
	for got := false; !got; {
		select {
		case r = <-waiting:
			got = true
		case <-time.After(20 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("the blocking request of the old session was not answered")
			}
			l.h.mu.Lock()
			none := l.h.muxers["live/x"] == nil
			l.h.mu.Unlock()
			if none {
				// The waiting request ends with the old muxer; a player asks again.
				l.get("stream.m3u8")
			}
			l.nextFrame()
		}
	}
	if r.code == http.StatusBadRequest {
		t.Fatalf("the old session's next segment: 400 %s", r.body)
	}
	// The waiting request may have ended with the old muxer (404) before
	// any new one started: a request starts it, then a segment of the new
	// session is published.
	l.warmUp()
	l.publishSync(2 * time.Second)
	after, _ := l.playlist("")
	if len(after.segs) == 0 || after.mediaSeq < oldNext {
		t.Fatalf("after the republish the playlist starts at %d, want at least %d (the old session ended before it)", after.mediaSeq, oldNext)
	}
	if after.discSeq <= before.discSeq {
		t.Fatalf("discontinuity sequence %d after the republish, want more than %d", after.discSeq, before.discSeq)
	}
}
