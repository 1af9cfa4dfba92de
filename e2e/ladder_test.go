//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/m3u8"
)

// The ladder tests are not parallel: their FFmpeg encoders take a core,
// and the timing-sensitive tests (SRT loss, the browser) must not starve.

// ladderConfig is extra YAML for a server with a two-rung ladder (240p and
// 160p under a 640x360 source) in the given mode. catchUp is off so that
// every reader gets the streams' own timestamps.
func ladderConfig(mode string) string {
	return `hls:
  idleTimeout: 2s
transcode:
  idleTimeout: 2s
  threads: 1
  ladder:
    - {name: 240p, height: 240, videoBitrate: 300k, audioBitrate: 64k}
    - {name: 160p, height: 160, videoBitrate: 150k, audioBitrate: 48k}
paths:
  default:
    transcode: ` + mode + `
    catchUp: 0s
`
}

// startLadderPublisher publishes a 640x360 test picture (1 s GOP) with
// sound to path.
func startLadderPublisher(t testing.TB, s *streamhub, path string) *proc {
	t.Helper()
	requireTool(t, "ffmpeg")
	args := encoderArgs()
	for i, a := range args {
		switch a {
		case "testsrc=size=320x240:rate=30":
			args[i] = "testsrc=size=640x360:rate=30"
		case "60":
			args[i] = "30"
		}
	}
	return startProc(t, "ffmpeg", append(args, "-f", "flv", s.rtmpURL(path))...)
}

// ffmpegChildren returns the PIDs of the FFmpeg processes whose parent is
// pid (zombies excluded).
func ffmpegChildren(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := procStat(child); ok && st.ppid == pid && st.comm == "ffmpeg" && st.state != "Z" {
			out = append(out, child)
		}
	}
	return out
}

type pstat struct {
	comm, state string
	ppid        int
}

// procStat reads /proc/PID/stat.
func procStat(pid int) (pstat, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return pstat{}, false
	}
	s := string(b)
	i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if i < 0 || j < i {
		return pstat{}, false
	}
	f := strings.Fields(s[j+1:])
	if len(f) < 2 {
		return pstat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return pstat{comm: s[i+1 : j], state: f[0], ppid: ppid}, true
}

// gone reports whether pid has exited (a zombie counts as gone).
func gone(pid int) bool {
	st, ok := procStat(pid)
	return !ok || st.state == "Z"
}

func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type probePacket struct {
	video bool
	pts   float64
	size  int
	key   bool
}

// probePackets reads url for seconds with ffprobe and returns its packets.
func probePackets(t testing.TB, url string, seconds int) []probePacket {
	t.Helper()
	out, errOut, code := run(t, time.Duration(seconds+15)*time.Second, "ffprobe", "-v", "error",
		"-read_intervals", "%+"+strconv.Itoa(seconds), "-show_entries", "packet=codec_type,pts_time,size,flags", "-of", "csv=p=0", url)
	if code != 0 {
		t.Fatalf("ffprobe %s: status %d: %s", url, code, tail(errOut, 10))
	}
	var pk []probePacket
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(l, ",")
		if len(f) < 4 {
			continue
		}
		pts, err1 := strconv.ParseFloat(f[1], 64)
		size, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			continue
		}
		pk = append(pk, probePacket{video: f[0] == "video", pts: pts, size: size, key: strings.HasPrefix(f[3], "K")})
	}
	return pk
}

