//go:build e2e

package transcode

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/internal/tsconv"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// These tests run the real FFmpeg (the test command installs it) on a
// 320x240 source made by FFmpeg too, published into an in-process hub.

type env struct {
	hub  *server.Hub
	m    *Manager
	logs *testfixtures.SyncBuffer
}

func newEnv(t *testing.T, mode string, change func(*Config)) *env {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatalf("ffmpeg not found: the ladder tests need it (apt-get install ffmpeg; ./scripts/test.sh installs it)")
	}
	logs := &testfixtures.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	conf := Config{FFmpeg: "ffmpeg", Threads: 1, IdleTimeout: time.Second, Watchdog: 3 * time.Second,
		Ladder: []Rung{{Name: "160p", Height: 160, VideoBitrate: 200e3}, {Name: "120p", Height: 120, VideoBitrate: 120e3, AudioBitrate: 48e3}}}
	if change != nil {
		change(&conf)
	}
	conf.Normalize()
	e := &env{logs: logs}
	e.hub = server.NewHub(server.HubConfig{Logger: log,
		OnDemand:    func(path string) bool { return e.m.Demand(path) },
		OnPublish:   func(path string, derived bool) { e.m.OnPublish(path, derived) },
		OnUnpublish: func(path string, derived bool) { e.m.OnUnpublish(path, derived) },
	})
	e.m = New(conf, e.hub, log, func(string) Plan { return Plan{Mode: mode, Rungs: conf.Ladder} })
	t.Cleanup(func() {
		e.m.Close()
		e.hub.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return e
}

// source publishes an FFmpeg test pattern (1 s GOP, AAC) on path until
// stop is called.
type source struct {
	cmd  *exec.Cmd
	pub  *server.Publisher
	done chan struct{}
	once sync.Once
}

func startSource(t *testing.T, hub *server.Hub, path string) *source {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", "25",
		"-c:a", "aac", "-b:a", "64k", "-f", "mpegts", "pipe:1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &source{cmd: cmd, done: make(chan struct{})}
	t.Cleanup(s.stop)
	r := &mpegts.Reader{R: out}
	if err := r.Initialize(); err != nil {
		t.Fatal(err)
	}
	r.OnDecodeError(func(error) {})
	in, err := tsconv.NewIngest(r, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	if s.pub, err = hub.PublishTrusted(path, in.Tracks(), server.PublishOptions{Protocol: "test"}); err != nil {
		t.Fatal(err)
	}
	in.SetWriter(s.pub)
	go func() {
		defer close(s.done)
		for r.Read() == nil {
		}
		io.Copy(io.Discard, out) //nolint:errcheck
	}()
	return s
}

func (s *source) stop() {
	s.once.Do(func() {
		s.cmd.Process.Kill() //nolint:errcheck
		<-s.done
		s.cmd.Wait() //nolint:errcheck
		s.pub.Close()
	})
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func publishing(hub *server.Hub, path string) bool {
	s := hub.Stream(path)
	return s != nil && s.Publishing()
}

// keyframes reads path for d and returns the DTS of its video keyframes.
func keyframes(t *testing.T, hub *server.Hub, path string, d time.Duration) []time.Duration {
	t.Helper()
	r, err := hub.ReadTrusted(context.Background(), path, server.ReadOptions{NoCatchUp: true})
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []time.Duration
	for {
		u, err := r.Next(ctx)
		if err != nil {
			return out
		}
		if u.Track.IsVideo() && u.KeyFrame {
			out = append(out, u.DTS)
		}
	}
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// The rungs appear as derived streams of the right height, and every rung
// has its keyframes at exactly the source's keyframe times.
func TestLadderAlignedKeyframes(t *testing.T) {
	e := newEnv(t, ModeAlways, nil)
	startSource(t, e.hub, "live/t")
	start := time.Now()
	waitFor(t, 10*time.Second, "both rungs published", func() bool {
		return publishing(e.hub, "live/t/160p") && publishing(e.hub, "live/t/120p")
	})
	t.Logf("rungs published %v after the source", time.Since(start).Round(time.Millisecond))

	type result struct {
		path string
		keys []time.Duration
	}
	results := make(chan result, 3)
	for _, p := range []string{"live/t", "live/t/160p", "live/t/120p"} {
		go func() { results <- result{p, keyframes(t, e.hub, p, 4*time.Second)} }()
	}
	keys := map[string][]time.Duration{}
	for range 3 {
		r := <-results
		keys[r.path] = r.keys
	}
	src := keys["live/t"]
	for _, rung := range []string{"live/t/160p", "live/t/120p"} {
		k := keys[rung]
		if len(k) < 3 {
			t.Fatalf("%s: %d keyframes in 4 s of a 1 s GOP", rung, len(k))
		}
		for _, d := range k {
			if d < src[0] || d > src[len(src)-1] {
				continue // outside what the source reader saw
			}
			if !slices.Contains(src, d) {
				t.Errorf("%s has a keyframe at %v, where the source has none (source: %v)", rung, d, src)
			}
		}
		for _, d := range src {
			if d >= k[0] && d <= k[len(k)-1] && !slices.Contains(k, d) {
				t.Errorf("%s has no keyframe at the source's %v (rung: %v)", rung, d, k)
			}
		}
	}
	for rung, h := range map[string]int{"live/t/160p": 160, "live/t/120p": 120} {
		s := e.hub.Stream(rung)
		if !s.Derived() {
			t.Errorf("%s is not flagged derived", rung)
		}
		vt := s.Tracks()[0]
		if !vt.IsVideo() || vt.Height != h || vt.Width%2 != 0 || vt.Width != (320*h/240+1)&^1 {
			t.Errorf("%s: %v %dx%d, want H264 %dx%d", rung, vt.Codec, vt.Width, vt.Height, 320*h/240, h)
		}
		if len(s.Tracks()) != 2 || s.Tracks()[1].Codec != media.CodecAAC {
			t.Errorf("%s: tracks %v, want video and AAC", rung, s.Tracks())
		}
		// A rung never gets a ladder of its own.
		if _, ok := e.m.Status(rung); ok {
			t.Errorf("%s has a worker of its own", rung)
		}
	}
	st, ok := e.m.Status("live/t")
	if !ok || st.State != "running" || !alive(st.PID) || !slices.Equal(st.Rungs, []string{"160p", "120p"}) {
		t.Fatalf("status %+v %v", st, ok)
	}
}

// A worker killed with SIGKILL comes back after a backoff and the rungs go
// on; when the source's publisher leaves, no FFmpeg is left within 6 s.
func TestLadderRestartAndStop(t *testing.T) {
	e := newEnv(t, ModeAlways, nil)
	src := startSource(t, e.hub, "live/t")
	waitFor(t, 10*time.Second, "rung published", func() bool { return publishing(e.hub, "live/t/160p") })
	st, _ := e.m.Status("live/t")
	pid := st.PID
	// A reader of the rung stays through the restart (the grace period).
	r, err := e.hub.ReadTrusted(context.Background(), "live/t/160p", server.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last time.Duration
	var session uint64        // the first FFmpeg's publisher
	for i := 0; i < 30; i++ { // about a second of it
		u, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if u.Track.IsVideo() {
			last, session = u.DTS, u.Track.Session
		}
	}

	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a new FFmpeg", func() bool {
		st, _ = e.m.Status("live/t")
		return st.State == "running" && st.PID != pid && st.PID != 0
	})
	back := time.Since(killed)
	if st.Restarts != 1 || !strings.Contains(st.LastExit, "killed") {
		t.Errorf("after a SIGKILL: restarts %d, last exit %q", st.Restarts, st.LastExit)
	}
	if back < 750*time.Millisecond {
		t.Errorf("restarted %v after the kill: no backoff", back)
	}
	if alive(pid) {
		t.Errorf("the killed FFmpeg %d is still there", pid)
	}
	// The rung resumes for its reader: on from where it was, at a keyframe
	// of the new FFmpeg (its units are a new publisher's: another
	// Track.Session). Where in time it resumes depends on where the
	// source's cached GOP began, so no size of gap is asked for.
	resumed := false
	for n := 0; n < 100 || !resumed; {
		u, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("the rung did not resume for its reader (%d pictures after the kill): %v", n, err)
		}
		if !u.Track.IsVideo() {
			continue
		}
		if u.DTS <= last {
			t.Fatalf("the rung went back in time: %v after %v", u.DTS, last)
		}
		if !resumed && u.Track.Session != session {
			if !u.KeyFrame {
				t.Fatalf("the rung resumed at %v with a delta frame", u.DTS)
			}
			resumed = true
		}
		last = u.DTS
		n++
	}
	if !strings.Contains(e.logs.String(), "FFmpeg ended; restarting") {
		t.Error("the restart was not logged")
	}

	pid = st.PID
	stopped := time.Now()
	src.stop()
	waitFor(t, 6*time.Second, "no FFmpeg after the publisher left", func() bool {
		_, ok := e.m.Status("live/t")
		return !ok && !alive(pid)
	})
	t.Logf("FFmpeg gone %v after the publisher left", time.Since(stopped).Round(time.Millisecond))
}

// The watchdog ends a worker that is fed but writes nothing: a stopped
// (SIGSTOP) FFmpeg here.
func TestLadderWatchdog(t *testing.T) {
	e := newEnv(t, ModeAlways, nil)
	startSource(t, e.hub, "live/t")
	waitFor(t, 10*time.Second, "rung published", func() bool { return publishing(e.hub, "live/t/120p") })
	st, _ := e.m.Status("live/t")
	if err := syscall.Kill(st.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the watchdog restarts it", func() bool {
		n, _ := e.m.Status("live/t")
		return n.State == "running" && n.PID != st.PID && n.PID != 0
	})
	if !strings.Contains(e.logs.String(), "watchdog") {
		t.Errorf("the watchdog's restart was not logged")
	}
	if alive(st.PID) {
		t.Errorf("the stopped FFmpeg %d was not killed", st.PID)
	}
}

// On demand: nothing runs until a rung is asked for; the ladder stops once
// no one has read a rung for idleTimeout.
func TestLadderOnDemand(t *testing.T) {
	e := newEnv(t, ModeOnDemand, nil)
	startSource(t, e.hub, "live/t")
	waitFor(t, 5*time.Second, "source", func() bool { return publishing(e.hub, "live/t") })
	time.Sleep(1500 * time.Millisecond)
	if _, ok := e.m.Status("live/t"); ok || publishing(e.hub, "live/t/160p") {
		t.Fatal("an on-demand ladder runs with no one asking")
	}
	if got := e.m.Renditions("live/t/160p"); got != nil {
		t.Fatalf("a rung path has renditions: %v", got)
	}
	if e.m.Demand("live/t/999p") || e.m.Demand("live/other/160p") {
		t.Fatal("Demand started a ladder for a rung that does not exist")
	}
	asked := time.Now()
	r, err := e.hub.ReadTrusted(context.Background(), "live/t/160p", server.ReadOptions{Wait: true})
	if err != nil {
		t.Fatalf("reading a rung on demand: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	for {
		u, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("no keyframe from the on-demand rung: %v", err)
		}
		if u.Track.IsVideo() && u.KeyFrame {
			break
		}
	}
	cancel()
	t.Logf("first keyframe of the rung %v after the request", time.Since(asked).Round(time.Millisecond))
	st, ok := e.m.Status("live/t")
	if !ok {
		t.Fatal("no worker after the demand")
	}
	time.Sleep(1500 * time.Millisecond) // longer than idleTimeout, with a reader
	if n, ok := e.m.Status("live/t"); !ok || n.PID != st.PID {
		t.Fatal("the ladder stopped while a rung had a reader")
	}
	r.Close()
	waitFor(t, 8*time.Second, "the idle ladder stops", func() bool {
		_, ok := e.m.Status("live/t")
		return !ok && !alive(st.PID)
	})
	if rs := e.m.Renditions("live/t"); len(rs) != 2 || rs[0].Name != "160p" || rs[0].Bandwidth != 220e3+128e3 {
		t.Fatalf("renditions %+v", rs)
	}
	if _, ok := e.m.Status("live/t"); !ok {
		t.Fatal("asking for the renditions did not start the on-demand ladder")
	}
}

// Without FFmpeg the server runs; the manager says once why the ladder is
// off and does nothing.
func TestNoFFmpeg(t *testing.T) {
	e := newEnv(t, ModeAlways, func(c *Config) { c.FFmpeg = "/nonexistent/ffmpeg" })
	if err := e.m.Err(); err == nil || !strings.Contains(err.Error(), "transcode.ffmpeg") {
		t.Fatalf("Err = %v", err)
	}
	startSource(t, e.hub, "live/t")
	waitFor(t, 5*time.Second, "source", func() bool { return publishing(e.hub, "live/t") })
	if e.m.Demand("live/t/160p") || e.m.Renditions("live/t") != nil {
		t.Fatal("a ladder without FFmpeg")
	}
	if _, err := e.hub.ReadTrusted(context.Background(), "live/t", server.ReadOptions{}); err != nil {
		t.Fatalf("the source does not play: %v", err)
	}
	if n := strings.Count(e.logs.String(), "bitrate ladder off"); n != 1 {
		t.Fatalf("said %d times that the ladder is off, want once:\n%s", n, e.logs.String())
	}
}

// transcode.maxWorkers caps the FFmpeg processes: a ladder beyond it is
// not started, and that is logged once.
func TestLadderMaxWorkers(t *testing.T) {
	e := newEnv(t, ModeAlways, func(c *Config) { c.MaxWorkers = 1 })
	startSource(t, e.hub, "live/a")
	waitFor(t, 10*time.Second, "rung of live/a", func() bool { return publishing(e.hub, "live/a/160p") })
	startSource(t, e.hub, "live/b")
	waitFor(t, 5*time.Second, "live/b", func() bool { return publishing(e.hub, "live/b") })
	if e.m.Demand("live/b/160p") {
		t.Fatal("Demand started a second ladder past maxWorkers")
	}
	time.Sleep(500 * time.Millisecond)
	if _, ok := e.m.Status("live/b"); ok || publishing(e.hub, "live/b/160p") {
		t.Fatal("a second ladder runs past maxWorkers: 1")
	}
	if n := strings.Count(e.logs.String(), "transcode.maxWorkers"); n != 1 {
		t.Fatalf("the cap was logged %d times, want once", n)
	}
}

// An on-demand ladder comes back when its source republishes while a rung
// still has a reader (an encoder reconnecting).
func TestLadderOnDemandRepublish(t *testing.T) {
	e := newEnv(t, ModeOnDemand, nil)
	src := startSource(t, e.hub, "live/t")
	waitFor(t, 5*time.Second, "source", func() bool { return publishing(e.hub, "live/t") })
	r, err := e.hub.ReadTrusted(context.Background(), "live/t/160p", server.ReadOptions{Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, _ := e.m.Status("live/t")
	src.stop()
	waitFor(t, 6*time.Second, "the ladder stops with its source", func() bool { return !alive(st.PID) })
	startSource(t, e.hub, "live/t")
	waitFor(t, 10*time.Second, "the ladder back for the waiting reader", func() bool {
		n, ok := e.m.Status("live/t")
		return ok && n.State == "running" && n.PID != st.PID
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for n := 0; n < 50; n++ {
		if _, err := r.Next(ctx); err != nil {
			t.Fatalf("the rung reader got nothing after the republish: %v", err)
		}
	}
}
