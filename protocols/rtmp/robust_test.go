package rtmp_test

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"

	"github.com/streamhub/streamhub/protocols/rtmp"
	"github.com/streamhub/streamhub/server"
)

func h264Source(speed float64) source {
	return source{
		video: &gortmplib.Track{Codec: &codecs.H264{SPS: h264SPS, PPS: h264PPS}},
		audio: &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: aacConf}},
		speed: speed,
	}
}

// closedWithin dials addr, runs send, and returns how long the server took
// to close the connection (it fails the test if it did not within max).
func closedWithin(t *testing.T, addr string, max time.Duration, send func(net.Conn)) time.Duration {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	send(nc)
	nc.SetReadDeadline(time.Now().Add(max))
	_, err = io.Copy(io.Discard, nc)
	if isTimeout(err) {
		t.Fatalf("the server did not close the connection within %v", max)
	}
	return time.Since(start)
}

// TestBadClientsOnlyEndThemselves: garbage, a stalled handshake, invalid
// paths and a wrong key each end only their own connection while a good
// publisher and player go on, and nothing leaks after Close.
func TestBadClientsOnlyEndThemselves(t *testing.T) {
	before := runtime.NumGoroutine()
	pc := func(p string) server.PathConfig {
		c := server.DefaultPathConfig()
		if strings.HasPrefix(p, "private/") {
			c.PublishKey = "secret"
		}
		return c
	}
	e := newEnv(t, rtmp.Config{HandshakeTimeout: 300 * time.Millisecond}, pc)

	pub, err := startPublisher(t, e.url("live/good"), h264Source(4))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the good stream", 5*time.Second, func() bool { return e.hub.Stream("live/good") != nil })
	p, err := startPlayer(t, e.url("live/good"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "good pictures", 5*time.Second, func() bool { return len(p.pictures()) > 0 })

	// Random bytes instead of a handshake.
	closedWithin(t, e.addr, 2*time.Second, func(nc net.Conn) {
		b := make([]byte, 4096)
		rand.Read(b)
		b[0] = 3 // a valid C0, so that the garbage reaches C1 and beyond
		nc.Write(b)
	})
	closedWithin(t, e.addr, 2*time.Second, func(nc net.Conn) { nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) })

	// A handshake that never completes: closed after HandshakeTimeout.
	d := closedWithin(t, e.addr, 3*time.Second, func(net.Conn) {})
	if d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("silent client closed after %v, want about 300ms", d)
	}
	d = closedWithin(t, e.addr, 3*time.Second, func(nc net.Conn) {
		c0c1 := make([]byte, 1537)
		c0c1[0] = 3
		nc.Write(c0c1) // C0+C1, then never C2
	})
	if d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("client stalled after C1 closed after %v, want about 300ms", d)
	}

	// Invalid paths, to publish and to play.
	for _, path := range []string{"live/..", "live/a%20b", "./x"} {
		for _, publish := range []bool{true, false} {
			u := e.url(path)
			c := &gortmplib.Client{URL: u, Publish: publish}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err := c.Initialize(ctx)
			cancel()
			if err != nil {
				continue // refused during the commands: fine
			}
			c.NetConn().SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err = io.Copy(io.Discard, c.NetConn())
			c.Close()
			if isTimeout(err) {
				t.Errorf("%s (publish %v): connection with an invalid path stays open", path, publish)
			}
		}
	}
	if !strings.Contains(e.logs.String(), "invalid path") {
		t.Errorf("no log line names the invalid path")
	}

	// A wrong key, and no key.
	for _, q := range []string{"?key=wrong", ""} {
		bad, err := startPublisher(t, e.url("private/x"+q), source{
			video: &gortmplib.Track{Codec: &codecs.H264{SPS: h264SPS, PPS: h264PPS}}, duration: 3 * time.Second})
		if err != nil {
			continue
		}
		bad.c.NetConn().SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = io.Copy(io.Discard, bad.c.NetConn())
		if isTimeout(err) {
			t.Errorf("publisher with key %q: connection stays open", q)
		}
		bad.stop()
	}
	if e.hub.Stream("private/x") != nil {
		t.Error("a publisher with a wrong key got a stream")
	}
	if !strings.Contains(e.logs.String(), "wrong or missing key") {
		t.Error("no log line says the key was wrong")
	}
	// The right key works.
	okPub, err := startPublisher(t, e.url("private/x?key=secret"), h264Source(8))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the keyed stream", 5*time.Second, func() bool { return e.hub.Stream("private/x") != nil })
	okPub.stop()

	// The good publisher and player went on all along.
	n := len(p.pictures())
	waitFor(t, "more good pictures", 5*time.Second, func() bool { return len(p.pictures()) > n+10 })
	if _, _, err := p.snapshot(); err != nil {
		t.Errorf("good player: %v", err)
	}
	if err := pub.Err(); err != nil {
		t.Errorf("good publisher: %v", err)
	}

	p.close()
	pub.stop()
	e.hub.Close()
	e.srv.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestStalledPlayerIsDropped: a player that never reads its socket is closed
