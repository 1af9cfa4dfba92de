// Command latency measures glass-to-glass latency of HTTP-FLV played by
// mpegts.js, or of low-latency HLS played by hls.js, in headless Chromium.
//
//	go run ./bench/latency                       # builds and starts streamhub itself
//	go run ./bench/latency -rtmp rtmp://127.0.0.1:1935/live/latency \
//	    -http http://127.0.0.1:8080/live/latency.flv   # a running server
//	go run ./bench/latency -direct               # baseline without streamhub
//	go run ./bench/latency -hls                  # LL-HLS (index.m3u8) in hls.js
//	go run ./bench/latency -webrtc               # WHEP in a bare RTCPeerConnection
//	go run ./bench/latency -webrtc -rtmp rtmp://127.0.0.1:1935/live/latency \
//	    -http http://127.0.0.1:8080/live/latency/whep  # WHEP of a running server
//
// It generates raw yuv420p 320x240 frames at 30 fps in real time and paints
// the wall-clock milliseconds of each frame into it as 48 black/white blocks
// (two rows of 24 blocks of 12x16 px in the luma plane: 42 bits of
// time.Now().UnixMilli() and a 6-bit popcount check), next to a black and a
// white reference block for the threshold. The frames (and, with -audio, a
// silent PCM track in lockstep) go through ffmpeg (libx264 ultrafast,
// zerolatency, 1 s GOP; AAC) to streamhub over RTMP. bench/latency/measure.mjs
// plays the HTTP-FLV URL with mpegts.js (enableStashBuffer: false,
// liveBufferLatencyChasing: true, plus -player overrides) in Chromium; on
// every presented video frame (requestVideoFrameCallback) it draws the frame
// to a canvas, decodes the painted milliseconds and records Date.now() minus
// them. After -warmup it measures for -duration and reports the median, p95
// and the number of stalls (video "waiting" events), as text and as one JSON
// line on stdout (and in the -json file).
//
// -hls plays http://HOST/live/latency/index.m3u8 with hls.js instead
// (lowLatencyMode: true, otherwise its defaults, plus -player overrides;
// -part sets hls.partTarget of the started server, -holdback its
// hls.partHoldBack in part targets). The same frames, the
// same decoding and the same stall count; the report adds hls.js's
// non-fatal errors by detail (fatal ones are errors) and its own latency
// estimate. With -rtmp, -http is then the index.m3u8 URL. -playlist plays
// another playlist of the stream (stream.m3u8: the source's media playlist;
// 180p/stream.m3u8: a rung's). -ladder gives the started server a ladder of
// two rungs below the 240p source (180p and 120p, on demand), so that
// index.m3u8 lists three variants. Each run also reports its first
// presented frame after its first HLS request (hls.js MANIFEST_LOADING);
// -first makes every run the stream's first HLS viewer (the started server
// stops a muxer and an on-demand ladder 1 s after their last request, the
// stream is awaited over HTTP-FLV, and each run waits for both to stop).
// It also reports, per run, the first frame after hls.js's first media
// playlist (where hls.js picks its start position for good: its default
// config never plays faster to catch up) and hls.js's own latency estimate
// at that frame. With LATENCY_CONSOLE=1 in the environment the page's
// console goes to stderr (shown with -v), e.g. hls.js's log with
// -player '{"debug":true}'.
//
// -webrtc plays the stream over WHEP (POST /PATH/whep) in a bare
// RTCPeerConnection (recvonly video and audio, candidates gathered before
// the POST, no trickle), the stream as srcObject of the same <video>. The
// same frames and decoding; the report adds, per run, the first presented
// frame after the POST (requestVideoFrameCallback), ICE+DTLS connected
// after the POST, and from getStats the audio samples received (the AAC
// source is heard only through the server's Opus audio job), the jitter
// buffer's mean delay, NACKs sent and packets lost. The started server
// gets a free ICE UDP port on every address (Chromium's host candidates
// are mDNS names the server does not resolve; it answers the checks
// peer-reflexively). -settle waits before the first run so that the server
// has a whole GOP cached, and each run's POST is a new viewer. With -rtmp,
// -http is the WHEP URL; the POST is retried while it is not 201 (the
// stream not there yet), for up to 20 s.
//
// -whip (implies -webrtc) publishes from the browser instead of ffmpeg: the
// same page paints the clock into a 320x240 canvas every 33 ms (the same
// layout, black 0 and white 255 in RGB), sends canvas.captureStream(30)
// (H.264 preferred) and an Opus tone over WHIP (POST /PATH/whip), and plays
// the stream back over WHEP in a second RTCPeerConnection: browser WHIP to
// WHEP glass-to-glass. Each run publishes anew. With a running server give
// only -http, the WHEP URL; the WHIP URL is the same ending in /whip.
//
// -prewarm (with -webrtc) first connects two local RTCPeerConnections in
// the page and closes them, so that a fresh browser's one-time costs of its
// first connection stay out of the first-frame figure. With -hls it starts
// the page's audio output (an AudioContext) before hls.js loads anything:
// headless Chromium here takes ~0.3 s to open its audio device, and with
// an audio track the video element's first seek waits for it (seeking to
// seeked: ~0.3 s cold, ~0.02 s warm; docs/benchmarks.md).
//
// -direct is the no-server baseline: ffmpeg writes FLV to its stdout and this
// program serves that byte stream itself as HTTP-FLV (chunked, with CORS) to
// the player; everything else is the same, so the difference to the normal
// run is what streamhub (RTMP ingest, hub, HTTP-FLV egress, GOP join) adds.
//
// It needs ffmpeg, /usr/bin/chromium (or $CHROMIUM), node and the npm
// packages of e2e/browser (scripts/test.sh runs npm ci there): mpegts.js,
// and hls.js for -hls (only playwright-core for -webrtc).
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	width     = 320
	height    = 240
	fps       = 30
	sampleHz  = 44100
	msBits    = 42 // time.Now().UnixMilli() fits in 42 bits until 2109
	checkBits = 6  // popcount of the 42 ms bits (0..42)
	nBits     = msBits + checkBits

	lumaBlack = 16
	lumaWhite = 235
	lumaBg    = 128
)