// probeHeight returns the video height ffprobe sees at url.
func probeHeight(t testing.TB, url string) int {
	t.Helper()
	out, errOut, code := run(t, 20*time.Second, "ffprobe", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "stream=width,height,codec_name", "-of", "json", url)
	if code != 0 {
		t.Fatalf("ffprobe %s: status %d: %s", url, code, tail(errOut, 10))
	}
	var r struct {
		Streams []struct {
			Codec  string `json:"codec_name"`
			Width  int    `json:"width"`
			Height int    `json:"height"`
		} `json:"streams"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Streams) != 1 || r.Streams[0].Codec != "h264" {
		t.Fatalf("ffprobe %s: %v %s", url, err, out)
	}
	return r.Streams[0].Height
}

// keyTimes returns the keyframe times in milliseconds.
func keyTimes(pk []probePacket) []int64 {
	var out []int64
	for _, p := range pk {
		if p.video && p.key {
			out = append(out, int64(p.pts*1000+0.5))
		}
	}
	return out
}

// Publish 640x360: a ladder of 240p and 160p appears; ffprobe shows each
// rung's height and a bitrate near its setting, and the keyframes of every
// rung are at the source's keyframe times.
func TestLadderRungs(t *testing.T) {
	s := startServer(t, ladderConfig("always"))
	pub := startLadderPublisher(t, s, "live/abr")
	waitLive(t, s, "live/abr", pub)
	waitLiveURL(t, s.flvURL("live/abr/240p"), "live/abr/240p", pub)
	waitLiveURL(t, s.flvURL("live/abr/160p"), "live/abr/160p", pub)

	for path, h := range map[string]int{"live/abr": 360, "live/abr/240p": 240, "live/abr/160p": 160} {
		if got := probeHeight(t, s.flvURL(path)); got != h {
			t.Errorf("%s: height %d, want %d", path, got, h)
		}
	}
	// A rung is an ordinary stream: RTMP, RTSP and SRT play it too.
	for _, url := range []string{s.rtmpURL("live/abr/160p"), s.rtspURL("live/abr/160p"), s.srtURL("read:live/abr/160p")} {
		if got := probeHeight(t, url); got != 160 {
			t.Errorf("%s: height %d, want 160", url, got)
		}
	}
	paths := []string{"live/abr", "live/abr/240p", "live/abr/160p"}
	packets := make([][]probePacket, len(paths))
	done := make(chan int, len(paths))
	for i, p := range paths {
		go func() {
			defer func() { done <- i }()
			packets[i] = probePackets(t, s.flvURL(p), 6)
		}()
	}
	for range paths {
		<-done
	}
	src := keyTimes(packets[0])
	t.Logf("source keyframes (ms): %v", src)
	for i, p := range paths[1:] {
		k := keyTimes(packets[i+1])
		t.Logf("%s keyframes (ms): %v", p, k)
		if len(k) < 3 {
			t.Fatalf("%s: %d keyframes in 6 s of a 1 s GOP", p, len(k))
		}
		common := 0
		for _, ms := range k {
			if ms < src[0] || ms > src[len(src)-1] {
				continue
			}
			if !slices.Contains(src, ms) {
				t.Errorf("%s has a keyframe at %d ms where the source has none", p, ms)
			}
			common++
		}
		if common < 2 {
			t.Errorf("%s and the source share only %d keyframe times", p, common)
		}
	}
	// Bitrate: the video bytes over the time they span.
	rate := func(pk []probePacket) float64 {
		var bytes int
		first, last := -1.0, 0.0
		for _, p := range pk {
			if !p.video {
				continue
			}
			if first < 0 {
				first = p.pts
			}
			last = p.pts
			bytes += p.size
		}
		if last <= first {
			return 0
		}
		return float64(bytes*8) / (last - first)
	}
	r240, r160 := rate(packets[1]), rate(packets[2])
	t.Logf("video bitrate: 240p %.0f kbit/s (set 300k), 160p %.0f kbit/s (set 150k)", r240/1000, r160/1000)
	// Inside the VBV bound (maxrate 1.1x, a second of buffer on top over 6 s),
	// and an encoder that follows its setting: not far below it either.
	for _, c := range []struct {
		name string
		got  float64
		set  float64
	}{{"240p", r240, 300e3}, {"160p", r160, 150e3}} {
		if c.got > 1.1*c.set*1.4 || c.got < 0.4*c.set {
			t.Errorf("%s: %.0f kbit/s, set %.0f", c.name, c.got/1000, c.set/1000)
		}
	}
	// HLS: a rung's muxer started later numbers its segments like the
	// source's, so a player switching variants asks for numbers it has.
	for range 6 { // asked for every 0.5 s: the muxer never idles (hls.idleTimeout 2s)
		httpGetBody(t, s.hlsURL("live/abr", "stream.m3u8"))
		time.Sleep(500 * time.Millisecond)
	}
	srcSeq, rungSeq := completeSegments(httpGetBody(t, s.hlsURL("live/abr", "stream.m3u8"))), completeSegments(httpGetBody(t, s.hlsURL("live/abr/240p", "stream.m3u8")))
	if srcSeq < 3 || rungSeq < srcSeq-1 || rungSeq > srcSeq+1 {
		t.Errorf("HLS media sequence: source at segment %d, 240p (muxer started 3 s later) at %d; want them equal\n%s", srcSeq, rungSeq, httpGetBody(t, s.hlsURL("live/abr", "stream.m3u8")))
	}
	if len(ffmpegChildren(s.cmd.Process.Pid)) != 1 {
		t.Errorf("%d FFmpeg processes for one source, want one (decode once)", len(ffmpegChildren(s.cmd.Process.Pid)))
	}
}

// kill -9 of the worker: it comes back after a backoff and the rung goes
// on for its reader; the publisher stops: no FFmpeg within 6 s; kill -9 of
// streamhub: its FFmpeg dies with it.
func TestLadderProcesses(t *testing.T) {
	s := startServer(t, ladderConfig("always"))
	pub := startLadderPublisher(t, s, "live/abr")
	waitLive(t, s, "live/abr", pub)
	waitLiveURL(t, s.flvURL("live/abr/240p"), "live/abr/240p", pub)
	server := s.cmd.Process.Pid
	kids := ffmpegChildren(server)
	if len(kids) != 1 {
		t.Fatalf("%d FFmpeg children, want 1", len(kids))
	}
	if pgid, _ := syscall.Getpgid(kids[0]); pgid != kids[0] {
		t.Errorf("FFmpeg runs in process group %d, not its own (%d)", pgid, kids[0])
	}

	rung := openFLV(t, s.flvURL("live/abr/240p"))
	rung.waitTags(t, 10*time.Second, "a picture of the rung", func(tags []flvTag) bool { return countVideo(tags) > 0 })
	if err := syscall.Kill(kids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var next []int
	waitUntil(t, 15*time.Second, "a new FFmpeg after kill -9", func() bool {
		next = ffmpegChildren(server)
		return len(next) == 1 && next[0] != kids[0]
	})
	t.Logf("FFmpeg back %v after kill -9", time.Since(killed).Round(time.Millisecond))
	s.waitLog(t, 5*time.Second, "FFmpeg ended; restarting")
	// The same HTTP-FLV reader gets pictures of the new process.
	n := countVideo(mustSnapshot(rung))
	rung.waitTags(t, 15*time.Second, "pictures after the restart", func(tags []flvTag) bool { return countVideo(tags) > n+30 })

	// The publisher leaves: no FFmpeg within 6 s.
	pub.signal(syscall.SIGINT)
	if _, ok := pub.wait(5 * time.Second); !ok {
		t.Fatal("publisher did not stop")
	}
	left := time.Now()
	waitUntil(t, 6*time.Second, "no FFmpeg after the publisher left", func() bool {
		return len(ffmpegChildren(server)) == 0 && gone(next[0])
	})
	t.Logf("FFmpeg gone %v after the publisher left", time.Since(left).Round(time.Millisecond))

	// kill -9 of streamhub: the parent-death signal takes FFmpeg with it.
	startLadderPublisher(t, s, "live/abr")
	waitUntil(t, 15*time.Second, "FFmpeg for the new publisher", func() bool {
		kids = ffmpegChildren(server)
		return len(kids) == 1
	})
	s.stopped = true                      // no SIGTERM check at cleanup: it is killed
	syscall.Kill(server, syscall.SIGKILL) //nolint:errcheck
	s.wait(5 * time.Second)
	waitUntil(t, 3*time.Second, "FFmpeg gone after kill -9 of streamhub", func() bool { return gone(kids[0]) })
}

func mustSnapshot(r *flvReader) []flvTag {
	tags, _ := r.snapshot()
	return tags
}

// On demand: no FFmpeg runs until a rung is asked for; it stops after the
// idle period.
func TestLadderOnDemand(t *testing.T) {
	s := startServer(t, ladderConfig("onDemand"))
	pub := startLadderPublisher(t, s, "live/abr")
	waitLive(t, s, "live/abr", pub)
	server := s.cmd.Process.Pid
	time.Sleep(2 * time.Second)
	if k := ffmpegChildren(server); len(k) != 0 {
		t.Fatalf("FFmpeg %v runs with no one asking for a rung", k)
	}
	frame, hasCfg, took := firstFLVFrame(t, s.flvURL("live/abr/160p"))
	if !hasCfg || !frame.IsVideoKeyFrame() {
		t.Fatalf("the on-demand rung did not start with a sequence header and a keyframe")
	}
	t.Logf("first keyframe of an on-demand rung %v after the request", took.Round(time.Millisecond))
	if k := ffmpegChildren(server); len(k) != 1 {
		t.Fatalf("%d FFmpeg processes after the request, want 1", len(k))
	}
	// The reader has gone (firstFLVFrame closed it): the ladder stops after
	// transcode.idleTimeout (2 s).
	waitUntil(t, 10*time.Second, "the idle ladder stops", func() bool { return len(ffmpegChildren(server)) == 0 })
	s.waitLog(t, time.Second, "no one read a rung")
}

// hls.js plays the multivariant playlist of a ladder and keeps playing
// while the level is switched by hand (hls.currentLevel) through every rung.
func TestLadderHLSBrowser(t *testing.T) {
	browserDir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	requireBrowser(t, browserDir)
	s := startServer(t, ladderConfig("onDemand"))
	pub := startLadderPublisher(t, s, "live/abr")
	waitLive(t, s, "live/abr", pub)

	body := httpGetBody(t, s.hlsURL("live/abr", "index.m3u8"))
	for _, want := range []string{"stream.m3u8", "240p/stream.m3u8", "160p/stream.m3u8", "RESOLUTION=426x240", "RESOLUTION=284x160",
		"BANDWIDTH=394000,AVERAGE-BANDWIDTH=364000", "FRAME-RATE=30.000", `CODECS="avc1.`} {
		if !strings.Contains(body, want) {
			t.Errorf("multivariant playlist lacks %q:\n%s", want, body)
		}
	}
	media := httpGetBody(t, s.hlsURL("live/abr/240p", "stream.m3u8"))
	if !strings.Contains(media, `#EXT-X-RENDITION-REPORT:URI="../stream.m3u8"`) {
		t.Errorf("the 240p media playlist has no rendition report of the source:\n%s", media)
	}

	node := startProc(t, "node", filepath.Join(browserDir, "hls.mjs"), s.hlsURL("live/abr", "index.m3u8"),
		"--play", "17", "--switch", "4", "--timeout", "50")
	code, ok := node.wait(60 * time.Second)
	if !ok {
		syscall.Kill(-node.cmd.Process.Pid, syscall.SIGTERM) //nolint:errcheck
		node.wait(10 * time.Second)
	}
	out := strings.TrimSpace(node.stdout.String())
	last := out[strings.LastIndexByte(out, '\n')+1:]
	var res struct {
		OK      bool `json:"ok"`
		Samples []struct {
			Frames int     `json:"frames"`
			CT     float64 `json:"ct"`
			Level  int     `json:"level"`
			H      int     `json:"h"`
		} `json:"samples"`
		Levels   []struct{ Height int } `json:"levels"`
		Switched []struct{ Height int } `json:"switched"`
		Errors   []string               `json:"errors"`
	}
	if err := json.Unmarshal([]byte(last), &res); err != nil {
		t.Fatalf("hls.mjs (status %d): %v\n%s\nstderr:\n%s", code, err, tail(out, 10), tail(node.stderr.String(), 20))
	}
	if !res.OK || code != 0 || len(res.Errors) > 0 {
		t.Fatalf("hls.js did not play: status %d, errors %v\n%s", code, res.Errors, tail(out, 5))
	}
	if len(res.Levels) != 3 {
		t.Fatalf("hls.js sees %d levels, want 3 (source, 240p, 160p): %+v", len(res.Levels), res.Levels)
	}
	heights := map[int]bool{}
	for _, sw := range res.Switched {
		heights[sw.Height] = true
	}
	decoded := map[int]bool{}
	for _, s := range res.Samples {
		decoded[s.H] = true
	}
	t.Logf("levels %+v; switched through %v; decoded heights %v", res.Levels, res.Switched, decoded)
	if len(heights) < 2 {
		t.Errorf("hls.js reported switches to %d different levels, want at least 2", len(heights))
	}
	// What counts: the video element showed pictures of every variant.
	if !decoded[360] || !decoded[240] || !decoded[160] {
		t.Errorf("the video element decoded pictures of heights %v, want 360, 240 and 160", decoded)
	}
	// It kept playing: frames and time advance in every 3 s window.
	for i := 12; i < len(res.Samples); i += 12 {
		a, b := res.Samples[i-12], res.Samples[i]
		if b.Frames <= a.Frames || b.CT <= a.CT {
			t.Errorf("playback stalled between samples %d and %d: frames %d→%d, time %.2f→%.2f", i-12, i, a.Frames, b.Frames, a.CT, b.CT)
		}
	}
}

// httpGetBody GETs url and returns the body of a 200 answer.
func httpGetBody(t testing.TB, url string) string {
	t.Helper()
	code, b := httpGet(t, url)
	if code != 200 {
		t.Fatalf("GET %s: status %d: %s", url, code, b)
	}
	return string(b)
}

// completeSegments returns the media sequence number after the last
// complete segment of a media playlist (0 if it cannot be read).
func completeSegments(pl string) int {
	m, err := m3u8.ParseMedia([]byte(pl))
	if err != nil {
		return 0
	}
	return int(m.End())
}
