package rtmp_test

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/rtmp"
	"github.com/streamhub/streamhub/transcode"
)

// Real SPSs of three picture sizes (1920x1080, 320x240, 160x120).
var (
	sps240 = []byte{0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0xa4, 0x80}
	sps120 = []byte{0x67, 0x42, 0xc0, 0x0b, 0xd9, 0x02, 0x84, 0x7e, 0x5c, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0c, 0x83, 0xc5, 0x0a, 0x92}
	ppsX   = []byte{0x68, 0xcb, 0x83, 0xcb, 0x20}
)

// mtTrack is one video track of a multitrack publisher: what it does
// wrong, if anything.
type mtTrack struct {
	lib      *gortmplib.Track
	stopAt   int           // stop sending from this frame on (0: never)
	endAt    int           // send a sequence end at this frame (0: never)
	offsetAt int           // from this frame on, timestamps are off by offset
	offset   time.Duration //
}

// mtPublisher sends tracks (the first is the source) and AAC as fast as
// possible, frames at frameDur, a keyframe every gopLen in every track;
// garbage, if set, is called at each frame to send something more.
type mtPublisher struct {
	c      *gortmplib.Client
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
	frames int
}

func startMultitrack(t *testing.T, pu *url.URL, tracks []mtTrack, speed float64, garbage func(c *gortmplib.Client, i int, dts time.Duration)) *mtPublisher {
	t.Helper()
	c := &gortmplib.Client{URL: pu, Publish: true}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Initialize(ctx); err != nil {
		t.Fatal(err)
	}
	audio := &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: aacConf}}
	var libs []*gortmplib.Track
	for _, tr := range tracks {
		libs = append(libs, tr.lib)
	}
	w := &gortmplib.Writer{Conn: c, Tracks: append(libs, audio)}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	p := &mtPublisher{c: c, cancel: pcancel, done: make(chan struct{})}
	t.Cleanup(p.stop)
	go func() {
		defer close(p.done)
		start := time.Now()
		for i := 0; pctx.Err() == nil; i++ {
			dts := time.Duration(i) * frameDur
			if speed > 0 {
				if d := time.Duration(float64(dts)/speed) - time.Since(start); d > 0 {
					select {
					case <-time.After(d):
					case <-pctx.Done():
						return
					}
				}
			}
			var err error
			for _, tr := range tracks {
				switch {
				case tr.stopAt > 0 && i >= tr.stopAt:
					continue
				case tr.endAt > 0 && i == tr.endAt:
					err = c.Write(&message.VideoExMultitrack{TrackID: uint8(indexOf(libs, tr.lib)),
						Wrapped: &message.VideoExSequenceEnd{ChunkStreamID: message.VideoChunkStreamID, MessageStreamID: 0x1000000, FourCC: message.FourCCAVC}})
					continue
				case tr.endAt > 0 && i > tr.endAt:
					continue
				}
				d := dts
				if tr.offsetAt > 0 && i >= tr.offsetAt {
					d += tr.offset
				}
				if e := w.WriteH264(tr.lib, d, d, videoAU(tr.lib.Codec, i, 500)); e != nil && err == nil {
					err = e
				}
			}
			for a := range 2 { // 20 ms audio frames
				if e := w.WriteMPEG4Audio(audio, dts+time.Duration(a)*frameDur/2, []byte{0x21, 0x10, byte(i), 0x05, 0x00}); e != nil && err == nil {
					err = e
				}
			}
			if garbage != nil {
				garbage(c, i, dts)
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
	return p
}

func indexOf(l []*gortmplib.Track, t *gortmplib.Track) int {
	for i, x := range l {
		if x == t {
			return i
		}
	}
	return -1
}

func (p *mtPublisher) stop() {
	p.cancel()
	p.c.Close()
	<-p.done
}

func (p *mtPublisher) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func h264Track(sps []byte) *gortmplib.Track {
	return &gortmplib.Track{Codec: &codecs.H264{SPS: sps, PPS: ppsX}}
}

func publishing(e *env, path string) bool {
	s := e.hub.Stream(path)
	return s != nil && s.Publishing()
}

// An Enhanced RTMP multitrack publisher (three H264 renditions and AAC, as
// OBS 30.2+ sends them) becomes the source and two derived rungs named by
// height, each with its own picture size and a copy of the audio, their
// keyframes at the source's timestamps; the renditions listed for the path
// are the publisher's (no ladder runs here).
func TestMultitrackRungs(t *testing.T) {
	e := newEnv(t, rtmp.Config{}, nil)
	tracks := []mtTrack{{lib: h264Track(testfixtures.H264SPS2)}, {lib: h264Track(sps240)}, {lib: h264Track(sps120)}}
	p := startMultitrack(t, e.url("live/mt"), tracks, 4, nil)
	testfixtures.WaitPublished(t, e.hub, "live/mt")
	for _, path := range []string{"live/mt/240p", "live/mt/120p"} {
		waitFor(t, path+" published", 5*time.Second, func() bool { return publishing(e, path) })
		s := e.hub.Stream(path)
		if !s.Derived() {
			t.Errorf("%s is not a derived stream", path)
		}
	}
	src := e.hub.Stream("live/mt").Tracks()
	if len(src) != 2 || src[0].Height != 1080 || src[1].Codec != media.CodecAAC {
		t.Fatalf("source tracks: %v", src)
	}
	for path, h := range map[string]int{"live/mt/240p": 240, "live/mt/120p": 120} {
		tr := e.hub.Stream(path).Tracks()
		if len(tr) != 2 || tr[0].Height != h || tr[0].Codec != media.CodecH264 || tr[1].Codec != media.CodecAAC {
			t.Errorf("%s tracks: %v, want H264 %dp and AAC", path, tr, h)
		}
	}
	keys := func(path string) []time.Duration {
		var out []time.Duration
		for _, u := range hubUnits(t, e, path, 140) {
			if u.Track.IsVideo() && u.KeyFrame {
				out = append(out, u.DTS)
			}
		}
		return out
	}
	// Keyframe alignment, as for the FFmpeg ladder: the rungs' keyframes
	// fall on the source's (same DTS), and each reader joins at one.
	srcKeys := keys("live/mt")
	for _, path := range []string{"live/mt/240p", "live/mt/120p"} {
		rk := keys(path)
		if len(rk) < 2 {
			t.Fatalf("%s: keyframes %v", path, rk)
		}
		for _, k := range rk {
			if k%(gopLen*frameDur) != srcKeys[0]%(gopLen*frameDur) {
				t.Errorf("%s keyframe at %s is not on the source's GOP grid (source keyframes %v)", path, k, srcKeys)
			}
		}
	}
	rends := transcode.PublisherRungs(e.hub, "live/mt")
	if len(rends) != 2 || rends[0].Name != "240p" || rends[0].Height != 240 || rends[1].Name != "120p" || rends[0].Bandwidth <= 0 {
		t.Errorf("publisher rungs: %+v", rends)
	}
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	// The publisher leaves: its rungs end with it.
	p.stop()
	waitFor(t, "the rungs unpublished", 5*time.Second, func() bool {
		return !publishing(e, "live/mt/240p") && !publishing(e, "live/mt/120p")
	})
}

// What a multitrack publisher does wrong ends one rung, never the
// connection, the source or the other rungs, and is logged once: a track
// that stops, a track that ends (sequence end), a track whose timestamps
// leave the source's, and messages of track ids never announced (in the
// probe and after it).
func TestMultitrackBadInput(t *testing.T) {
	e := newEnv(t, rtmp.Config{}, nil)
	tracks := []mtTrack{
		{lib: h264Track(testfixtures.H264SPS2)},
		{lib: h264Track(sps240), stopAt: 150},                             // drops out after 6 s
		{lib: h264Track(sps120), offsetAt: 100, offset: 10 * time.Second}, // jumps 10 s ahead at 4 s
		{lib: h264Track(testfixtures.H264SPS), endAt: 125},                // ends at 5 s
	}
	garbage := func(c *gortmplib.Client, i int, dts time.Duration) {
		// A track never announced, now and then (from the first frame:
		// inside the probe too), and an audio one.
		if i%10 == 3 {
			c.Write(&message.VideoExMultitrack{TrackID: uint8(7 + i%200), Wrapped: &message.VideoExCodedFrames{ //nolint:errcheck // garbage
				ChunkStreamID: message.VideoChunkStreamID, MessageStreamID: 0x1000000, FourCC: message.FourCCAVC, DTS: dts,
				Payload: []byte{0, 0, 0, 2, 0x65, 0x88}}})
			c.Write(&message.AudioExMultitrack{TrackID: 9, Wrapped: &message.AudioExCodedFrames{ //nolint:errcheck // garbage
				ChunkStreamID: message.AudioChunkStreamID, MessageStreamID: 0x1000000, FourCC: message.FourCCOpus, DTS: dts,
				Payload: []byte{0xfc}}})
		}
	}
	p := startMultitrack(t, e.url("live/bad"), tracks, 4, garbage)
	testfixtures.WaitPublished(t, e.hub, "live/bad")
	waitFor(t, "every rung ended", 15*time.Second, func() bool {
		return strings.Count(e.logs.String(), "multitrack: rendition ended") >= 3
	})
	for _, path := range []string{"live/bad/240p", "live/bad/120p"} {
		waitFor(t, path+" unpublished", 5*time.Second, func() bool { return !publishing(e, path) })
	}
	logs := e.logs.String()
	for _, want := range []string{"the publisher dropped it", "the publisher's tracks disagree", "sequence end", "ignoring a track"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no log line saying %q", want)
		}
	}
	if n := strings.Count(logs, "ignoring a track"); n > 4 {
		t.Errorf("%d lines about ignored tracks, want at most 4 (one per id, bounded)", n)
	}
	// The source goes on.
	if !publishing(e, "live/bad") || p.Err() != nil {
		t.Fatalf("the source ended: %v", p.Err())
	}
	before := e.hub.Stream("live/bad").Stats().UnitsIn
	waitFor(t, "the source going on", 5*time.Second, func() bool { return e.hub.Stream("live/bad").Stats().UnitsIn > before+20 })
	if strings.Contains(logs, "panic") {
		t.Error("a panic in the log")
	}
}

// With every rung gone wrong but one, the healthy rung goes on while the
// others end.
func TestMultitrackOneTrackDropsOthersGoOn(t *testing.T) {
	e := newEnv(t, rtmp.Config{}, nil)
	tracks := []mtTrack{{lib: h264Track(testfixtures.H264SPS2)}, {lib: h264Track(sps240)}, {lib: h264Track(sps120), stopAt: 120}}
	startMultitrack(t, e.url("live/drop"), tracks, 4, nil)
	waitFor(t, "120p published", 5*time.Second, func() bool { return publishing(e, "live/drop/120p") })
	waitFor(t, "120p ended", 10*time.Second, func() bool { return !publishing(e, "live/drop/120p") })
	// The hub logs the stream's end before the session logs why: wait
	// for the session's line rather than race it.
	waitFor(t, "the dropped track's end logged clearly", 5*time.Second, func() bool {
		logs := e.logs.String()
		return strings.Contains(logs, "path=live/drop/120p") && strings.Contains(logs, "the publisher dropped it")
	})
	s := e.hub.Stream("live/drop/240p")
	before := s.Stats().UnitsIn
	waitFor(t, "240p going on", 5*time.Second, func() bool { return publishing(e, "live/drop/240p") && s.Stats().UnitsIn > before+20 })
}