// Layout says where the bits and the reference blocks are. It is passed to
// measure.mjs as JSON, so the decoder never disagrees with the painter.
type Layout struct {
	Width    int  `json:"width"`
	Height   int  `json:"height"`
	Bits     int  `json:"bits"`
	MsBits   int  `json:"msBits"`
	Cols     int  `json:"cols"`
	X0       int  `json:"x0"`
	Y0       int  `json:"y0"`
	BlockW   int  `json:"blockW"`
	BlockH   int  `json:"blockH"`
	RowPitch int  `json:"rowPitch"`
	Black    Rect `json:"black"`
	White    Rect `json:"white"`
	MarginX  int  `json:"marginX"` // pixels left out at each side of a block when sampling
	MarginY  int  `json:"marginY"`
}

// Rect is a rectangle in pixels.
type Rect struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

var layout = Layout{
	Width: width, Height: height, Bits: nBits, MsBits: msBits,
	Cols: 24, X0: 16, Y0: 40, BlockW: 12, BlockH: 16, RowPitch: 32,
	Black:   Rect{X: 16, Y: 104, W: 48, H: 16},
	White:   Rect{X: 256, Y: 104, W: 48, H: 16},
	MarginX: 3, MarginY: 4,
}

func (l Layout) block(i int) Rect {
	return Rect{X: l.X0 + (i%l.Cols)*l.BlockW, Y: l.Y0 + (i/l.Cols)*l.RowPitch, W: l.BlockW, H: l.BlockH}
}

// encode returns the 48-bit word painted for ms.
func encode(ms int64) uint64 {
	v := uint64(ms) & (1<<msBits - 1)
	return v | uint64(bits.OnesCount64(v))<<msBits
}

// painter fills one yuv420p frame.
type painter struct {
	frame []byte // Y, then U, then V
	n     int
}

func newPainter() *painter {
	f := make([]byte, width*height*3/2)
	for i := width * height; i < len(f); i++ {
		f[i] = 128 // neutral chroma
	}
	return &painter{frame: f}
}

func (p *painter) fill(r Rect, v byte) {
	for y := r.Y; y < r.Y+r.H; y++ {
		row := p.frame[y*width : (y+1)*width]
		for x := r.X; x < r.X+r.W; x++ {
			row[x] = v
		}
	}
}

// paint draws ms into the frame, plus a moving square so that the encoder
// sees motion like in a real picture.
func (p *painter) paint(ms int64) []byte {
	y := p.frame[:width*height]
	for i := range y {
		y[i] = lumaBg
	}
	w := encode(ms)
	for i := range nBits {
		v := byte(lumaBlack)
		if w>>i&1 == 1 {
			v = lumaWhite
		}
		p.fill(layout.block(i), v)
	}
	p.fill(layout.Black, lumaBlack)
	p.fill(layout.White, lumaWhite)
	p.fill(Rect{X: (p.n * 4) % (width - 16), Y: 180, W: 16, H: 16}, lumaWhite)
	p.n++
	return p.frame
}

type options struct {
	rtmpURL, httpURL string
	bin              string
	root             string
	direct           bool
	hls              bool
	webrtc           bool
	whip             bool
	prewarm          bool
	settle           time.Duration
	partTarget       string
	partHoldBack     float64
	playlist         string
	ladder           bool
	first            bool
	audio            bool
	duration, warmup time.Duration
	player           string
	join             string
	catchUp          string
	jsonFile         string
	verbose          bool
	runs             int
	waitURL          string // -webrtc with the started server: HEAD this until 200
}