// within a bounded time (WriteTimeout) and the publisher and other players
// are unaffected.
func TestStalledPlayerIsDropped(t *testing.T) {
	e := newEnv(t, rtmp.Config{WriteTimeout: 500 * time.Millisecond}, nil)
	src := h264Source(4)
	src.idrSize = 400 << 10
	pub, err := startPublisher(t, e.url("live/big"), src)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.stop()
	waitFor(t, "the stream", 5*time.Second, func() bool { return e.hub.Stream("live/big") != nil })

	good, err := startPlayer(t, e.url("live/big"))
	if err != nil {
		t.Fatal(err)
	}
	defer good.close()

	// The stalled player: it plays, with a small receive buffer, and never reads.
	stalled := &gortmplib.Client{URL: e.url("live/big"), DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			nc.(*net.TCPConn).SetReadBuffer(4096)
		}
		return nc, err
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stalled.Initialize(ctx); err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	waitFor(t, "two readers", 5*time.Second, func() bool { return e.hub.Stream("live/big").Stats().Readers == 2 })
	start := time.Now()
	waitFor(t, "the stalled player to be dropped", 20*time.Second, func() bool {
		return e.hub.Stream("live/big").Stats().Readers == 1
	})
	t.Logf("stalled player dropped after %v", time.Since(start).Round(time.Millisecond))
	waitFor(t, "the log line", 2*time.Second, func() bool {
		return strings.Contains(e.logs.String(), "mode=play") && strings.Contains(e.logs.String(), "timeout")
	})

	n := len(good.pictures())
	waitFor(t, "the good player to go on", 5*time.Second, func() bool { return len(good.pictures()) > n+10 })
	if err := pub.Err(); err != nil {
		t.Errorf("publisher: %v", err)
	}
	if st := e.hub.Stream("live/big").Stats(); !st.Publishing {
		t.Errorf("stream stats %+v", st)
	}
}

// TestPlayerSurvivesPauseThenLargeUnit: a pause longer than WriteTimeout
// followed by a unit larger than the play write buffer must not end a
// healthy player (the write deadline is set before every write, not only
// before the flush).
func TestPlayerSurvivesPauseThenLargeUnit(t *testing.T) {
	e := newEnv(t, rtmp.Config{WriteTimeout: 300 * time.Millisecond}, nil)
	src := h264Source(0)
	src.idrSize = 200 << 10
	src.duration = 3 * time.Second
	pub, err := startPublisher(t, e.url("live/pause"), src) // 3 s of media at once
	if err != nil {
		t.Fatal(err)
	}
	<-pub.done
	waitFor(t, "the stream", 5*time.Second, func() bool { return e.hub.Stream("live/pause") != nil })
	next := src.duration
	writeVideo := func(frames int) {
		t.Helper()
		for i := 0; i < frames; i++ {
			au := videoAU(src.video.Codec, int(next/frameDur), src.idrSize)
			if err := writeH264(pub.c, src.video, next, au); err != nil {
				t.Fatalf("publisher: %v", err)
			}
			next += frameDur
		}
	}
	type result struct {
		p   *player
		err error
	}
	started := make(chan result, 1)
	go func() {
		p, err := startPlayer(t, e.url("live/pause"))
		started <- result{p, err}
	}()
	waitFor(t, "the reader", 5*time.Second, func() bool { return e.hub.Stream("live/pause").Stats().Readers == 1 })
	writeVideo(2 * gopLen) // enough for the player's 2 s track probe
	res := <-started
	if res.err != nil {
		t.Fatal(res.err)
	}
	p := res.p
	defer p.close()
	waitFor(t, "pictures", 5*time.Second, func() bool { return len(p.pictures()) >= 2*gopLen })
	n := len(p.pictures())

	time.Sleep(800 * time.Millisecond) // the player's connection idles past WriteTimeout

	writeVideo(gopLen + 1) // a GOP that starts with a large IDR
	waitFor(t, "pictures after the pause", 5*time.Second, func() bool { return len(p.pictures()) > n+gopLen/2 })
	if _, _, err := p.snapshot(); err != nil {
		t.Errorf("player: %v", err)
	}
}

// writeH264 writes one H264 AU on an already announced publish connection.
func writeH264(c *gortmplib.Client, track *gortmplib.Track, dts time.Duration, au [][]byte) error {
	w := &gortmplib.Writer{Conn: discardInit{c}, Tracks: []*gortmplib.Track{track}}
	if err := w.Initialize(); err != nil {
		return err
	}
	w.Conn = c
	return w.WriteH264(track, dts, dts, au)
}

// discardInit is a gortmplib.Conn that drops what Writer.Initialize writes.
type discardInit struct{ *gortmplib.Client }

func (discardInit) Write(message.Message) error { return nil }

// TestPublisherOutlivesHandshakeTimeout: a live (real-time) publisher needs
// about 2 s for the track probe, and keeps publishing past the point where
// the server owes it an acknowledgement (every 2.5 MB), however short the
// handshake timeout.
func TestPublisherOutlivesHandshakeTimeout(t *testing.T) {
	e := newEnv(t, rtmp.Config{HandshakeTimeout: 300 * time.Millisecond, ReadTimeout: 500 * time.Millisecond}, nil)
	src := h264Source(1) // real time
	src.idrSize = 1 << 20
	pub, err := startPublisher(t, e.url("live/long"), src)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.stop()
	waitFor(t, "the stream", 5*time.Second, func() bool { return e.hub.Stream("live/long") != nil })
	// 1 MB per second of media: acknowledgements are due at 2.5 MB and 5 MB,
	// well after both the handshake and the track probe deadlines.
	waitFor(t, "6 MB in", 15*time.Second, func() bool {
		st := e.hub.Stream("live/long")
		return st == nil || st.Stats().BytesIn > 6<<20
	})
	time.Sleep(200 * time.Millisecond)
	if err := pub.Err(); err != nil {
		t.Errorf("publisher: %v", err)
	}
	if st := e.hub.Stream("live/long"); st == nil || !st.Stats().Publishing {
		t.Errorf("the publisher was dropped")
	}
}
