package hls

import (
	"context"
	"net/http"
	"strconv"
	"strings"
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
	l.endStream(m)
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

// A playlist request for a path whose publisher left moments ago waits for
// it to come back (a reconnecting encoder) and is answered from the new
// session, instead of a 404 that spends one of the player's few retries; a
// path that was never live, or stays gone past hls.blockTimeout, is a 404.
func TestPlaylistWaitsForRepublish(t *testing.T) {
	conf := serverConfig()
	conf.BlockTimeout = 2 * time.Second
	l := startLive(t, conf, synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 3*time.Second)
	l.publishSync(3 * time.Second)
	l.endStream(l.muxer())

	// Gone for longer than blockTimeout: 404 after waiting.
	start := time.Now()
	if r := l.get("stream.m3u8"); r.code != http.StatusNotFound {
		t.Fatalf("a path still gone after blockTimeout: %d %s, want 404", r.code, r.body)
	} else if waited := time.Since(start); waited < conf.BlockTimeout/2 {
		t.Fatalf("answered 404 after %s: the request did not wait for a republish", waited)
	}
	// Never live: 404 at once (no wait, whatever the time it takes).
	ctx, cancel := context.WithTimeout(context.Background(), conf.BlockTimeout/2)
	defer cancel()
	if r := do(ctx, http.MethodGet, strings.Replace(l.base, "live/x", "live/never", 1)+"stream.m3u8"); r.err != nil || r.code != http.StatusNotFound {
		t.Fatalf("a path never live: %d %v, want 404 at once", r.code, r.err)
	}

	waiting := l.async("stream.m3u8")
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-waiting:
		t.Fatalf("answered %d before the publisher came back: %s", r.code, r.body)
	default:
	}
	src := newSynth(synthOpts{video: media.CodecH264, audio: media.CodecAAC})
	pub, err := l.hub.PublishTrusted("live/x", src.tracks(), server.PublishOptions{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	l.pub, l.src = pub, src
	deadline := time.After(10 * time.Second)
	for {
		select {
		case r := <-waiting:
			if r.code != http.StatusOK {
				t.Fatalf("after the republish: %d %s, want the new session's playlist", r.code, r.body)
			}
			return
		case <-deadline:
			t.Fatal("the waiting playlist request was not answered after the republish")
		case <-time.After(20 * time.Millisecond):
			l.nextFrame()
		}
	}
}

// endStream closes the publisher (no grace period: the stream ends) and
// waits for its muxer m to stop.
func (l *live) endStream(m *muxer) {
	l.t.Helper()
	l.pub.Close()
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		l.t.Fatal("the muxer did not stop when the stream ended")
	}
}

// A session that ends completes its growing segment: the next session's
// first segment follows the last one its players know (hls.js otherwise
// places it a target duration too late and stalls at the hole), and that
// last segment stays servable while the publisher comes back, though its
// muxer stopped.
func TestEndedSessionEndsOnACompleteSegment(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 3*time.Second)
	l.publishSync(3 * time.Second)
	l.publish(300 * time.Millisecond) // into the next segment
	l.sync()
	growing := l.nextMSN() - 1
	m := l.muxer()
	if m.view().segs[len(m.view().segs)-1].complete {
		t.Fatalf("segment %d is complete before the end; the test needs a growing one", growing)
	}
	l.endStream(m)
	last := m.view()
	if s := last.segs[len(last.segs)-1]; s.msn != growing || !s.complete {
		t.Fatalf("the stopped muxer's last segment is %d (complete %v), want %d complete", s.msn, s.complete, growing)
	}
	l.h.mu.Lock()
	rp := l.h.resume["live/x"]
	l.h.mu.Unlock()
	if rp.nextMSN != growing+1 {
		t.Errorf("the next session starts at %d, want %d", rp.nextMSN, growing+1)
	}
	seg := m.prefix + "seg" + strconv.FormatUint(growing, 10) + ".mp4"
	if r := l.get(seg); r.code != http.StatusOK || len(r.body) == 0 {
		t.Errorf("GET %s after the end: %d %q", seg, r.code, r.body)
	}
	if r := l.get(m.prefix + "seg" + strconv.FormatUint(growing+1, 10) + ".mp4"); r.code != http.StatusNotFound {
		t.Errorf("a segment the ended muxer never had: %d, want 404", r.code)
	}
	l.h.dropEndedFiles("live/x", m.prefix)
	if r := l.get(seg); r.code != http.StatusNotFound {
		t.Errorf("GET %s after the republish window: %d, want 404", seg, r.code)
	}
}

// Ending a segment that a republish already ended (nothing growing since:
// the new session's setup waits for parameter sets) leaves it as it is:
// its bytes and duration are not added again under the snapshots that
// share it.
func TestEndSegmentTwiceChangesNothing(t *testing.T) {
	l := startLive(t, serverConfig(), synthOpts{video: media.CodecH264, audio: media.CodecAAC}, 3*time.Second)
	l.publishSync(3 * time.Second)
	l.publish(300 * time.Millisecond)
	l.sync()
	m := l.muxer()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.seg.endSegment() {
		t.Fatal("the growing segment was not ended")
	}
	seg := m.seg.cur()
	size, dur := len(seg.data), seg.dur
	if m.seg.endSegment() {
		t.Error("a complete segment was ended again")
	}
	if len(seg.data) != size || seg.dur != dur {
		t.Errorf("ending it again made it %d bytes, %v; want %d, %v", len(seg.data), seg.dur, size, dur)
	}
}