func main() {
	var o options
	flag.StringVar(&o.rtmpURL, "rtmp", "", "publish to this RTMP URL of a running server (with -http); default: start streamhub")
	flag.StringVar(&o.httpURL, "http", "", "HTTP-FLV URL (with -hls: index.m3u8 URL) of the -rtmp stream on the running server")
	flag.StringVar(&o.bin, "bin", "", "streamhub binary to start (default: go build from the checkout)")
	flag.StringVar(&o.root, "root", "", "repository root (default: found from the working directory)")
	flag.BoolVar(&o.direct, "direct", false, "baseline without streamhub: ffmpeg's FLV output served by this program")
	flag.BoolVar(&o.hls, "hls", false, "play LL-HLS (/PATH/index.m3u8) with hls.js, lowLatencyMode on, instead of HTTP-FLV with mpegts.js")
	flag.BoolVar(&o.webrtc, "webrtc", false, "play over WHEP (/PATH/whep) in a bare RTCPeerConnection instead of HTTP-FLV with mpegts.js")
	flag.BoolVar(&o.whip, "whip", false, "publish from Chromium over WHIP (a canvas with the painted clock) instead of ffmpeg over RTMP; implies -webrtc")
	flag.BoolVar(&o.prewarm, "prewarm", false, "with -webrtc: connect two local RTCPeerConnections in the page before the WHEP POST (a browser's first-connection costs out of the first-frame figure); with -hls: start the page's audio output before hls.js loads (the browser's audio device start out of the figures)")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "with -webrtc: wait this long after the stream is up before the first run")
	flag.StringVar(&o.partTarget, "part", "", "hls.partTarget for the started server, e.g. 100ms (default: the server's default)")
	flag.Float64Var(&o.partHoldBack, "holdback", 0, "hls.partHoldBack for the started server, in part targets, e.g. 2 (default: the server's default)")
	flag.StringVar(&o.playlist, "playlist", "index.m3u8", "with -hls and the started server: the playlist to play, relative to /live/latency/ (stream.m3u8: the source's media playlist; 180p/stream.m3u8: a rung's)")
	flag.BoolVar(&o.ladder, "ladder", false, "with -hls and the started server: an on-demand ladder of two rungs (180p, 120p) below the 240p source")
	flag.BoolVar(&o.first, "first", false, "with -hls and the started server: every run is the stream's first HLS viewer (muxers and the ladder stop 1 s after their last request; each run waits for that)")
	flag.BoolVar(&o.audio, "audio", true, "add a silent AAC track (PCM fed in lockstep with the video)")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "measurement time of each run")
	flag.IntVar(&o.runs, "runs", 1, "player sessions, one after the other on the same stream; the report pools their samples")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "time between playback start and measurement")
	flag.StringVar(&o.player, "player", "", `extra mpegts.js (or hls.js) config as JSON, e.g. '{"liveBufferLatencyMaxLatency":0.5}'`)
	flag.StringVar(&o.join, "join", "", "paths.default.join for the started server (cache or live; default: the server's default)")
	flag.StringVar(&o.catchUp, "catchup", "", "paths.default.catchUp for the started server, e.g. 500ms (default: the server's default)")
	flag.StringVar(&o.jsonFile, "json", "", "also write the JSON result to this file")
	flag.BoolVar(&o.verbose, "v", false, "show server, ffmpeg and node diagnostics")
	flag.Parse()
	if o.whip {
		if o.rtmpURL != "" {
			fatalf("-whip publishes from the browser: give only -http (the WHEP URL)")
		}
		o.webrtc = true
	}
	if !o.whip && (o.rtmpURL == "") != (o.httpURL == "") {
		fatalf("-rtmp and -http go together")
	}
	if o.direct && o.rtmpURL != "" {
		fatalf("-direct does not use a server")
	}
	if o.direct && (o.hls || o.webrtc) {
		fatalf("-direct is HTTP-FLV only")
	}
	if o.hls && o.webrtc {
		fatalf("-hls and -webrtc are two different players: choose one")
	}
	if o.prewarm && !o.webrtc && !o.hls {
		fatalf("-prewarm is for -webrtc and -hls")
	}
	if o.webrtc && o.player != "" {
		fatalf("-player is for mpegts.js and hls.js")
	}
	if (o.partTarget != "" || o.partHoldBack != 0) && (!o.hls || o.rtmpURL != "") {
		fatalf("-part and -holdback are for -hls with the started server")
	}
	if (o.ladder || o.first || o.playlist != "index.m3u8") && (!o.hls || o.rtmpURL != "") {
		fatalf("-playlist, -ladder and -first are for -hls with the started server")
	}
	if o.runs < 1 {
		fatalf("-runs must be at least 1")
	}
	if o.player != "" && !json.Valid([]byte(o.player)) {
		fatalf("-player is not valid JSON")
	}

	sctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(sctx)
	res, err := run(ctx, o)
	cancel()
	stopAll()
	if err != nil {
		fatalf("%v", err)
	}
	printText(os.Stdout, res)
	line, _ := json.Marshal(res)
	fmt.Println(string(line))
	if o.jsonFile != "" {
		if err := os.WriteFile(o.jsonFile, append(line, '\n'), 0o644); err != nil {
			fatalf("%v", err)
		}
	}
}

func fatalf(format string, a ...any) {
	stopAll()
	fmt.Fprintf(os.Stderr, "latency: "+format+"\n", a...)
	os.Exit(1)
}

