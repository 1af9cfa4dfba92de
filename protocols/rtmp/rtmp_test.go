package rtmp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/httpflv"
	"github.com/streamhub/streamhub/protocols/internal/flv"
	"github.com/streamhub/streamhub/protocols/rtmp"
	"github.com/streamhub/streamhub/server"
)

// Real parameter sets (from gortmplib's tests); slices are synthetic.
var (
	h264SPS = testfixtures.H264SPS
	h264PPS = testfixtures.H264PPS
	h265VPS = testfixtures.H265VPS
	h265SPS = testfixtures.H265SPS
	h265PPS = testfixtures.H265PPS
	av1Seq  = testfixtures.AV1SequenceHeader
	aacConf = &mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 44100, ChannelCount: 2}
)

const (
	frameDur = 40 * time.Millisecond
	gopLen   = 25 // frames per GOP
)

// ---- environment ----

type env struct {
	hub  *server.Hub
	srv  *rtmp.Server
	logs *testfixtures.SyncBuffer
	log  *slog.Logger
	addr string
}

func newEnv(t *testing.T, conf rtmp.Config, pc func(string) server.PathConfig) *env {
	t.Helper()
	logs := &testfixtures.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if pc == nil {
		pc = func(string) server.PathConfig {
			c := server.DefaultPathConfig()
			c.CatchUp = 0 // the tests compare timestamps with what was published
			return c
		}
	}
	hub := server.NewHub(server.HubConfig{PathConfig: pc, Logger: log})
	conf.Address = "127.0.0.1:0"
	if conf.HandshakeTimeout == 0 {
		conf.HandshakeTimeout = 5 * time.Second
	}
	if conf.ReadTimeout == 0 {
		conf.ReadTimeout = 5 * time.Second
	}
	if conf.WriteTimeout == 0 {
		conf.WriteTimeout = 5 * time.Second
	}
	srv := rtmp.New(conf, hub, log)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	e := &env{hub: hub, srv: srv, logs: logs, log: log, addr: srv.Addr().String()}
	t.Cleanup(func() {
		hub.Close()
		srv.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return e
}

func (e *env) url(path string) *url.URL {
	u, err := url.Parse("rtmp://" + e.addr + "/" + path)
	if err != nil {
		panic(err)
	}
	return u
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ---- publisher ----

// source describes what a publisher sends.
type source struct {
	video     *gortmplib.Track // nil: none
	audio     *gortmplib.Track // nil: none
	start     time.Duration    // first DTS
	ptsOffset time.Duration    // PTS - DTS of video
	speed     float64          // media time per wall time; 0: as fast as possible
	idrSize   int              // bytes of the synthetic IDR slice
	duration  time.Duration    // 0: until stopped
}

type publisher struct {
	c      *gortmplib.Client
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
	frames int
}

func (p *publisher) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *publisher) Frames() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frames
}

func (p *publisher) stop() {
	p.cancel()
	p.c.Close()
	<-p.done
}

func videoAU(codec codecs.Codec, i int, idrSize int) [][]byte {
	key := i%gopLen == 0
	fill := func(n int, hdr ...byte) []byte {
		b := make([]byte, max(n, len(hdr)+4))
		copy(b, hdr)
		for j := len(hdr); j < len(b); j++ {
			b[j] = byte(i + j)
		}
		b[len(b)-1] |= 1 // no trailing zero byte
		return b
	}
	switch codec.(type) {
	case *codecs.H264:
		if key {
			return [][]byte{fill(idrSize, 0x65, 0x88, 0x84)}
		}
		return [][]byte{fill(64, 0x41, 0x9a)}
	case *codecs.H265:
		if key {
			return [][]byte{fill(idrSize, 0x26, 0x01, 0xaf)}
		}
		return [][]byte{fill(64, 0x02, 0x01, 0xd0)}
	case *codecs.AV1:
		if key {
			return [][]byte{av1Seq, fill(min(idrSize, 120), 0x30)}
		}
		return [][]byte{{0x30, 0x10, byte(i), 0x31}}
	}
	return nil
}

// startPublisher connects and sends src in a goroutine.
func startPublisher(t *testing.T, u *url.URL, src source) (*publisher, error) {
	t.Helper()
	return startPublisherTLS(t, u, src, nil)
}

// startPublisherTLS is startPublisher with the TLS configuration of an
// rtmps:// URL.
func startPublisherTLS(t *testing.T, u *url.URL, src source, tc *tls.Config) (*publisher, error) {
	t.Helper()
	c := &gortmplib.Client{URL: u, Publish: true, TLSConfig: tc}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Initialize(ctx); err != nil {
		return nil, err
	}
	var tracks []*gortmplib.Track
	if src.video != nil {
		tracks = append(tracks, src.video)
	}
	if src.audio != nil {
		tracks = append(tracks, src.audio)
	}
	w := &gortmplib.Writer{Conn: c, Tracks: tracks}
	if err := w.Initialize(); err != nil {
		c.Close()
		return nil, err
	}
	pctx, pcancel := context.WithCancel(context.Background())
	p := &publisher{c: c, cancel: pcancel, done: make(chan struct{})}
	if src.idrSize == 0 {
		src.idrSize = 2000
	}
	go func() {
		defer close(p.done)
		wallStart := time.Now()
		audioDur := 20 * time.Millisecond
		var vi, ai int
		for {
			if pctx.Err() != nil {
				return
			}
			vt := src.start + time.Duration(vi)*frameDur
			at := src.start + time.Duration(ai)*audioDur
			if src.video == nil {
				vt = 1 << 62
			}
			if src.audio == nil {
				at = 1 << 62
			}
			next := min(vt, at)
			if src.duration > 0 && next-src.start >= src.duration {
				return
			}
			if src.speed > 0 {
				if d := time.Duration(float64(next-src.start)/src.speed) - time.Since(wallStart); d > 0 {
					select {
					case <-time.After(d):
					case <-pctx.Done():
						return
					}
				}
			}
			var err error
			if vt <= at {
				au := videoAU(src.video.Codec, vi, src.idrSize)
				switch src.video.Codec.(type) {
				case *codecs.H264:
					err = w.WriteH264(src.video, vt+src.ptsOffset, vt, au)
				case *codecs.H265:
					err = w.WriteH265(src.video, vt+src.ptsOffset, vt, au)
				case *codecs.AV1:
					err = w.WriteAV1(src.video, vt, au)
				}
				vi++
			} else {
				frame := []byte{0x21, 0x10, byte(ai), 0x05, 0x00}
				switch codec := src.audio.Codec.(type) {
				case *codecs.MPEG4Audio:
					err = w.WriteMPEG4Audio(src.audio, at, frame)
				case *codecs.Opus:
					err = w.WriteOpus(src.audio, at, []byte{0xfc, 0xff, 0xfe, byte(ai)})
				case *codecs.G711:
					err = w.WriteG711(src.audio, at, bytes.Repeat([]byte{0xd5}, 160))
				case *codecs.LPCM:
					err = w.WriteLPCM(src.audio, at, make([]byte, 320))
				default:
					err = fmt.Errorf("test publisher: no writer for %T", codec)
				}
				ai++
			}
			p.mu.Lock()
			p.frames++
			if err != nil {
				p.err = err
			}
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return p, nil
}

// ---- player ----

type vframe struct {
	pts, dts time.Duration
	au       [][]byte
}

type aframe struct {
	pts  time.Duration
	data []byte
}

type player struct {
	c      *gortmplib.Client
	tracks []*gortmplib.Track
	done   chan struct{}

	mu    sync.Mutex
	video []vframe
	audio []aframe
	err   error
}

func (p *player) snapshot() ([]vframe, []aframe, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]vframe(nil), p.video...), append([]aframe(nil), p.audio...), p.err
}

// pictures returns the video AUs that carry a slice (not the config callbacks).
func (p *player) pictures() []vframe {
	v, _, _ := p.snapshot()
	var out []vframe
	for _, f := range v {
		for _, n := range f.au {
			if isSlice(p.tracks, n) {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

func isSlice(tracks []*gortmplib.Track, n []byte) bool {
	if len(n) == 0 {
		return false
	}
	for _, tr := range tracks {
		switch tr.Codec.(type) {
		case *codecs.H264:
			typ := h264.NALUType(n[0] & 0x1F)
			return typ == h264.NALUTypeIDR || typ == h264.NALUTypeNonIDR
		case *codecs.H265:
			return h265.NALUType((n[0]>>1)&0x3F) <= h265.NALUType_CRA_NUT
		case *codecs.AV1:
			return (n[0]>>3)&0xF == 6 // frame OBU
		}
	}
	return false
}

func (p *player) close() {
	p.c.Close()
	<-p.done
}

func startPlayer(t *testing.T, u *url.URL) (*player, error) {
	t.Helper()
	return startPlayerTLS(t, u, nil)
}

// startPlayerTLS is startPlayer with the TLS configuration of an rtmps://
// URL.
func startPlayerTLS(t *testing.T, u *url.URL, tc *tls.Config) (*player, error) {
	t.Helper()
	c := &gortmplib.Client{URL: u, Publish: false, TLSConfig: tc}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Initialize(ctx); err != nil {
		return nil, err
	}
	c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	r := &gortmplib.Reader{Conn: c}
	if err := r.Initialize(); err != nil {
		c.Close()
		return nil, fmt.Errorf("reading tracks: %w", err)
	}
	p := &player{c: c, tracks: r.Tracks(), done: make(chan struct{})}
	for _, tr := range p.tracks {
		switch tr.Codec.(type) {
		case *codecs.H264:
			r.OnDataH264(tr, func(pts, dts time.Duration, au [][]byte) {
				p.mu.Lock()
				p.video = append(p.video, vframe{pts, dts, au})
				p.mu.Unlock()
			})
		case *codecs.H265:
			r.OnDataH265(tr, func(pts, dts time.Duration, au [][]byte) {
				p.mu.Lock()
				p.video = append(p.video, vframe{pts, dts, au})
				p.mu.Unlock()
			})
		case *codecs.AV1:
			r.OnDataAV1(tr, func(pts time.Duration, tu [][]byte) {
				p.mu.Lock()
				p.video = append(p.video, vframe{pts, pts, tu})
				p.mu.Unlock()
			})
		case *codecs.MPEG4Audio:
			r.OnDataMPEG4Audio(tr, func(pts time.Duration, au []byte) {
				p.mu.Lock()
				p.audio = append(p.audio, aframe{pts, au})
				p.mu.Unlock()
			})
		case *codecs.Opus:
			r.OnDataOpus(tr, func(pts time.Duration, pkt []byte) {
				p.mu.Lock()
				p.audio = append(p.audio, aframe{pts, pkt})
				p.mu.Unlock()
			})
		}
	}
	go func() {
		defer close(p.done)
		for {
			c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
			if err := r.Read(); err != nil {
				p.mu.Lock()
				p.err = err
				p.mu.Unlock()
				return
			}
		}
	}()
	return p, nil
}

// ---- HTTP-FLV ----

type flvTag struct {
	typ    byte
	ts     uint32
	key    bool
	config bool
	body   []byte
}

// readFLV reads n tags of path over HTTP-FLV.
func readFLV(t *testing.T, e *env, path string, n int) []flvTag {
	t.Helper()
	h := httpflv.New(httpflv.Config{WriteTimeout: 5 * time.Second}, e.hub, e.log)
	ts := httptest.NewServer(h)
	defer ts.Close()
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/"+path+".flv", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "video/x-flv" {
		t.Fatalf("HTTP-FLV: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	r, err := flv.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out []flvTag
	for len(out) < n {
		tag, err := r.Read()
		if err != nil {
			t.Fatalf("HTTP-FLV after %d tags: %v", len(out), err)
		}
		out = append(out, flvTag{tag.Type, tag.Timestamp, tag.IsVideoKeyFrame(), tag.IsConfig(), append([]byte(nil), tag.Body...)})
	}
	return out
}

// ---- (a)-(d): codecs end to end ----

func TestPublishPlayH264AAC(t *testing.T) {
	e := newEnv(t, rtmp.Config{}, nil)
	src := source{
		video:     &gortmplib.Track{Codec: &codecs.H264{SPS: h264SPS, PPS: h264PPS}},
		audio:     &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: aacConf}},
		start:     10 * time.Second,
		ptsOffset: 80 * time.Millisecond,
		speed:     8,
	}
	pub, err := startPublisher(t, e.url("live/test"), src)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.stop()
	waitFor(t, "the stream in the hub", 5*time.Second, func() bool { return e.hub.Stream("live/test") != nil })

	// The hub's tracks.
	tracks := e.hub.Stream("live/test").Tracks()
	if len(tracks) != 2 || tracks[0].Codec != media.CodecH264 || !bytes.Equal(tracks[0].SPS, h264SPS) ||
		tracks[1].Codec != media.CodecAAC || tracks[1].SampleRate != 44100 || tracks[1].Channels != 2 {
		t.Fatalf("hub tracks %+v", tracks)
	}

	p, err := startPlayer(t, e.url("live/test"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if len(p.tracks) != 2 {
		t.Fatalf("player tracks: %d", len(p.tracks))
	}
	vc, ok := p.tracks[0].Codec.(*codecs.H264)
	if !ok || !bytes.Equal(vc.SPS, h264SPS) || !bytes.Equal(vc.PPS, h264PPS) {
		t.Fatalf("player video track %#v", p.tracks[0].Codec)
	}
	ac, ok := p.tracks[1].Codec.(*codecs.MPEG4Audio)
	if !ok || ac.Config.SampleRate != 44100 || ac.Config.ChannelCount != 2 {
		t.Fatalf("player audio track %#v", p.tracks[1].Codec)
	}
	waitFor(t, "60 pictures", 10*time.Second, func() bool { return len(p.pictures()) >= 60 })
	pics := p.pictures()
	first := pics[0]
	if len(first.au) < 3 || !bytes.Equal(first.au[0], h264SPS) || !bytes.Equal(first.au[1], h264PPS) ||
		h264.NALUType(first.au[2][0]&0x1F) != h264.NALUTypeIDR {
		t.Errorf("first picture is not an IDR with SPS/PPS in-band: %d NALUs, types %v", len(first.au), naluTypes(first.au))
	}
	for i, f := range pics {
		if f.pts-f.dts != src.ptsOffset {
			t.Fatalf("picture %d: PTS-DTS = %v, want %v", i, f.pts-f.dts, src.ptsOffset)
		}
		if f.dts < src.start {
			t.Fatalf("picture %d: DTS %v before the first DTS sent %v", i, f.dts, src.start)
		}
		if i > 0 && f.dts-pics[i-1].dts != frameDur {
			t.Fatalf("picture %d: DTS step %v, want %v", i, f.dts-pics[i-1].dts, frameDur)
		}
		isIDR := h264.NALUType(f.au[len(f.au)-1][0]&0x1F) == h264.NALUTypeIDR
		if isIDR && !(bytes.Equal(f.au[0], h264SPS) && bytes.Equal(f.au[1], h264PPS)) {
			t.Fatalf("picture %d: IDR without in-band SPS/PPS", i)
		}
	}
	if (first.dts-src.start)%(gopLen*frameDur) != 0 {
		t.Errorf("first picture DTS %v is not at a GOP start", first.dts)
	}
	_, audio, _ := p.snapshot()
	if len(audio) < 20 {
		t.Fatalf("only %d audio frames", len(audio))
	}
	for i, a := range audio {
		if (a.pts-src.start)%(20*time.Millisecond) != 0 || (i > 0 && a.pts <= audio[i-1].pts) {
			t.Fatalf("audio %d: PTS %v", i, a.pts)
		}
		if len(a.data) != 5 || a.data[0] != 0x21 {
			t.Fatalf("audio %d: payload %x", i, a.data)
		}
	}

	// The same stream over HTTP-FLV.
	tags := readFLV(t, e, "live/test", 12)
	if tags[0].typ != flv.TagScript {
		t.Errorf("first FLV tag is type %d, want script", tags[0].typ)
	}
	var sawVCfg, sawACfg, sawKey bool
	for _, tag := range tags[1:] {
		switch {
		case tag.typ == flv.TagVideo && tag.config:
			sawVCfg = true
			if !bytes.Contains(tag.body, h264SPS) {
				t.Error("FLV AVC sequence header lacks the SPS")
			}
		case tag.typ == flv.TagVideo && !sawKey:
			if !sawVCfg || !tag.key {
				t.Errorf("first FLV video tag: config before it %v, key %v", sawVCfg, tag.key)
			}
			sawKey = true
			if !bytes.Contains(tag.body, h264SPS) || uint32(src.start/time.Millisecond) > tag.ts {
				t.Errorf("first FLV key frame: ts %d, SPS in-band %v", tag.ts, bytes.Contains(tag.body, h264SPS))
			}
			if cts := int(tag.body[2])<<16 | int(tag.body[3])<<8 | int(tag.body[4]); cts != 80 {
				t.Errorf("FLV composition time %d, want 80", cts)
			}
		case tag.typ == flv.TagAudio && tag.config:
			sawACfg = true
		}
	}
	if !sawVCfg || !sawACfg || !sawKey {
		t.Errorf("HTTP-FLV: video config %v, audio config %v, key frame %v", sawVCfg, sawACfg, sawKey)
	}
	if err := pub.Err(); err != nil {
		t.Errorf("publisher: %v", err)
	}
}

func naluTypes(au [][]byte) []int {
	var out []int
	for _, n := range au {
		if len(n) > 0 {
			out = append(out, int(n[0]&0x1F))
		}
	}
	return out
}

func TestPublishPlayH265(t *testing.T) {
	e := newEnv(t, rtmp.Config{}, nil)
	src := source{
		video: &gortmplib.Track{Codec: &codecs.H265{VPS: h265VPS, SPS: h265SPS, PPS: h265PPS}},
		audio: &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: aacConf}},
		start: time.Second, ptsOffset: 40 * time.Millisecond, speed: 8,
	}
	pub, err := startPublisher(t, e.url("live/hevc"), src)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.stop()
	waitFor(t, "the stream in the hub", 5*time.Second, func() bool { return e.hub.Stream("live/hevc") != nil })
	if tr := e.hub.Stream("live/hevc").Tracks()[0]; tr.Codec != media.CodecH265 || !bytes.Equal(tr.VPS, h265VPS) || tr.Width == 0 {
		t.Fatalf("hub track %+v", tr)
	}

	p, err := startPlayer(t, e.url("live/hevc"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	vc, ok := p.tracks[0].Codec.(*codecs.H265)
	if !ok || !bytes.Equal(vc.VPS, h265VPS) || !bytes.Equal(vc.SPS, h265SPS) || !bytes.Equal(vc.PPS, h265PPS) {
		t.Fatalf("player video track %#v", p.tracks[0].Codec)
	}
	waitFor(t, "30 pictures", 10*time.Second, func() bool { return len(p.pictures()) >= 30 })
	pics := p.pictures()
	f := pics[0]
	if len(f.au) < 4 || !bytes.Equal(f.au[0], h265VPS) || !bytes.Equal(f.au[1], h265SPS) || !bytes.Equal(f.au[2], h265PPS) ||
		h265.NALUType((f.au[3][0]>>1)&0x3F) != h265.NALUType_IDR_W_RADL {
		t.Errorf("first picture is not an IDR with VPS/SPS/PPS in-band (%d NALUs)", len(f.au))
	}
	for i, f := range pics {
		if f.pts-f.dts != src.ptsOffset || (i > 0 && f.dts-pics[i-1].dts != frameDur) {
			t.Fatalf("picture %d: pts %v dts %v", i, f.pts, f.dts)
		}
	}
	if _, audio, _ := p.snapshot(); len(audio) == 0 {
		t.Error("no audio")
	}

	tags := readFLV(t, e, "live/hevc", 8)
	var cfg, key *flvTag
	for i := range tags {
		if tags[i].typ == flv.TagVideo && tags[i].config && cfg == nil {
			cfg = &tags[i]
		}
		if tags[i].typ == flv.TagVideo && tags[i].key && key == nil {
			key = &tags[i]
		}
	}
	if cfg == nil || key == nil || !bytes.HasPrefix(cfg.body, []byte{0x90, 'h', 'v', 'c', '1'}) ||
		!bytes.HasPrefix(key.body, []byte{0x91, 'h', 'v', 'c', '1'}) || !bytes.Contains(key.body, h265VPS) {
		t.Fatalf("HTTP-FLV HEVC: config %v key %v", cfg, key)
	}
}

func TestPublishPlayAV1(t *testing.T) {
	e := newEnv(t, rtmp.Config{}, nil)
	src := source{video: &gortmplib.Track{Codec: &codecs.AV1{}}, start: 0, speed: 8}
	pub, err := startPublisher(t, e.url("live/av1"), src)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.stop()
	waitFor(t, "the stream in the hub", 5*time.Second, func() bool { return e.hub.Stream("live/av1") != nil })
	waitFor(t, "the sequence header in the hub track", 5*time.Second, func() bool {
		return bytes.Equal(e.hub.Stream("live/av1").Tracks()[0].AV1SequenceHeader, av1Seq)
	})
	if tr := e.hub.Stream("live/av1").Tracks()[0]; tr.Width != 1920 || tr.Height != 804 {
		t.Errorf("AV1 track size %dx%d", tr.Width, tr.Height)
	}
	p, err := startPlayer(t, e.url("live/av1"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if _, ok := p.tracks[0].Codec.(*codecs.AV1); !ok {
		t.Fatalf("player track %#v", p.tracks[0].Codec)
	}
	waitFor(t, "30 pictures", 10*time.Second, func() bool { return len(p.pictures()) >= 30 })
	pics := p.pictures()
	if !containsBytes(pics[0].au, av1Seq) {
		t.Errorf("first AV1 TU has no sequence header: %x", pics[0].au)
	}
	for i := 1; i < len(pics); i++ {
		if pics[i].pts-pics[i-1].pts != frameDur {
			t.Fatalf("TU %d: PTS step %v", i, pics[i].pts-pics[i-1].pts)
		}
	}
	tags := readFLV(t, e, "live/av1", 4)
	if !tags[1].config || !bytes.HasPrefix(tags[1].body, []byte{0x90, 'a', 'v', '0', '1'}) || !tags[2].key {
		t.Errorf("HTTP-FLV AV1: %+v", tags[1:3])
	}
}

func containsBytes(list [][]byte, b []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, b) {
			return true
		}
	}
	return false
}

func TestPublishPlayOpus(t *testing.T) {
	e := newEnv(t, rtmp.Config{}, nil)
	src := source{audio: &gortmplib.Track{Codec: &codecs.Opus{IDHeader: &opus.IDHeader{Version: 1, ChannelCount: 2, PreSkip: 312, InputSampleRate: 48000}}},
		start: 5 * time.Second, speed: 8}
	pub, err := startPublisher(t, e.url("live/opus"), src)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.stop()
	waitFor(t, "the stream in the hub", 5*time.Second, func() bool { return e.hub.Stream("live/opus") != nil })
	if tr := e.hub.Stream("live/opus").Tracks(); len(tr) != 1 || tr[0].Codec != media.CodecOpus || tr[0].Channels != 2 {
		t.Fatalf("hub tracks %+v", tr)
	}
	p, err := startPlayer(t, e.url("live/opus"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	oc, ok := p.tracks[0].Codec.(*codecs.Opus)
	if !ok || oc.IDHeader == nil || oc.IDHeader.ChannelCount != 2 {
		t.Fatalf("player track %#v", p.tracks[0].Codec)
	}
	waitFor(t, "50 Opus packets", 10*time.Second, func() bool { _, a, _ := p.snapshot(); return len(a) >= 50 })
	_, audio, _ := p.snapshot()
	for i, a := range audio {
		if a.pts < src.start || (i > 0 && a.pts-audio[i-1].pts != 20*time.Millisecond) || len(a.data) != 4 || a.data[0] != 0xfc {
			t.Fatalf("packet %d: pts %v data %x", i, a.pts, a.data)
		}
	}
}

// ---- (e) timestamps ----

// hubDTS reads n units of path straight from the hub.
func hubUnits(t *testing.T, e *env, path string, n int) []*media.Unit {
	t.Helper()
	r, err := e.hub.ReadTrusted(context.Background(), path, server.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*media.Unit
	for len(out) < n {
		u, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("hub read after %d units: %v", len(out), err)
		}
		out = append(out, u)
	}
	return out
}

func TestTimestampsPast24Bits(t *testing.T) {
	e := newEnv(t, rtmp.Config{}, nil)
	start := time.Duration(1<<24)*time.Millisecond - 3*time.Second // crosses 2^24 ms (extended timestamps)
	src := source{
		video: &gortmplib.Track{Codec: &codecs.H264{SPS: h264SPS, PPS: h264PPS}},
		audio: &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: aacConf}},
		start: start, ptsOffset: 40 * time.Millisecond, speed: 10,
	}
	pub, err := startPublisher(t, e.url("live/ts24"), src)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.stop()
	waitFor(t, "the stream", 5*time.Second, func() bool { return e.hub.Stream("live/ts24") != nil })
	p, err := startPlayer(t, e.url("live/ts24"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	limit := time.Duration(1<<24)*time.Millisecond + time.Second
	waitFor(t, "pictures past 2^24 ms", 10*time.Second, func() bool {
		pics := p.pictures()
		return len(pics) > 0 && pics[len(pics)-1].dts > limit
	})
	pics := p.pictures()
	for i := 1; i < len(pics); i++ {
		if pics[i].dts-pics[i-1].dts != frameDur || pics[i].pts-pics[i].dts != 40*time.Millisecond {
			t.Fatalf("picture %d: dts %v after %v, pts %v", i, pics[i].dts, pics[i-1].dts, pics[i].pts)
		}
	}
	_, audio, _ := p.snapshot()
	for i := 1; i < len(audio); i++ {
		if audio[i].pts-audio[i-1].pts != 20*time.Millisecond {
			t.Fatalf("audio %d: pts %v after %v", i, audio[i].pts, audio[i-1].pts)
		}
	}
}

// TestTimestampWrap publishes across RTMP's 32-bit millisecond wrap. The hub
// timeline must be monotonic across it; RTMP players get the wrapped 32-bit
// clock (gortmplib does not unwrap), which must be monotonic modulo 2^32.
//
// The stream starts 3 s (not 2 s) before the wrap: gortmplib's track probe
// reads until it has seen 2 s of media and cannot finish when the timestamps
// wrap inside those 2 s.
func TestTimestampWrap(t *testing.T) {
	e := newEnv(t, rtmp.Config{}, nil)
	wrap := time.Duration(1<<32) * time.Millisecond
	src := source{
		video: &gortmplib.Track{Codec: &codecs.H264{SPS: h264SPS, PPS: h264PPS}},
		audio: &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: aacConf}},
		start: wrap - 3*time.Second, ptsOffset: 40 * time.Millisecond, speed: 10, duration: 6 * time.Second,
	}
	pub, err := startPublisher(t, e.url("live/wrap"), src)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.stop()
	waitFor(t, "the stream", 5*time.Second, func() bool { return e.hub.Stream("live/wrap") != nil })
	p, err := startPlayer(t, e.url("live/wrap"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()

	units := hubUnits(t, e, "live/wrap", 120) // ~2.4 s of video and audio from the cached GOP on
	lastV, lastA := time.Duration(-1), time.Duration(-1)
	crossed := false
	for i, u := range units {
		last := &lastA
		if u.Track.IsVideo() {
			last = &lastV
			if u.PTS-u.DTS != 40*time.Millisecond {
				t.Fatalf("unit %d: PTS-DTS %v", i, u.PTS-u.DTS)
			}
		}
		if *last >= 0 && u.DTS <= *last {
			t.Fatalf("unit %d (%s): DTS %v after %v: not monotonic across the wrap", i, u.Track.Codec, u.DTS, *last)
		}
		if *last >= 0 && u.DTS-*last > 100*time.Millisecond {
			t.Fatalf("unit %d (%s): DTS jumps from %v to %v", i, u.Track.Codec, *last, u.DTS)
		}
		*last = u.DTS
		crossed = crossed || u.DTS >= wrap
	}
	if !crossed {
		t.Fatalf("no hub unit past the wrap; last video DTS %v", lastV)
	}

	waitFor(t, "player pictures past the wrap", 10*time.Second, func() bool {
		pics := p.pictures()
		return len(pics) > 0 && pics[len(pics)-1].dts < time.Second && pics[len(pics)-1].dts > 0
	})
	pics := p.pictures()
	const mod = 1 << 32
	for i := 1; i < len(pics); i++ {
		step := (int64(pics[i].dts/time.Millisecond) - int64(pics[i-1].dts/time.Millisecond) + mod) % mod
		if step != int64(frameDur/time.Millisecond) {
			t.Fatalf("player picture %d: dts %v after %v", i, pics[i].dts, pics[i-1].dts)
		}
	}
}

// ---- (f) unsupported codec ----

func TestUnsupportedCodecRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		track *gortmplib.Track
	}{
		{"LPCM", &gortmplib.Track{Codec: &codecs.LPCM{BitDepth: 16, SampleRate: 44100, ChannelCount: 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, rtmp.Config{}, nil)
			pub, err := startPublisher(t, e.url("live/bad"), source{audio: tc.track, duration: 4 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.stop()
			waitFor(t, "the refusal in the log", 5*time.Second, func() bool {
				return strings.Contains(e.logs.String(), "unsupported codec")
			})
			logs := e.logs.String()
			if !strings.Contains(logs, "H264, H265 and AV1") || !strings.Contains(logs, "AAC, Opus, MP3 and 8 kHz G.711") {
				t.Errorf("the refusal does not name the supported codecs:\n%s", logs)
			}
			if !strings.Contains(logs, "path=live/bad") {
				t.Errorf("the refusal does not name the path:\n%s", logs)
			}
			if e.hub.Stream("live/bad") != nil {
				t.Error("the hub has a stream for a refused publisher")
			}
			// The server closed the connection.
			pub.c.NetConn().SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.Copy(io.Discard, pub.c.NetConn()); err != nil && isTimeout(err) {
				t.Errorf("the connection of a refused publisher stays open: %v", err)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
