package srt

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	gosrt "github.com/datarhei/gosrt"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// fixtureTS is 2 s of 160x120 H264 with B-frames (GOP 25 at 25 fps) and
// AAC, made by ffmpeg.
func fixtureTS(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../../internal/testfixtures/bframes.ts")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type env struct {
	hub  *server.Hub
	srv  *Server
	addr string
	logs *testfixtures.SyncBuffer
}

func newEnv(t *testing.T, paths func(string) server.PathConfig) *env {
	t.Helper()
	logs := &testfixtures.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	hub := server.NewHub(server.HubConfig{PathConfig: paths, Logger: log})
	srv := New(Config{Address: "127.0.0.1:0", Latency: 120 * time.Millisecond, ReadTimeout: 5 * time.Second, WriteTimeout: 2 * time.Second}, hub, log)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	e := &env{hub: hub, srv: srv, addr: srv.Addr().String(), logs: logs}
	t.Cleanup(func() {
		hub.Close()
		srv.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return e
}

func dial(addr, streamID, pass string) (gosrt.Conn, error) {
	cfg := gosrt.DefaultConfig()
	cfg.StreamId = streamID
	cfg.Passphrase = pass
	cfg.PayloadSize = PayloadSize
	return gosrt.Dial("srt", addr, cfg)
}

// publish sends the fixture TS in a loop, paced at speed × real time by its
// PCR-less byte rate (2 s per loop), until stop.
func publish(t *testing.T, c gosrt.Conn, speed float64) (stop func()) {
	t.Helper()
	ts := fixtureTS(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		perLoop := time.Duration(float64(2*time.Second) / speed)
		chunks := (len(ts) + PayloadSize - 1) / PayloadSize
		start := time.Now()
		for loop := 0; ; loop++ {
			for i := 0; i < chunks; i++ {
				at := start.Add(time.Duration(loop)*perLoop + perLoop*time.Duration(i)/time.Duration(chunks))
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(at)):
				}
				end := min((i+1)*PayloadSize, len(ts))
				if _, err := c.Write(ts[i*PayloadSize : end]); err != nil && !errors.Is(err, io.EOF) {
					return
				}
			}
			// Loops repeat the same timestamps: only the first loop is
			// a clean stream, which is all the tests need.
			return
		}
	}()
	return func() {
		cancel()
		<-done
		c.Close()
	}
}

func waitPublished(t *testing.T, e *env, path string) {
	t.Helper()
	testfixtures.WaitPublished(t, e.hub, path)
}

// Every stream ID form publishes; the hub gets H264 with the source's DTS
// (B-frames: some PTS > DTS) and parameter sets at keyframes, and AAC.
func TestPublishStreamIDForms(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for i, sid := range []string{"publish:live/a", "#!::r=live/b,m=publish", "%23!::r=live/c,m=publish,u=me", "publish:live/d:me:pw"} {
		path := []string{"live/a", "live/b", "live/c", "live/d"}[i]
		c, err := dial(e.addr, sid, "")
		if err != nil {
			t.Fatalf("%q: %v", sid, err)
		}
		stop := publish(t, c, 4)
		waitPublished(t, e, path)
		r, err := e.hub.ReadTrusted(context.Background(), path, server.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		video, audio, reordered, keys := 0, 0, 0, 0
		var last time.Duration = -1 << 62
		for video < 30 || audio < 20 {
			u, err := r.Next(ctx)
			if err != nil {
				t.Fatalf("%q: after %d video, %d audio: %v", sid, video, audio, err)
			}
			if u.Track.Codec == media.CodecH264 {
				video++
				if u.DTS <= last || u.PTS < u.DTS {
					t.Fatalf("%q: video DTS %v after %v, PTS %v", sid, u.DTS, last, u.PTS)
				}
				last = u.DTS
				if u.PTS > u.DTS {
					reordered++
				}
				if u.KeyFrame {
					keys++
					if h264.NALUType(u.Payload[0][0]&0x1f) != h264.NALUTypeSPS {
						t.Fatalf("%q: keyframe does not start with SPS", sid)
					}
				}
			} else if u.Track.Codec == media.CodecAAC {
				audio++
			}
		}
		cancel()
		r.Close()
		stop()
		if reordered == 0 || keys == 0 {
			t.Errorf("%q: %d reordered units, %d keyframes", sid, reordered, keys)
		}
	}
}

// readTS reads an SRT stream and returns the first video access units (NALU
// types) and their PTS/DTS.
func readTS(t *testing.T, c gosrt.Conn, frames int) (first [][]byte, pts, dts []int64) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := &mpegts.Reader{R: c}
	if err := r.Initialize(); err != nil {
		t.Fatal(err)
	}
	done := errors.New("done")
	for _, tr := range r.Tracks() {
		switch tr.Codec.(type) {
		case *tscodecs.H264:
			r.OnDataH264(tr, func(p, d int64, au [][]byte) error {
				if first == nil {
					first = au
				}
				pts, dts = append(pts, p), append(dts, d)
				if len(pts) >= frames {
					return done
				}
				return nil
			})
		case *tscodecs.MPEG4Audio:
			r.OnDataMPEG4Audio(tr, func(int64, [][]byte) error { return nil })
		}
	}
	for {
		if err := r.Read(); err != nil {
			if errors.Is(err, done) {
				return
			}
			t.Fatalf("after %d frames: %v", len(pts), err)
		}
	}
}