// Run is one player session, as measure.mjs reports it.
type Run struct {
	DurationS        float64 `json:"duration_s"`
	Samples          int     `json:"samples"`
	DecodeFailures   int     `json:"decode_failures"`
	MedianMs         float64 `json:"median_ms"`
	P95Ms            float64 `json:"p95_ms"`
	MinMs            float64 `json:"min_ms"`
	MaxMs            float64 `json:"max_ms"`
	DisplayMedianMs  float64 `json:"display_median_ms"` // with expectedDisplayTime instead of Date.now()
	FirstSecMedianMs float64 `json:"first_second_median_ms"`
	LastSecMedianMs  float64 `json:"last_second_median_ms"`
	Stalls           int     `json:"stalls"`
	StallsAfterStart int     `json:"stalls_after_start"` // waiting events from the first frame on, warmup included
	StartupMs        float64 `json:"startup_ms"`
	// hls.js: from the first HLS request (MANIFEST_LOADING) to the first
	// presented frame.
	FirstFrameAfterRequestMs float64 `json:"first_frame_after_request_ms"`
	// hls.js: from its first media playlist (where it picks the start
	// position) to the first presented frame, and its latency estimate
	// (live edge - playhead) at that frame.
	FirstFrameAfterLevelMs float64 `json:"first_frame_after_level_ms"`
	PlayerFirstLatencyS    float64 `json:"player_first_latency_s"`
	// WebRTC (-webrtc): from the WHEP POST to the first presented frame
	// and to ICE+DTLS connected; from getStats at the end of the window.
	FirstFrameAfterPostMs float64 `json:"first_frame_after_post_ms"`
	ConnectedAfterPostMs  float64 `json:"connected_after_post_ms"`
	AudioSamples          int64   `json:"audio_samples"`
	JitterBufferMs        float64 `json:"jitter_buffer_ms"`
	NackCount             int64   `json:"nack_count"`
	PacketsLost           int64   `json:"packets_lost"`
	PublisherCodec        string  `json:"publisher_codec,omitempty"` // -whip: the video codec of the WHIP answer
	Prewarm               *struct {
		Ms    float64 `json:"ms"`
		State string  `json:"state"`
	} `json:"prewarm,omitempty"` // -prewarm: how long the local connection (-hls: the audio output's start) took, and its end state
	DroppedFrames   int      `json:"dropped_frames"`
	PresentedFrames int      `json:"presented_frames"`
	RVFC            bool     `json:"rvfc"`
	Errors          []string `json:"errors"`
	PlayerName      string   `json:"player"`
	PlayerVersion   string   `json:"player_version"`
	// Non-fatal player errors in the window by detail (hls.js).
	PlayerWarnings map[string]int `json:"player_warnings"`
	// hls.js's own view at the end of the window.
	PlayerLatencyS       float64   `json:"player_latency_s"`
	PlayerTargetLatencyS float64   `json:"player_target_latency_s"`
	PlaybackRate         float64   `json:"playback_rate"`
	ForwardBufferS       float64   `json:"forward_buffer_s"`       // buffered ahead of the playhead at the end of the window
	PlayheadRate         float64   `json:"playhead_rate"`          // media seconds played per wall second in the window
	BufferEndRate        float64   `json:"buffer_end_rate"`        // media seconds buffered per wall second in the window
	Latencies            []float64 `json:"latencies_ms,omitempty"` // every sample; dropped from the report
}

// Result is the report: all runs pooled, and each run.
type Result struct {
	Mode             string          `json:"mode"` // streamhub or direct
	URL              string          `json:"url"`
	Audio            bool            `json:"audio"`
	Client           string          `json:"client"` // "mpegts.js 1.8.2", "hls.js 1.7.4"
	Player           json.RawMessage `json:"player,omitempty"`
	ServerPart       string          `json:"server_part_target,omitempty"`
	ServerHoldBack   float64         `json:"server_part_hold_back,omitempty"`
	ServerJoin       string          `json:"server_join,omitempty"`
	ServerCatchUp    string          `json:"server_catchup,omitempty"`
	Runs             int             `json:"runs"`
	DurationS        float64         `json:"duration_s"` // measured, all runs
	Samples          int             `json:"samples"`
	DecodeFailures   int             `json:"decode_failures"`
	MedianMs         float64         `json:"median_ms"`
	P95Ms            float64         `json:"p95_ms"`
	MinMs            float64         `json:"min_ms"`
	MaxMs            float64         `json:"max_ms"`
	Stalls           int             `json:"stalls"`
	StallsAfterStart int             `json:"stalls_after_start"`
	PlayerWarnings   map[string]int  `json:"player_warnings,omitempty"`
	RunMediansMs     []float64       `json:"run_medians_ms"`
	// -webrtc: each run's first presented frame after its WHEP POST.
	FirstFramesMs []float64 `json:"first_frames_after_post_ms,omitempty"`
	// -hls: each run's first presented frame after its first HLS request.
	FirstFramesAfterRequestMs []float64 `json:"first_frames_after_request_ms,omitempty"`
	Playlist                  string    `json:"playlist,omitempty"`
	Ladder                    bool      `json:"ladder,omitempty"`
	First                     bool      `json:"first_viewer,omitempty"`
	Errors                    []string  `json:"errors"`
	GeneratorLate             int64     `json:"generator_late_frames"`
	FramesGenerated           int64     `json:"frames_generated"`
	PerRun                    []Run     `json:"per_run"`
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	pos := float64(len(sorted)-1) * q
	lo := int(pos)
	hi := min(lo+1, len(sorted)-1)
	return sorted[lo] + (sorted[hi]-sorted[lo])*(pos-float64(lo))
}

func (r *Result) add(run Run) {
	r.Runs++
	r.DurationS += run.DurationS
	r.Samples += run.Samples
	r.DecodeFailures += run.DecodeFailures
	r.Stalls += run.Stalls
	r.StallsAfterStart += run.StallsAfterStart
	for k, n := range run.PlayerWarnings {
		if r.PlayerWarnings == nil {
			r.PlayerWarnings = map[string]int{}
		}
		r.PlayerWarnings[k] += n
	}
	if run.PlayerName != "" {
		r.Client = strings.TrimSpace(run.PlayerName + " " + run.PlayerVersion)
	}
	r.RunMediansMs = append(r.RunMediansMs, run.MedianMs)
	if run.FirstFrameAfterPostMs > 0 {
		r.FirstFramesMs = append(r.FirstFramesMs, run.FirstFrameAfterPostMs)
	}
	if run.FirstFrameAfterRequestMs > 0 {
		r.FirstFramesAfterRequestMs = append(r.FirstFramesAfterRequestMs, run.FirstFrameAfterRequestMs)
	}
	for _, e := range run.Errors {
		r.Errors = append(r.Errors, fmt.Sprintf("run %d: %s", r.Runs, e))
	}
	r.PerRun = append(r.PerRun, run)
}

