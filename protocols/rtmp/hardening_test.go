package rtmp_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/protocols/rtmp"
	"github.com/streamhub/streamhub/server"
)

// A publisher whose onMetaData names its tracks is published as soon as
// their sequence headers came, not after gortmplib's 2 s probe of media:
// the stream is live before the publisher has sent 2 s of frames.
func TestPublishWithoutProbeDelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, rtmp.Config{}, nil)
	start := time.Now()
	p, err := startPublisher(t, e.url("live/fast"), h264Source(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	waitFor(t, "the stream", 10*time.Second, func() bool { return e.hub.Stream("live/fast") != nil })
	took, frames := time.Since(start), p.Frames()
	t.Logf("connect → stream publishing: %s, after %d frames", took.Round(time.Millisecond), frames)
	if frames >= 50 { // 25 fps: 2 s of video, what the probe used to read
		t.Fatalf("published after %d frames: the probe read the full 2 s", frames)
	}
	// Everything read during the probe reaches the hub, in order.
	units := hubUnits(t, e, "live/fast", 10)
	if !units[0].Track.IsVideo() || !units[0].KeyFrame {
		t.Fatalf("the first unit is not the first keyframe: %+v", units[0])
	}
}

// A video-only publisher (onMetaData with audiocodecid 0) is published at
// its video sequence header.
func TestPublishVideoOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, rtmp.Config{}, nil)
	p, err := startPublisher(t, e.url("live/vonly"), source{
		video: &gortmplib.Track{Codec: &codecs.H264{SPS: h264SPS, PPS: h264PPS}}, speed: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	waitFor(t, "the stream", 10*time.Second, func() bool { return e.hub.Stream("live/vonly") != nil })
	if n := len(e.hub.Stream("live/vonly").Tracks()); n != 1 {
		t.Fatalf("%d tracks, want 1", n)
	}
	units := hubUnits(t, e, "live/vonly", 5)
	if len(units) == 0 {
		t.Fatal("no units")
	}
}

// A refused publisher gets NetStream.Publish.BadName with the reason
// instead of Publish.Start: the client says why.
func TestRefusedPublisherHearsWhy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, rtmp.Config{}, func(p string) server.PathConfig {
		pc := server.DefaultPathConfig()
		pc.PublishKey = "secret"
		return pc
	})
	c := &gortmplib.Client{URL: e.url("live/k?key=wrong"), Publish: true}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.Initialize(ctx)
	if err == nil {
		c.Close()
		t.Fatal("a wrong key was accepted")
	}
	if !strings.Contains(err.Error(), "BadName") || !strings.Contains(err.Error(), "wrong or missing key") {
		t.Fatalf("the client heard %q, want BadName with the reason", err)
	}
}

// A connect whose argument is a 10 MB string, not an object, costs a
// bounded number of log bytes and ends only its own connection.
func TestHostileConnectLogBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, rtmp.Config{}, nil)
	before := len(e.logs.String())
	for _, size := range []int{10 << 20, 60 << 10} {
		if err := testfixtures.HostileRTMPConnect(e.addr, "", size); err != nil {
			t.Fatal(err)
		}
	}
	grew := len(e.logs.String()) - before
	t.Logf("log bytes for two hostile connects: %d", grew)
	if grew > 4096 {
		t.Fatalf("two hostile connects wrote %d log bytes", grew)
	}
}

// A panic while serving one connection ends that connection only: a
// publisher and a player on other connections go on, and it is counted.
func TestPanicEndsOneConnection(t *testing.T) {
	e := newEnv(t, rtmp.Config{}, nil)
	p, err := startPublisher(t, e.url("live/ok"), h264Source(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	waitFor(t, "the stream", 10*time.Second, func() bool { return e.hub.Stream("live/ok") != nil })
	var armed atomic.Bool
	armed.Store(true)
	reset := rtmp.SetTestHookConn(func() {
		if armed.CompareAndSwap(true, false) {
			panic("injected")
		}
	})
	defer reset()
	before := guard.Panics()
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err == nil {
		t.Fatal("the panicking connection was answered")
	}
	nc.Close()
	if guard.Panics() != before+1 {
		t.Fatalf("panics counted: %d, want %d", guard.Panics(), before+1)
	}
	n := p.Frames()
	waitFor(t, "the publisher to go on", 5*time.Second, func() bool { return p.Frames() > n+10 && p.Err() == nil })
	pl, err := startPlayer(t, e.url("live/ok"))
	if err != nil {
		t.Fatalf("a new player after the panic: %v", err)
	}
	defer pl.close()
	waitFor(t, "pictures", 5*time.Second, func() bool { return len(pl.pictures()) > 0 })
}
