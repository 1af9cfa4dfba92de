//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// rendition is one H264 track encoded by ffmpeg: its access units (Annex
// B split at the access unit delimiters) and parameter sets.
type rendition struct {
	sps, pps []byte
	aus      [][][]byte
}

// encodeRendition encodes seconds of a test picture at size into raw H264
// with a keyframe every 30 frames (1 s at 30 fps) and no B-frames: every
// rendition has its keyframes on the same frames, as OBS's multitrack
// encoders do.
func encodeRendition(t *testing.T, size string, seconds int) rendition {
	t.Helper()
	file := filepath.Join(t.TempDir(), size+".h264")
	_, errOut, code := run(t, 60*time.Second, "ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
		"-f", "lavfi", "-i", "testsrc=size="+size+":rate=30", "-t", strconv.Itoa(seconds),
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-threads", "1", "-bf", "0",
		"-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
		"-x264-params", "aud=1", "-f", "h264", file)
	if code != 0 {
		t.Fatalf("ffmpeg encoding %s: %s", size, errOut)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	nalus := splitAnnexB(raw)
	var r rendition
	var au [][]byte
	for _, n := range nalus {
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeAccessUnitDelimiter:
			if len(au) > 0 {
				r.aus = append(r.aus, au)
			}
			au = nil
			continue
		case h264.NALUTypeSPS:
			r.sps = bytes.Clone(n)
		case h264.NALUTypePPS:
			r.pps = bytes.Clone(n)
		}
		au = append(au, n)
	}
	if len(au) > 0 {
		r.aus = append(r.aus, au)
	}
	if r.sps == nil || len(r.aus) != seconds*30 {
		t.Fatalf("%s: %d access units, SPS %x", size, len(r.aus), r.sps)
	}
	return r
}