func (r *Result) pool(all []float64) {
	slices.Sort(all)
	r.MedianMs, r.P95Ms = quantile(all, 0.5), quantile(all, 0.95)
	if len(all) > 0 {
		r.MinMs, r.MaxMs = all[0], all[len(all)-1]
	}
}

func printText(w io.Writer, r Result) {
	what := "HTTP-FLV in mpegts.js"
	if strings.HasPrefix(r.Client, "hls.js") {
		what = "LL-HLS in hls.js"
	}
	if strings.HasPrefix(r.Client, "RTCPeerConnection") {
		what = "WHEP in Chromium"
	}
	fmt.Fprintf(w, "glass-to-glass latency, %s (%s, audio=%v)\n", what, r.Mode, r.Audio)
	fmt.Fprintf(w, "  url              %s\n", r.URL)
	if r.Client != "" {
		fmt.Fprintf(w, "  player           %s\n", r.Client)
	}
	if len(r.Player) > 0 {
		fmt.Fprintf(w, "  player config    %s\n", r.Player)
	}
	if r.ServerJoin != "" || r.ServerCatchUp != "" {
		fmt.Fprintf(w, "  server           join=%s catchUp=%s\n", r.ServerJoin, r.ServerCatchUp)
	}
	if r.ServerPart != "" {
		fmt.Fprintf(w, "  server           hls.partTarget=%s\n", r.ServerPart)
	}
	if r.ServerHoldBack != 0 {
		fmt.Fprintf(w, "  server           hls.partHoldBack=%g\n", r.ServerHoldBack)
	}
	if r.Ladder || r.First {
		fmt.Fprintf(w, "  server           ladder=%v, every run the first HLS viewer=%v\n", r.Ladder, r.First)
	}
	fmt.Fprintf(w, "  measured         %d run(s), %.1f s, %d frames (%d undecodable)\n", r.Runs, r.DurationS, r.Samples, r.DecodeFailures)
	fmt.Fprintf(w, "  median           %.0f ms\n", r.MedianMs)
	fmt.Fprintf(w, "  p95              %.0f ms\n", r.P95Ms)
	fmt.Fprintf(w, "  min / max        %.0f / %.0f ms\n", r.MinMs, r.MaxMs)
	fmt.Fprintf(w, "  stalls           %d (video waiting events; %d from the first frame on, warmup included)\n", r.Stalls, r.StallsAfterStart)
	if fs := r.FirstFramesAfterRequestMs; len(fs) > 0 {
		s := slices.Sorted(slices.Values(fs))
		fmt.Fprintf(w, "  first frame      median %.0f ms, max %.0f ms after the first HLS request\n", quantile(s, 0.5), s[len(s)-1])
	}
	if len(r.PlayerWarnings) > 0 {
		keys := slices.Sorted(maps.Keys(r.PlayerWarnings))
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%d", k, r.PlayerWarnings[k])
		}
		fmt.Fprintf(w, "  player warnings %s (non-fatal errors in the window)\n", b.String())
	}
	for i, run := range r.PerRun {
		fmt.Fprintf(w, "  run %-2d           median %.0f, p95 %.0f, first/last s %.0f/%.0f ms, %d stalls, startup %.0f ms, %d dropped",
			i+1, run.MedianMs, run.P95Ms, run.FirstSecMedianMs, run.LastSecMedianMs, run.Stalls, run.StartupMs, run.DroppedFrames)
		if run.PlayerName == "RTCPeerConnection" {
			fmt.Fprintf(w, ", first frame %.0f ms and connected %.0f ms after the POST, jitter buffer %.0f ms, %d audio samples, %d NACKs, %d lost",
				run.FirstFrameAfterPostMs, run.ConnectedAfterPostMs, run.JitterBufferMs, run.AudioSamples, run.NackCount, run.PacketsLost)
			if run.PublisherCodec != "" {
				fmt.Fprintf(w, ", WHIP video %s", run.PublisherCodec)
			}
		} else {
			fmt.Fprintf(w, ", buffer %.2f s, playhead/buffer-end speed %.4f/%.4f", run.ForwardBufferS, run.PlayheadRate, run.BufferEndRate)
		}
		if run.PlayerTargetLatencyS > 0 {
			fmt.Fprintf(w, ", hls.js latency/target %.2f/%.2f s, rate %.2f, first frame %.0f ms after the first request and %.0f ms after the first media playlist, at hls.js latency %.2f s",
				run.PlayerLatencyS, run.PlayerTargetLatencyS, run.PlaybackRate, run.FirstFrameAfterRequestMs, run.FirstFrameAfterLevelMs, run.PlayerFirstLatencyS)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  generator        %d frames, %d late\n", r.FramesGenerated, r.GeneratorLate)
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  errors           %q\n", r.Errors)
	}
}