// A reader over SRT (both stream ID forms) starts at the cached keyframe
// and gets the B-frames with their timestamps.
func TestReadStartsAtKeyframe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c, err := dial(e.addr, "publish:live/r", "")
	if err != nil {
		t.Fatal(err)
	}
	defer publish(t, c, 1)()
	waitPublished(t, e, "live/r")
	time.Sleep(500 * time.Millisecond) // mid-GOP
	for _, sid := range []string{"read:live/r", "#!::r=live/r,m=request", "%23!::r=live/r"} {
		rc, err := dial(e.addr, sid, "")
		if err != nil {
			t.Fatalf("%q: %v", sid, err)
		}
		first, pts, dts := readTS(t, rc, 20)
		rc.Close()
		if !h264.IsRandomAccess(first) {
			t.Errorf("%q: first access unit is not a keyframe", sid)
		}
		reordered := 0
		for i := range pts {
			if pts[i] > dts[i] {
				reordered++
			}
			if i > 0 && dts[i] <= dts[i-1] {
				t.Errorf("%q: DTS not increasing at %d", sid, i)
			}
		}
		if reordered == 0 {
			t.Errorf("%q: no B-frame timing in the output", sid)
		}
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	const pass = "0123456789abc"
	e := newEnv(t, func(p string) server.PathConfig {
		pc := server.DefaultPathConfig()
		if strings.HasPrefix(p, "enc/") {
			pc.SRTPublishPassphrase, pc.SRTReadPassphrase = pass, pass+"r"
		}
		if strings.HasPrefix(p, "key/") {
			pc.PublishKey = "k1"
		}
		return pc
	})
	good, err := dial(e.addr, "publish:live/good", "")
	if err != nil {
		t.Fatal(err)
	}
	defer publish(t, good, 1)()
	waitPublished(t, e, "live/good")

	refused := []struct {
		sid, pass, log string
	}{
		{"", "", "sent none"},
		{"nonsense", "", "bad streamid"},
		{"#!::r=live/x,m=bidirectional", "", "not supported"},
		{"publish:bad..path/..", "", "invalid path"},
		{"read:live/nobody", "", "not found"},
		{"publish:live/good", "", "busy"},
		{"publish:enc/a", "", "does not encrypt"},
		{"publish:enc/a", "wrongpassphrase", "wrong passphrase"},
		{"publish:live/plain", "0123456789abc", "has no passphrase"},
		{"publish:key/a", "", "wrong or missing key"},
		{"publish:key/a:u:nope", "", "wrong or missing key"},
	}
	for _, tc := range refused {
		c, err := dial(e.addr, tc.sid, tc.pass)
		if err == nil {
			c.Close()
			t.Errorf("%q pass %q: accepted", tc.sid, tc.pass)
			continue
		}
		if !strings.Contains(e.logs.String(), tc.log) {
			t.Errorf("%q pass %q: refused (%v) but the log does not say %q", tc.sid, tc.pass, err, tc.log)
		}
	}
	// The right passphrase and key work.
	c, err := dial(e.addr, "publish:enc/a", pass)
	if err != nil {
		t.Fatalf("right passphrase: %v", err)
	}
	defer publish(t, c, 1)()
	waitPublished(t, e, "enc/a")
	rc, err := dial(e.addr, "read:enc/a", pass+"r")
	if err != nil {
		t.Fatalf("read passphrase: %v", err)
	}
	if first, _, _ := readTS(t, rc, 5); !h264.IsRandomAccess(first) {
		t.Error("encrypted reader: first unit not a keyframe")
	}
	rc.Close()
	kc, err := dial(e.addr, "#!::r=key/a,m=publish,s=k1", "")
	if err != nil {
		t.Fatalf("s= key: %v", err)
	}
	kc.Close()
	// The first publisher never stopped.
	if st := e.hub.Stream("live/good"); st == nil || !st.Stats().Publishing {
		t.Error("the refusals dropped a live publisher")
	}
	// The SRT link figures are in the session list.
	linked := false
	for _, ss := range e.hub.Sessions() {
		linked = linked || (ss.Protocol == "srt" && ss.Link != nil && ss.Link.RTTMs >= 0)
	}
	if !linked {
		t.Error("no SRT link figures in the session list")
	}
}

