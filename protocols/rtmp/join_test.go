package rtmp_test

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/handshake"

	"github.com/streamhub/streamhub/protocols/rtmp"
)

// writeLog is a net.Conn that records the size of each Write.
type writeLog struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, append([]byte(nil), p...))
	w.mu.Unlock()
	return w.Conn.Write(p)
}

// TestPlayJoinWrites: the server's side of a player's join (handshake,
// connect, createStream, play) leaves in one write per answer the player
// waits for, not one per message: 4 writes before the stream's metadata.
// Each write is a packet the player wakes up for; under a storm of joins
// they are its first keyframe's delay.
func TestPlayJoinWrites(t *testing.T) {
	e := newEnv(t, rtmp.Config{}, nil)
	src := source{
		video: &gortmplib.Track{Codec: &codecs.H264{SPS: h264SPS, PPS: h264PPS}},
		speed: 4,
	}
	pub, err := startPublisher(t, e.url("live/join"), src)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.stop()
	waitFor(t, "the stream in the hub", 5*time.Second, func() bool { return e.hub.Stream("live/join") != nil })

	var logs []*writeLog
	var mu sync.Mutex
	reset := rtmp.SetTestHookWrapConn(func(nc net.Conn) net.Conn {
		w := &writeLog{Conn: nc}
		mu.Lock()
		logs = append(logs, w)
		mu.Unlock()
		return w
	})
	p, err := startPlayer(t, e.url("live/join"))
	reset()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	waitFor(t, "a picture", 5*time.Second, func() bool { return len(p.pictures()) > 0 })

	mu.Lock()
	defer mu.Unlock()
	if len(logs) != 1 {
		t.Fatalf("%d connections watched, want the player's", len(logs))
	}
	w := logs[0]
	w.mu.Lock()
	defer w.mu.Unlock()
	before := -1
	for i, b := range w.writes {
		if bytes.Contains(b, []byte("onMetaData")) {
			before = i
			break
		}
	}
	if before < 0 {
		t.Fatalf("no metadata among the player's %d writes", len(w.writes))
	}
	sizes := make([]int, before)
	for i := range sizes {
		sizes[i] = len(w.writes[i])
	}
	if before > 4 {
		t.Errorf("the join took %d writes before the metadata (sizes %v), want at most 4", before, sizes)
	}
	// The handshake's S0, S1 and S2 leave together.
	if len(sizes) == 0 || sizes[0] != 1+2*1536 {
		t.Errorf("first write of the join is %v bytes, want S0+S1+S2 (3073)", sizes)
	}
	for _, want := range []string{"NetConnection.Connect.Success", "NetStream.Play.Start"} {
		found := false
		for _, b := range w.writes[:before] {
			found = found || bytes.Contains(b, []byte(want))
		}
		if !found {
			t.Errorf("%s was not sent before the metadata", want)
		}
	}
}

// TestEncryptedHandshakeCorked: an RTMPE client's handshake (the server
// answers C0+C1 with S0, S1 and S2 written in turn, then reads C2)
// completes with the server's writes gathered until its next read.
func TestEncryptedHandshakeCorked(t *testing.T) {
	e := newEnv(t, rtmp.Config{}, nil)
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	keyIn, keyOut, err := handshake.DoClient(nc, true, false)
	if err != nil {
		t.Fatalf("RTMPE handshake: %v", err)
	}
	if keyIn == nil || keyOut == nil {
		t.Fatal("RTMPE handshake gave no RC4 keys")
	}
}