func run(ctx context.Context, o options) (Result, error) {
	root, err := findRoot(o.root)
	if err != nil {
		return Result{}, err
	}
	nm := filepath.Join(root, "e2e", "browser", "node_modules")
	need := []string{"playwright-core/package.json", "mpegts.js/dist/mpegts.js"}
	if o.hls {
		need[1] = "hls.js/dist/hls.min.js"
	}
	if o.webrtc {
		need = need[:1]
	}
	for _, f := range need {
		if _, err := os.Stat(filepath.Join(nm, f)); err != nil {
			return Result{}, fmt.Errorf("%s missing: run (cd e2e/browser && npm ci) or scripts/test.sh", filepath.Join(nm, f))
		}
	}
	for _, tool := range []string{"ffmpeg", "node"} {
		if _, err := exec.LookPath(tool); err != nil {
			return Result{}, fmt.Errorf("%s not found in PATH", tool)
		}
	}

	gen := &generator{audio: o.audio, verbose: o.verbose}
	res := Result{Mode: "streamhub", Audio: o.audio, ServerJoin: o.join, ServerCatchUp: o.catchUp, ServerPart: o.partTarget, ServerHoldBack: o.partHoldBack, Errors: []string{},
		Ladder: o.ladder, First: o.first}
	if o.hls {
		res.Playlist = o.playlist
	}
	if o.player != "" {
		res.Player = json.RawMessage(o.player)
	}
	switch {
	case o.direct:
		res.Mode, res.ServerJoin, res.ServerCatchUp = "direct", "", ""
		if res.URL, err = serveDirect(ctx, gen); err != nil {
			return res, err
		}
	case o.whip:
		res.Mode = "streamhub, browser WHIP"
		res.URL = o.httpURL
		if res.URL == "" {
			if _, _, _, res.URL, err = startServer(ctx, o, root); err != nil {
				return res, err
			}
		} else {
			res.Mode = "browser WHIP"
		}
	default:
		rtmpURL, httpURL := o.rtmpURL, o.httpURL
		if rtmpURL == "" {
			var flvURL, hlsURL, whepURL string
			if rtmpURL, flvURL, hlsURL, whepURL, err = startServer(ctx, o, root); err != nil {
				return res, err
			}
			httpURL = flvURL
			if o.hls {
				httpURL = strings.TrimSuffix(hlsURL, "index.m3u8") + o.playlist
			}
			if o.webrtc {
				// Wait on the FLV URL (a HEAD), play the WHEP one.
				httpURL = whepURL
				o.waitURL = flvURL
			}
		}
		go func() {
			if err := gen.run(ctx, rtmpURL, nil); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "latency: publisher: %v\n", err)
			}
		}()
		wait := httpURL
		if o.webrtc {
			wait = o.waitURL
		}
		if o.hls {
			// The media playlist answers 200 once the segmenter has a part.
			if base, ok := strings.CutSuffix(httpURL, o.playlist); ok {
				wait = base + "stream.m3u8"
			}
			if o.first {
				// Not over HLS: the player's request starts the muxer. The
				// FLV URL answers a HEAD once the stream is published.
				wait = strings.TrimSuffix(wait, "/stream.m3u8") + ".flv"
			}
		}
		if wait != "" {
			if err := waitStream(ctx, wait, 20*time.Second); err != nil {
				return res, err
			}
		}
		if o.webrtc {
			// A whole GOP in the server's cache before the first viewer.
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(o.settle):
			}
		}
		res.URL = httpURL
	}

	var all []float64
	for i := range o.runs {
		if o.first {
			// A GOP in the cache, and the last run's muxers and ladder
			// stopped (1 s idle, checked each second; then the ladder's
			// 1 s): the next run is a first viewer again.
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(5 * time.Second):
			}
		}
		r, err := measure(ctx, o, root, res.URL)
		if err != nil {
			return res, fmt.Errorf("run %d: %w", i+1, err)
		}
		all = append(all, r.Latencies...)
		r.Latencies = nil
		res.add(r)
		if o.verbose {
			fmt.Fprintf(os.Stderr, "latency: run %d: median %.0f ms, p95 %.0f ms, %d stalls\n", i+1, r.MedianMs, r.P95Ms, r.Stalls)
		}
	}
	res.pool(all)
	res.FramesGenerated, res.GeneratorLate = gen.frames.Load(), gen.late.Load()
	return res, nil
}

// measure runs one player session with measure.mjs.
func measure(ctx context.Context, o options, root, flvURL string) (Run, error) {
	lay, _ := json.Marshal(layout)
	args := []string{filepath.Join(root, "bench", "latency", "measure.mjs"),
		"--url", flvURL, "--layout", string(lay),
		"--warmup", fmt.Sprint(o.warmup.Seconds()), "--duration", fmt.Sprint(o.duration.Seconds())}
	if o.player != "" {
		args = append(args, "--player", o.player)
	}
	if o.hls {
		args = append(args, "--hls")
	}
	if o.webrtc {
		args = append(args, "--whep")
	}
	if o.prewarm {
		args = append(args, "--prewarm")
	}
	if o.whip {
		args = append(args, "--whip", strings.TrimSuffix(flvURL, "/whep")+"/whip")
	}
	nctx, cancel := context.WithTimeout(ctx, o.warmup+o.duration+60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(nctx, "node", args...)
	cmd.Dir = filepath.Join(root, "bench", "latency")
	var out strings.Builder
	cmd.Stdout = &out
	if o.verbose {
		cmd.Stderr = os.Stderr
	}
	procGroup(cmd)
	runErr := cmd.Run()
	var r Run
	line := lastJSONLine(out.String())
	if line == "" {
		return r, fmt.Errorf("measure.mjs: %v, no result; output:\n%s", runErr, out.String())
	}
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		return r, fmt.Errorf("measure.mjs: bad result %q: %v", line, err)
	}
	if runErr != nil && r.Samples == 0 {
		return r, fmt.Errorf("measure.mjs: %v: %q", runErr, r.Errors)
	}
	return r, nil
}