// fullConn is a send queue that is full from some point on.
type fullConn struct {
	n, okUntil int
	got        bytes.Buffer
}

func (f *fullConn) Write(p []byte) (int, error) {
	f.n++
	if f.n > f.okUntil {
		return 0, io.EOF
	}
	f.got.Write(p)
	return len(p), nil
}

// A full gosrt send queue (Write returns EOF) skips to the next keyframe;
// staying full for writeTimeout ends the reader.
func TestFullQueueSkipsToKeyframe(t *testing.T) {
	v := &media.Track{ID: 0, Codec: media.CodecH264, Session: 1}
	fc := &fullConn{okUntil: 1 << 30}
	o, err := newTSOut(fc, &streamMux{}, []*media.Track{v})
	if err != nil {
		t.Fatal(err)
	}
	tracks := func() []*media.Track { return []*media.Track{v} }
	unit := func(i int, key bool) *media.Unit {
		typ := byte(0x41)
		if key {
			typ = 0x65
		}
		return &media.Unit{Track: v, PTS: time.Duration(i) * 40 * time.Millisecond, DTS: time.Duration(i) * 40 * time.Millisecond,
			KeyFrame: key, Payload: [][]byte{{typ, 0x88, byte(i), 1}}}
	}
	if err := o.write(unit(0, true), tracks, time.Hour); err != nil {
		t.Fatal(err)
	}
	fc.okUntil = fc.n // full from now on
	if err := o.write(unit(1, false), tracks, time.Hour); err != nil || o.drops != 1 || !o.waitKey {
		t.Fatalf("full queue: err %v drops %d waitKey %v", err, o.drops, o.waitKey)
	}
	fc.okUntil = 1 << 30 // drained
	before := fc.n
	if err := o.write(unit(2, false), tracks, time.Hour); err != nil || fc.n != before {
		t.Fatalf("a delta frame after a drop was sent (err %v)", err)
	}
	if err := o.write(unit(3, true), tracks, time.Hour); err != nil || fc.n == before || o.waitKey {
		t.Fatalf("the next keyframe was not sent (err %v)", err)
	}
	fc.okUntil = fc.n
	o.lastOK = time.Now().Add(-time.Minute)
	if err := o.write(unit(4, true), tracks, time.Second); !errors.Is(err, errTooSlow) {
		t.Fatalf("a queue full for longer than writeTimeout: %v, want errTooSlow", err)
	}
}