// splitAnnexB splits an H264 byte stream at its start codes (mediacommon's
// parser stops at 50 NALUs).
func splitAnnexB(b []byte) [][]byte {
	var out [][]byte
	for _, p := range bytes.Split(b, []byte{0, 0, 1}) {
		p = bytes.TrimRight(p, "\x00") // a 4-byte start code's leading zero; no NALU ends in a zero byte
		if len(p) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// publishMultitrack sends renditions as the video tracks of one Enhanced
// RTMP multitrack connection (track 0 the first), in real time, looping,
// until ctx ends. gortmplib's client sends track 0 as plain FLV video and
// the others as multitrack messages with their track id, as OBS 30.2+.
func publishMultitrack(ctx context.Context, t *testing.T, rawURL string, rs []rendition) <-chan error {
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		c := &gortmplib.Client{URL: u, Publish: true}
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.Initialize(ictx); err != nil {
			done <- err
			return
		}
		defer c.Close()
		var tracks []*gortmplib.Track
		for _, r := range rs {
			tracks = append(tracks, &gortmplib.Track{Codec: &codecs.H264{SPS: r.sps, PPS: r.pps}})
		}
		w := &gortmplib.Writer{Conn: c, Tracks: tracks}
		if err := w.Initialize(); err != nil {
			done <- err
			return
		}
		start := time.Now()
		n := len(rs[0].aus)
		for i := 0; ctx.Err() == nil; i++ {
			dts := time.Duration(i) * time.Second / 30
			if d := dts - time.Since(start); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
			for k, r := range rs {
				if err := w.WriteH264(tracks[k], dts, dts, r.aus[i%n]); err != nil {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	return done
}

// TestMultitrackFreeLadder: a publisher sending two renditions (320x240
// and 160x120, encoded by ffmpeg, sent by the gortmplib client as OBS
// 30.2+ does: ffmpeg 5.1 cannot) gets the source live/mt and the rung
// live/mt/120p, no transcoding; the path's FFmpeg ladder (120p and 90p)
// runs only the rung the publisher does not send (precedence). Each rung
// plays with ffprobe over HTTP-FLV (and 120p over RTMP, RTSP and SRT), its
// keyframes fall on the source's, and the multivariant playlist lists
// both.
func TestMultitrackFreeLadder(t *testing.T) {
	requireTool(t, "ffmpeg")
	requireTool(t, "ffprobe")
	rs := []rendition{encodeRendition(t, "320x240", 4), encodeRendition(t, "160x120", 4)}
	s := startServer(t, `hls:
  idleTimeout: 2s
transcode:
  idleTimeout: 2s
  threads: 1
  ladder:
    - {name: 120p, height: 120, videoBitrate: 150k, audioBitrate: 48k}
    - {name: 90p, height: 90, videoBitrate: 100k, audioBitrate: 32k}
paths:
  default:
    transcode: always
    catchUp: 0s
`)
	ctx, cancel := context.WithCancel(context.Background())
	done := publishMultitrack(ctx, t, s.rtmpURL("live/mt"), rs)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("multitrack publisher: %v", err)
		}
	})
	for _, p := range []string{"live/mt", "live/mt/120p", "live/mt/90p"} {
		waitLiveURL(t, s.flvURL(p), p, nil)
	}
	for path, h := range map[string]int{"live/mt": 240, "live/mt/120p": 120, "live/mt/90p": 90} {
		if got := probeHeight(t, s.flvURL(path)); got != h {
			t.Errorf("%s: height %d, want %d", path, got, h)
		}
	}
	// The publisher's rung is an ordinary stream on every protocol.
	for _, u := range []string{s.rtmpURL("live/mt/120p"), s.rtspURL("live/mt/120p"), s.srtURL("read:live/mt/120p")} {
		if got := probeHeight(t, u); got != 120 {
			t.Errorf("%s: height %d, want 120", u, got)
		}
	}
	// The 120p is the publisher's, not FFmpeg's (it wins its height).
	if n := s.countLog(`path=live/mt/120p`, "protocol=rtmp"); n == 0 {
		t.Errorf("live/mt/120p was not published by the RTMP publisher:\n%s", tail(s.stderr.String(), 30))
	}
	if n := s.countLog(`path=live/mt/120p`, "protocol=transcode"); n != 0 {
		t.Errorf("the ladder published live/mt/120p too")
	}
	if n := s.countLog("rung not published"); n != 0 {
		t.Errorf("the ladder tried the publisher's rung: %d lines", n)
	}

	// Keyframe alignment, as for the FFmpeg ladder.
	paths := []string{"live/mt", "live/mt/120p"}
	packets := make([][]probePacket, len(paths))
	ch := make(chan int, len(paths))
	for i, p := range paths {
		go func() {
			defer func() { ch <- i }()
			packets[i] = probePackets(t, s.flvURL(p), 4)
		}()
	}
	for range paths {
		<-ch
	}
	src, rung := keyTimes(packets[0]), keyTimes(packets[1])
	t.Logf("source keyframes (ms): %v; 120p: %v", src, rung)
	if len(rung) < 3 || len(src) < 3 {
		t.Fatalf("keyframes: source %v, 120p %v (4 s of a 1 s GOP)", src, rung)
	}
	common := 0
	for _, ms := range rung {
		if ms < src[0] || ms > src[len(src)-1] {
			continue
		}
		if !slices.Contains(src, ms) {
			t.Errorf("120p has a keyframe at %d ms where the source has none", ms)
		}
		common++
	}
	if common < 2 {
		t.Errorf("120p and the source share only %d keyframe times", common)
	}

	// The multivariant playlist lists the source, the publisher's 120p and
	// the ladder's 90p.
	var mv string
	deadline := time.Now().Add(20 * time.Second)
	for {
		mv = httpGetBody(t, "http://"+s.httpAddr+"/live/mt/index.m3u8")
		if strings.Contains(mv, "120p/stream.m3u8") && strings.Contains(mv, "90p/stream.m3u8") || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, want := range []string{"stream.m3u8", "120p/stream.m3u8", "RESOLUTION=160x120", "90p/stream.m3u8"} {
		if !strings.Contains(mv, want) {
			t.Errorf("multivariant playlist without %q:\n%s", want, mv)
		}
	}
	if pl := httpGetBody(t, "http://"+s.httpAddr+"/live/mt/120p/stream.m3u8"); !strings.Contains(pl, "#EXTINF") {
		t.Errorf("120p media playlist: %s", pl)
	}
}