func lastJSONLine(s string) string {
	var line string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "{") {
			line = l
		}
	}
	return line
}

func findRoot(root string) (string, error) {
	if root != "" {
		return filepath.Abs(root)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/streamhub/streamhub\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the streamhub checkout or pass -root")
		}
		dir = parent
	}
}

// ---- processes ----

var (
	procsMu sync.Mutex
	procs   []*exec.Cmd
)

// procGroup runs cmd in its own process group, SIGTERMs the group when its
// context ends, and registers it for stopAll.
func procGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	procsMu.Lock()
	procs = append(procs, cmd)
	procsMu.Unlock()
}

// stopAll SIGTERMs every started process group, then SIGKILLs what is left.
func stopAll() {
	procsMu.Lock()
	defer procsMu.Unlock()
	var live []int
	for _, c := range procs {
		if c.Process != nil && c.ProcessState == nil {
			if syscall.Kill(-c.Process.Pid, syscall.SIGTERM) == nil {
				live = append(live, c.Process.Pid)
			}
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, pid := range live {
		for time.Now().Before(deadline) && syscall.Kill(-pid, 0) == nil {
			time.Sleep(50 * time.Millisecond)
		}
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	procs = nil
}

// ---- server ----

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func freeUDPAddr() (string, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.LocalAddr().String(), nil
}

func startServer(ctx context.Context, o options, root string) (rtmpURL, flvURL, hlsURL, whepURL string, err error) {
	dir, err := os.MkdirTemp("", "streamhub-latency-")
	if err != nil {
		return "", "", "", "", err
	}
	go func() { <-ctx.Done(); os.RemoveAll(dir) }()
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(dir, "streamhub")
		b := exec.Command("go", "build", "-o", bin, ".")
		b.Dir = root
		if out, err := b.CombinedOutput(); err != nil {
			return "", "", "", "", fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	ra, err := freeAddr()
	if err != nil {
		return "", "", "", "", err
	}
	ha, err := freeAddr()
	if err != nil {
		return "", "", "", "", err
	}
	// RTSP and SRT on free ports too, so that nothing else on the machine
	// (e2e tests, a server on the default ports) gets in the way.
	rtspA, err := freeAddr()
	if err != nil {
		return "", "", "", "", err
	}
	srtA, err := freeUDPAddr()
	if err != nil {
		return "", "", "", "", err
	}
	// ICE on every address: the mux gathers no loopback candidate, and
	// Chromium reaches the machine's own interface address.
	rtcA, err := freeUDPAddr()
	if err != nil {
		return "", "", "", "", err
	}
	_, rtcPort, _ := net.SplitHostPort(rtcA)
	conf := fmt.Sprintf("rtmp: {address: %q}\nhttp: {address: %q}\nrtsp: {address: %q, transports: [tcp]}\nsrt: {address: %q}\nstreams: {database: %q}\nwebrtc: {udpAddress: %q, tcpAddress: \"\"}\n",
		ra, ha, rtspA, srtA, filepath.Join(dir, "streams.db"), ":"+rtcPort)
	var hlsConf []string
	if o.partTarget != "" {
		// segmentMin must not be below partTarget; 1 s keeps the GOP's segments.
		hlsConf = append(hlsConf, fmt.Sprintf("partTarget: %q", o.partTarget))
	}
	if o.partHoldBack != 0 {
		hlsConf = append(hlsConf, fmt.Sprintf("partHoldBack: %g", o.partHoldBack))
	}
	if o.first {
		hlsConf = append(hlsConf, "idleTimeout: 1s")
	}
	if len(hlsConf) > 0 {
		conf += "hls: {" + strings.Join(hlsConf, ", ") + "}\n"
	}
	if o.ladder || o.first {
		conf += "transcode:\n  idleTimeout: 1s\n"
		if o.ladder {
			conf += "  ladder:\n    - {name: 180p, height: 180, videoBitrate: 250k}\n    - {name: 120p, height: 120, videoBitrate: 120k}\n"
		}
	}
	if o.join != "" || o.catchUp != "" {
		conf += "paths:\n  default:\n"
		if o.join != "" {
			conf += fmt.Sprintf("    join: %q\n", o.join)
		}
		if o.catchUp != "" {
			conf += fmt.Sprintf("    catchUp: %q\n", o.catchUp)
		}
	}
	cf := filepath.Join(dir, "streamhub.yml")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return "", "", "", "", err
	}
	cmd := exec.CommandContext(ctx, bin, "--config", cf)
	if o.verbose {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	procGroup(cmd)
	if err := cmd.Start(); err != nil {
		return "", "", "", "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range []string{ra, ha} {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case err := <-exited:
				return "", "", "", "", fmt.Errorf("streamhub exited: %v (run with -v for its log)", err)
			default:
			}
			if time.Now().After(deadline) {
				return "", "", "", "", fmt.Errorf("streamhub not listening on %s", a)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return "rtmp://" + ra + "/live/latency", "http://" + ha + "/live/latency.flv", "http://" + ha + "/live/latency/index.m3u8", "http://" + ha + "/live/latency/whep", nil
}

func waitStream(ctx context.Context, url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	client := &http.Client{Timeout: 8 * time.Second} // an HLS playlist may block for a part
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stream %s not up after %v", url, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---- generator ----

type generator struct {
	audio   bool
	verbose bool
	frames  atomic.Int64
	late    atomic.Int64
}

// run encodes the painted frames with ffmpeg until ctx ends. With out == nil
// ffmpeg publishes to target (an RTMP URL); otherwise ffmpeg writes FLV to
// its stdout, which is copied to out.
func (g *generator) run(ctx context.Context, target string, out func([]byte) error) error {
	args := []string{"-nostdin", "-hide_banner", "-loglevel", "error",
		"-fflags", "nobuffer", "-probesize", "32", "-analyzeduration", "0",
		"-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", fmt.Sprintf("%dx%d", width, height), "-r", fmt.Sprint(fps), "-i", "pipe:0"}
	var audioR, audioW *os.File
	if g.audio {
		var err error
		if audioR, audioW, err = os.Pipe(); err != nil {
			return err
		}
		defer audioR.Close()
		defer audioW.Close()
		args = append(args, "-fflags", "nobuffer", "-probesize", "32", "-analyzeduration", "0",
			"-f", "s16le", "-ar", fmt.Sprint(sampleHz), "-ac", "1", "-i", "pipe:3")
	}
	args = append(args, "-map", "0:v")
	if g.audio {
		args = append(args, "-map", "1:a")
	}
	args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
		"-g", fmt.Sprint(fps), "-pix_fmt", "yuv420p")
	if g.audio {
		args = append(args, "-c:a", "aac", "-b:a", "64k")
	}
	args = append(args, "-f", "flv")
	if out != nil {
		args = append(args, "-flush_packets", "1", "pipe:1")
	} else {
		args = append(args, target)
	}
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	if g.verbose {
		cmd.Stderr = os.Stderr
	}
	if g.audio {
		cmd.ExtraFiles = []*os.File{audioR}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var stdout io.ReadCloser
	if out != nil {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return err
		}
	}
	procGroup(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	if g.audio {
		audioR.Close() // ffmpeg has its copy
	}
	copyErr := make(chan error, 1)
	if out != nil {
		go func() {
			buf := make([]byte, 64*1024)
			for {
				n, err := stdout.Read(buf)
				if n > 0 {
					if werr := out(buf[:n]); werr != nil {
						copyErr <- werr
						return
					}
				}
				if err != nil {
					copyErr <- err
					return
				}
			}
		}()
	}

	p := newPainter()
	silence := make([]byte, sampleHz/fps*2) // 1470 samples of s16le per frame
	frameDur := time.Second / fps
	start := time.Now()
	var werr error
	for n := 0; ; n++ {
		due := start.Add(time.Duration(n) * frameDur)
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		} else if -d > frameDur {
			g.late.Add(1)
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case werr = <-copyErr:
		default:
		}
		if werr != nil {
			break
		}
		frame := p.paint(time.Now().UnixMilli())
		if _, werr = stdin.Write(frame); werr != nil {
			break
		}
		if g.audio {
			if _, werr = audioW.Write(silence); werr != nil {
				break
			}
		}
		g.frames.Add(1)
	}
	stdin.Close()
	if audioW != nil {
		audioW.Close()
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		return nil
	}
	if werr != nil {
		return werr
	}
	return err
}

// ---- direct baseline ----

// serveDirect serves ffmpeg's FLV output as HTTP-FLV on 127.0.0.1:0 and
// returns the URL. Each GET starts its own generator and ffmpeg.
func serveDirect(ctx context.Context, g *generator) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	var busy atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", "*")
		hd.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		hd.Set("Access-Control-Allow-Headers", "*")
		switch r.Method {
		case http.MethodOptions:
			w.WriteHeader(http.StatusNoContent)
			return
		case http.MethodHead:
			hd.Set("Content-Type", "video/x-flv")
			return
		case http.MethodGet:
		default:
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if !busy.CompareAndSwap(false, true) {
			http.Error(w, "one reader at a time", http.StatusConflict)
			return
		}
		defer busy.Store(false)
		hd.Set("Content-Type", "video/x-flv")
		hd.Set("Cache-Control", "no-cache, no-store")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		rc.Flush()
		err := g.run(r.Context(), "", func(b []byte) error {
			if _, err := w.Write(b); err != nil {
				return err
			}
			return rc.Flush()
		})
		if err != nil && r.Context().Err() == nil {
			fmt.Fprintf(os.Stderr, "latency: direct: %v\n", err)
		}
	})
	srv := &http.Server{Handler: h, BaseContext: func(net.Listener) context.Context { return ctx }}
	go srv.Serve(l)
	go func() { <-ctx.Done(); srv.Close() }()
	var id [4]byte
	rand.Read(id[:])
	return "http://" + l.Addr().String() + "/direct-" + hex.EncodeToString(id[:]) + ".flv", nil
}
