// Command ladder measures streamhub's FFmpeg bitrate ladder (package
// transcode) on this machine, with a three-rung ladder: 480p 1200k, 360p
// 800k and 240p 400k, libx264 preset veryfast, AAC 96k/96k/64k.
//
// 1. CPU of one ladder process against one process per rung. It encodes a
// 720p30 H.264 (libx264, yuv420p, GOP 60) + AAC MPEG-TS test source of -t
// seconds once (ffmpeg lavfi testsrc2 + sine), then for -rounds rounds,
// the order alternating:
//
//	A  one FFmpeg process with the exact argv the server uses
//	   (transcode.Args with every rung): decodes once, encodes every rung,
//	   rung i written to file descriptor 3+i;
//	B  three FFmpeg processes at once, transcode.Args with one rung each,
//	   each decoding the source itself.
//
// Every process reads the file on its stdin (a pipe, as from the server) as
// fast as it takes it. CPU is user+system time of the processes
// (ProcessState), summed over B's three; wall is from the first start to
// the last exit. It prints each round, the medians and median(A CPU) /
// median(B CPU); the project's goal is A ≤ 0.8× B.
//
// 2. Time to the first keyframe of every rung over HTTP-FLV. It builds
// streamhub (go build in the module root: found from -repo upwards), runs
// it with free 127.0.0.1 ports, the same ladder and paths.default catchUp
// 0s, and publishes the source looped over RTMP (ffmpeg -re -stream_loop -1
// -c copy -f flv). A fresh server for each measurement:
//
//	always    from the source path's first keyframe on
//	          http://ADDR/live/bench.flv to each rung's
//	          (live/bench/<rung>.flv, polled every 50 ms while it is 404);
//	onDemand  once the source serves a keyframe, 2 s later, every rung
//	          requested at once: from the request to each rung's first
//	          keyframe.
//
// It prints median and max per rung over -rounds; the goal is ≤ 2 s.
//
// Run it from the module root (it needs ffmpeg with libx264 in PATH, and go
// for the server build; a full run takes a few minutes):
//
//	go run ./bench/ladder                        # 20 s source, 3 rounds
//	go run ./bench/ladder -t 10s -rounds 3
//	go run ./bench/ladder -skip-start            # only the CPU figures
//	go run ./bench/ladder -skip-cpu -repo /path/to/streamhub
//
// The tables are Markdown, readable as plain text. Everything it writes
// goes to a temporary directory it removes; every process it starts is
// stopped before it exits, on error and on Ctrl-C too.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/streamhub/streamhub/internal/testfixtures"
	flv "github.com/streamhub/streamhub/protocols/httpflv"
	"github.com/streamhub/streamhub/transcode"
)

const modulePath = "github.com/streamhub/streamhub"

// ladderRungs is the ladder both measurements use.
var ladderRungs = []transcode.Rung{
	{Name: "480p", Height: 480, VideoBitrate: 1200e3, AudioBitrate: 96e3, Preset: "veryfast", Encoder: transcode.EncoderX264},
	{Name: "360p", Height: 360, VideoBitrate: 800e3, AudioBitrate: 96e3, Preset: "veryfast", Encoder: transcode.EncoderX264},
	{Name: "240p", Height: 240, VideoBitrate: 400e3, AudioBitrate: 64e3, Preset: "veryfast", Encoder: transcode.EncoderX264},
}

type options struct {
	dur       time.Duration
	rounds    int
	skipCPU   bool
	skipStart bool
	repo      string
}

func main() {
	var o options
	flag.DurationVar(&o.dur, "t", 20*time.Second, "length of the 720p30 test source")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of each measurement")
	flag.BoolVar(&o.skipCPU, "skip-cpu", false, "skip the CPU measurement (one ladder process vs one per rung)")
	flag.BoolVar(&o.skipStart, "skip-start", false, "skip the time-to-first-keyframe measurement (no server build)")
	flag.StringVar(&o.repo, "repo", ".", "a directory in the streamhub module (its root is found upwards)")
	flag.Parse()
	if o.dur < time.Second || o.rounds < 1 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "ladder: -t must be at least 1s and -rounds at least 1")
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ladder:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		return fmt.Errorf("ffmpeg is needed (apt-get install ffmpeg): %w", err)
	}
	cfg := transcode.Config{FFmpeg: "ffmpeg", Ladder: slices.Clone(ladderRungs)}
	cfg.Normalize()

	tmp, err := os.MkdirTemp("", "streamhub-ladder-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	src := filepath.Join(tmp, "src-720p30.ts")
	logf("encoding the %s 720p30 test source", o.dur)
	if err := makeSource(ctx, src, o.dur); err != nil {
		return err
	}

	fmt.Printf("streamhub ladder benchmark: %s, %d CPU cores, %s 720p30 source, %d rounds\n",
		ffmpegVersion(), runtime.NumCPU(), o.dur, o.rounds)
	fmt.Printf("ladder: %s\n\n", describeLadder(cfg.Ladder))

	if !o.skipCPU {
		if err := benchCPU(ctx, cfg, src, o); err != nil {
			return err
		}
	}
	if !o.skipStart {
		if err := benchStart(ctx, cfg, src, tmp, o); err != nil {
			return err
		}
	}
	return nil
}

// logf reports progress on stderr; the figures go to stdout.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ladder: "+format+"\n", args...)
}

func makeSource(ctx context.Context, file string, d time.Duration) error {
	secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", secs,
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-b:v", "2500k", "-maxrate", "2600k",
		"-bufsize", "2600k", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
		"-c:a", "aac", "-b:a", "128k", "-f", "mpegts", file)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("encoding the test source: %w\n%s", err, lastLines(out, 20))
	}
	return nil
}

func ffmpegVersion() string {
	out, err := exec.Command("ffmpeg", "-hide_banner", "-version").Output()
	if err != nil {
		return "ffmpeg ?"
	}
	f := strings.Fields(string(out))
	if len(f) >= 3 {
		return "ffmpeg " + f[2]
	}
	return "ffmpeg ?"
}

func describeLadder(rs []transcode.Rung) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s %s (%s %s, audio %s)", r.Name, r.VideoBitrate, r.Encoder, r.Preset, r.AudioBitrate))
	}
	return strings.Join(parts, ", ")
}

// ---- 1. CPU: one ladder process vs one process per rung ----

type cpuRound struct {
	order       string
	aCPU, aWall time.Duration
	bCPU, bWall time.Duration
}

func benchCPU(ctx context.Context, cfg transcode.Config, src string, o options) error {
	in := transcode.Input{HasAudio: true}
	argsA := transcode.Args(cfg, cfg.Ladder, in)
	var argsB [][]string
	for _, r := range cfg.Ladder {
		argsB = append(argsB, transcode.Args(cfg, []transcode.Rung{r}, in))
	}
	var rounds []cpuRound
	for i := range o.rounds {
		var rd cpuRound
		runA := func() error {
			logf("CPU round %d/%d: A (one process, %d rungs)", i+1, o.rounds, len(cfg.Ladder))
			t0 := time.Now()
			res, err := runFFmpeg(ctx, src, argsA, len(cfg.Ladder))
			rd.aWall = time.Since(t0)
			rd.aCPU = res.cpu
			return err
		}
		runB := func() error {
			logf("CPU round %d/%d: B (%d processes, one rung each)", i+1, o.rounds, len(argsB))
			t0 := time.Now()
			results := make([]ffmpegResult, len(argsB))
			errs := make([]error, len(argsB))
			var wg sync.WaitGroup
			for j, args := range argsB {
				wg.Go(func() { results[j], errs[j] = runFFmpeg(ctx, src, args, 1) })
			}
			wg.Wait()
			rd.bWall = time.Since(t0)
			for _, r := range results {
				rd.bCPU += r.cpu
			}
			return errors.Join(errs...)
		}
		order := []func() error{runA, runB}
		rd.order = "A, B"
		if i%2 == 1 {
			order = []func() error{runB, runA}
			rd.order = "B, A"
		}
		for _, f := range order {
			if err := f(); err != nil {
				return err
			}
		}
		rounds = append(rounds, rd)
	}

	var aCPU, bCPU, aWall, bWall []time.Duration
	t := newTable("round", "order", "A CPU s", "A wall s", "B CPU s", "B wall s", "A/B CPU")
	for i, r := range rounds {
		aCPU, bCPU = append(aCPU, r.aCPU), append(bCPU, r.bCPU)
		aWall, bWall = append(aWall, r.aWall), append(bWall, r.bWall)
		t.row(strconv.Itoa(i+1), r.order, secs(r.aCPU), secs(r.aWall), secs(r.bCPU), secs(r.bWall),
			fmt.Sprintf("%.2f", float64(r.aCPU)/float64(r.bCPU)))
	}
	ma, mb := median(aCPU), median(bCPU)
	ratio := float64(ma) / float64(mb)
	t.row("median", "", secs(ma), secs(median(aWall)), secs(mb), secs(median(bWall)), fmt.Sprintf("%.2f", ratio))

	fmt.Printf("CPU: A = one FFmpeg process, %d rungs (the server's argv); B = %d processes, one rung each.\n",
		len(cfg.Ladder), len(argsB))
	fmt.Printf("Each encodes the whole %s source as fast as it can; CPU = user+system, B summed.\n\n", o.dur)
	t.print()
	verdict := "met"
	if ratio > 0.8 {
		verdict = "NOT met"
	}
	fmt.Printf("\nmedian(A CPU) / median(B CPU) = %.2f (goal ≤ 0.80: %s)\n\n", ratio, verdict)
	return nil
}

type ffmpegResult struct {
	cpu   time.Duration
	bytes int64
}

// runFFmpeg runs ffmpeg with args, the file src on its stdin through a pipe
// and nOut pipes as file descriptors 3, 4, ..., drained concurrently, and
// returns its CPU time and the bytes it wrote to them.
func runFFmpeg(ctx context.Context, src string, args []string, nOut int) (ffmpegResult, error) {
	var res ffmpegResult
	f, err := os.Open(src)
	if err != nil {
		return res, err
	}
	defer f.Close()

	var readers, writers []*os.File
	defer func() {
		for _, p := range slices.Concat(readers, writers) {
			p.Close() // the ends already closed report an error: ignored
		}
	}()
	for range nOut {
		r, w, err := os.Pipe()
		if err != nil {
			return res, err
		}
		readers, writers = append(readers, r), append(writers, w)
	}

	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	// Not the *os.File itself: exec then copies through a pipe, as the
	// server feeds its worker.
	cmd.Stdin = io.MultiReader(f)
	cmd.Stderr = &stderr
	cmd.ExtraFiles = writers
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("starting ffmpeg: %w", err)
	}
	for _, w := range writers {
		w.Close() // the child has its copies: EOF comes when it exits
	}

	counts := make([]int64, nOut)
	var wg sync.WaitGroup
	for i, r := range readers {
		wg.Go(func() { counts[i], _ = io.Copy(io.Discard, r) })
	}
	werr := cmd.Wait()
	wg.Wait()

	if cmd.ProcessState != nil {
		res.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	for i, n := range counts {
		res.bytes += n
		if n == 0 && werr == nil {
			werr = fmt.Errorf("rung %d wrote nothing", i)
		}
	}
	if werr != nil {
		return res, fmt.Errorf("ffmpeg %s: %w\n%s", strings.Join(args, " "), werr, lastLines(stderr.Bytes(), 20))
	}
	return res, nil
}

// ---- 2. time to the first keyframe of every rung ----

// env is what every server run of benchStart shares.
type env struct {
	bin, src, dir string
	ladder        []transcode.Rung
	client        *http.Client
	runs          int // servers started so far, for the log file names
}

func benchStart(ctx context.Context, cfg transcode.Config, src, tmp string, o options) error {
	root, err := moduleRoot(o.repo)
	if err != nil {
		return err
	}
	bin := filepath.Join(tmp, "streamhub")
	logf("building the server in %s", root)
	if err := testfixtures.Build(root, bin, false); err != nil {
		return err
	}
	tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	e := &env{bin: bin, src: src, dir: tmp, ladder: cfg.Ladder, client: &http.Client{Transport: tr}}

	always := map[string][]time.Duration{}
	onDemand := map[string][]time.Duration{}
	for i := range o.rounds {
		logf("start round %d/%d: transcode always", i+1, o.rounds)
		res, err := e.measureAlways(ctx)
		if err != nil {
			return fmt.Errorf("transcode always, round %d: %w", i+1, err)
		}
		for k, v := range res {
			always[k] = append(always[k], v)
		}
		logf("start round %d/%d: transcode onDemand", i+1, o.rounds)
		if res, err = e.measureOnDemand(ctx); err != nil {
			return fmt.Errorf("transcode onDemand, round %d: %w", i+1, err)
		}
		for k, v := range res {
			onDemand[k] = append(onDemand[k], v)
		}
	}

	fmt.Println("Time to the first keyframe of each rung over HTTP-FLV (a fresh server each time):")
	fmt.Println("always: from the source's first keyframe; onDemand: from the request, made 2 s after it.")
	fmt.Println()
	t := newTable("mode", "rung", "median s", "max s", "rounds s")
	worst := time.Duration(0)
	for _, m := range []struct {
		name string
		res  map[string][]time.Duration
	}{{"always", always}, {"onDemand", onDemand}} {
		for _, r := range e.ladder {
			v := m.res[r.Name]
			var each []string
			for _, d := range v {
				each = append(each, secs(d))
			}
			mx := slices.Max(v)
			worst = max(worst, mx)
			t.row(m.name, r.Name, secs(median(v)), secs(mx), strings.Join(each, " "))
		}
	}
	t.print()
	verdict := "met"
	if worst > 2*time.Second {
		verdict = "NOT met"
	}
	fmt.Printf("\nworst first keyframe %s s (goal ≤ 2 s: %s)\n", secs(worst), verdict)
	return nil
}

// moduleRoot returns the directory at or above dir whose go.mod declares
// the streamhub module.
func moduleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) >= 2 && f[0] == "module" && strings.Trim(f[1], `"`) == modulePath {
					return d, nil
				}
			}
		}
		up := filepath.Dir(d)
		if up == d {
			return "", fmt.Errorf("no go.mod of %s at or above %s: run from the module or pass -repo", modulePath, dir)
		}
		d = up
	}
}

// measureAlways runs a server with transcode always, starts the publisher
// and returns, per rung, how long after the source's first keyframe the
// rung served its own.
func (e *env) measureAlways(ctx context.Context) (map[string]time.Duration, error) {
	s, err := e.startServer(ctx, transcode.ModeAlways)
	if err != nil {
		return nil, err
	}
	defer s.stop()

	var srcKey time.Time
	rungKey := make([]time.Time, len(e.ladder))
	fns := []func(context.Context) error{func(ctx context.Context) (err error) {
		srcKey, err = firstKeyframe(ctx, e.client, s.flvURL("live/bench"))
		return err
	}}
	for i, r := range e.ladder {
		fns = append(fns, func(ctx context.Context) (err error) {
			rungKey[i], err = firstKeyframe(ctx, e.client, s.flvURL("live/bench/"+r.Name))
			return err
		})
	}
	// The readers poll from before the publisher starts.
	if err := s.gather(ctx, 60*time.Second, true, fns...); err != nil {
		return nil, err
	}
	out := map[string]time.Duration{}
	for i, r := range e.ladder {
		out[r.Name] = rungKey[i].Sub(srcKey)
	}
	return out, s.stop()
}

// measureOnDemand runs a server with transcode onDemand, starts the
// publisher, waits until the source serves a keyframe and 2 s more, then
// requests every rung at once and returns how long each took to serve its
// first keyframe.
func (e *env) measureOnDemand(ctx context.Context) (map[string]time.Duration, error) {
	s, err := e.startServer(ctx, transcode.ModeOnDemand)
	if err != nil {
		return nil, err
	}
	defer s.stop()

	if err := s.gather(ctx, 30*time.Second, true, func(ctx context.Context) error {
		_, err := firstKeyframe(ctx, e.client, s.flvURL("live/bench"))
		return err
	}); err != nil {
		return nil, err
	}
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	t0 := time.Now()
	took := make([]time.Duration, len(e.ladder))
	var fns []func(context.Context) error
	for i, r := range e.ladder {
		fns = append(fns, func(ctx context.Context) error {
			t, err := firstKeyframe(ctx, e.client, s.flvURL("live/bench/"+r.Name))
			took[i] = t.Sub(t0)
			return err
		})
	}
	if err := s.gather(ctx, 30*time.Second, false, fns...); err != nil {
		return nil, err
	}
	out := map[string]time.Duration{}
	for i, r := range e.ladder {
		out[r.Name] = took[i]
	}
	return out, s.stop()
}

// firstKeyframe reads url as HTTP-FLV until its first video keyframe and
// returns when that arrived. A 404 (not published yet) or a stream that
// ends first is retried every 50 ms until ctx ends.
func firstKeyframe(ctx context.Context, client *http.Client, url string) (time.Time, error) {
	var last error
	for {
		t, retry, err := readKeyframe(ctx, client, url)
		if err == nil {
			return t, nil
		}
		if !retry || ctx.Err() != nil {
			if last != nil && ctx.Err() != nil {
				err = fmt.Errorf("%w (before: %v)", err, last)
			}
			return time.Time{}, fmt.Errorf("GET %s: %w", url, err)
		}
		last = err
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("GET %s: %w (last: %v)", url, ctx.Err(), last)
		}
	}
}

func readKeyframe(ctx context.Context, client *http.Client, url string) (_ time.Time, retry bool, _ error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return time.Time{}, false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return time.Time{}, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return time.Time{}, resp.StatusCode == http.StatusNotFound,
			fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	fr, err := flv.NewReader(resp.Body)
	if err != nil {
		return time.Time{}, true, err
	}
	for {
		tag, err := fr.Read()
		if err != nil {
			return time.Time{}, true, fmt.Errorf("stream ended before a keyframe: %w", err)
		}
		if tag.IsVideoKeyFrame() {
			return time.Now(), false, nil
		}
	}
}

// ---- server and publisher processes ----

// proc is a started process; a goroutine waits for it.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string // the file its stdout and stderr go to
	done chan struct{}
	err  error // how it ended, once done is closed
}

func startProc(name, logFile, bin string, args ...string) (*proc, error) {
	lf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer lf.Close() // the child has its copy
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig, and SIGKILL if the process is still there after grace,
// and returns once it has exited (and its wait goroutine with it).
func (p *proc) stop(sig os.Signal, grace time.Duration) {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(sig) //nolint:errcheck // it may just have exited
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.cmd.Process.Kill() //nolint:errcheck
	<-p.done
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	return lastLines(b, n)
}

// server is one streamhub and its publisher.
type server struct {
	e                *env
	srv, pub         *proc
	rtmp, http, rtsp string
	stopped          bool
	stopErr          error
}

func (s *server) flvURL(path string) string { return "http://" + s.http + "/" + path + ".flv" }

// startServer writes a config with free ports and the ladder, starts
// streamhub on it and waits until it listens.
func (e *env) startServer(ctx context.Context, mode string) (*server, error) {
	e.runs++
	a, err := testfixtures.FreeAddrs()
	if err != nil {
		return nil, err
	}
	a = a.Dynamic() // it binds free ports and logs them: no race for a port
	a.Database = filepath.Join(e.dir, fmt.Sprintf("server-%d.db", e.runs))
	conf := filepath.Join(e.dir, fmt.Sprintf("server-%d.yml", e.runs))
	if err := os.WriteFile(conf, []byte(a.YAML("info")+ladderYAML(e.ladder, mode)), 0o644); err != nil {
		return nil, err
	}
	p, err := startProc("streamhub", filepath.Join(e.dir, fmt.Sprintf("server-%d.log", e.runs)), e.bin, "--config", conf)
	if err != nil {
		return nil, err
	}
	a, err = testfixtures.WaitReady(ctx, func() string { b, _ := os.ReadFile(p.log); return string(b) }, a, 15*time.Second, func() error {
		if p.exited() {
			return fmt.Errorf("exited: %v", p.err)
		}
		return nil
	})
	s := &server{e: e, srv: p, rtmp: a.RTMP, http: a.HTTP, rtsp: a.RTSP}
	if err != nil {
		s.stop() //nolint:errcheck // the start failed: that is the error
		return nil, fmt.Errorf("streamhub did not start: %w\nlog:\n%s", err, p.tail(30))
	}
	return s, nil
}

// startPublisher publishes the source, looped in real time, to live/bench.
func (s *server) startPublisher() error {
	p, err := startProc("publisher", strings.TrimSuffix(s.srv.log, ".log")+"-publisher.log", "ffmpeg",
		"-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", s.e.src,
		"-c", "copy", "-f", "flv", "rtmp://"+s.rtmp+"/live/bench")
	if err != nil {
		return err
	}
	s.pub = p
	return nil
}

// gather runs fns concurrently (with startPublisher first when publish is
// set) and returns once all have returned, within timeout. If the server or
// the publisher exits first, it cancels them and says so.
func (s *server) gather(ctx context.Context, timeout time.Duration, publish bool, fns ...func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, f := range fns {
		wg.Go(func() { errs[i] = f(ctx) })
	}
	all := make(chan struct{})
	go func() {
		wg.Wait()
		close(all)
	}()
	if publish && s.pub == nil {
		if err := s.startPublisher(); err != nil {
			cancel()
			<-all
			return err
		}
	}
	pubDone := make(<-chan struct{}) // never closed without a publisher
	if s.pub != nil {
		pubDone = s.pub.done
	}
	select {
	case <-all:
		return errors.Join(errs...)
	case <-pubDone:
		cancel()
		<-all
		return fmt.Errorf("the publisher exited (%v):\n%s", s.pub.err, s.pub.tail(20))
	case <-s.srv.done:
		cancel()
		<-all
		return fmt.Errorf("streamhub exited (%v):\nlog:\n%s", s.srv.err, s.srv.tail(30))
	}
}

// stop kills the publisher, stops streamhub with SIGTERM (SIGKILL after
// 15 s) and makes sure none of its child processes (the FFmpeg ladder)
// outlives it. It is safe to call more than once; it returns the first
// call's error.
func (s *server) stop() error {
	if s.stopped {
		return s.stopErr
	}
	s.stopped = true
	if s.pub != nil {
		s.pub.stop(os.Kill, 0)
	}
	kids := descendants(s.srv.cmd.Process.Pid)
	wasRunning := !s.srv.exited()
	s.srv.stop(syscall.SIGTERM, 15*time.Second)
	var errs []error
	if wasRunning && s.srv.err != nil {
		errs = append(errs, fmt.Errorf("streamhub did not exit cleanly on SIGTERM: %v\nlog:\n%s", s.srv.err, s.srv.tail(20)))
	}
	// Its FFmpeg processes die with it (SIGKILL on its death at the latest):
	// give them a moment, then kill, by PID, any that did not.
	deadline := time.Now().Add(3 * time.Second)
	for pid, start := range kids {
		for alive(pid, start) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid, start) {
			syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
			errs = append(errs, fmt.Errorf("process %d of streamhub outlived it: killed", pid))
		}
	}
	s.stopErr = errors.Join(errs...)
	return s.stopErr
}

// descendants returns the processes below pid, each with its start time
// (field 22 of /proc/PID/stat) so that a reused PID is not mistaken for it.
func descendants(pid int) map[int]string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := map[int]int{}
	start := map[int]string{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, st, ok := procStat(p); ok {
			parent[p], start[p] = pp, st
		}
	}
	out := map[int]string{}
	for changed := true; changed; {
		changed = false
		for p, pp := range parent {
			if _, seen := out[p]; !seen && (pp == pid || out[pp] != "") {
				out[p] = start[p]
				changed = true
			}
		}
	}
	return out
}

// procStat returns the parent PID and start time of pid.
func procStat(pid int) (ppid int, start string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", false
	}
	i := bytes.LastIndexByte(b, ')') // comm may hold spaces and parentheses
	if i < 0 {
		return 0, "", false
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 20 {
		return 0, "", false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, "", false
	}
	return ppid, f[19], true
}

// alive reports whether pid still runs (not a zombie) and is the process
// that started at start.
func alive(pid int, start string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	return len(f) >= 20 && f[0] != "Z" && f[19] == start
}

// ---- config ----

// ladderYAML is the transcode: and paths: sections.
func ladderYAML(rungs []transcode.Rung, mode string) string {
	var b strings.Builder
	b.WriteString("transcode:\n  ffmpeg: ffmpeg\n  ladder:\n")
	for _, r := range rungs {
		fmt.Fprintf(&b, "    - {name: %q, height: %d, videoBitrate: %s, audioBitrate: %s, preset: %q, encoder: %q}\n",
			r.Name, r.Height, r.VideoBitrate, r.AudioBitrate, r.Preset, r.Encoder)
	}
	fmt.Fprintf(&b, "paths:\n  default:\n    transcode: %s\n    catchUp: 0s\n", mode)
	return b.String()
}

// ---- output ----

// table prints a Markdown table with padded columns.
type table struct{ rows [][]string }

func newTable(head ...string) *table { return &table{rows: [][]string{head}} }

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) print() {
	w := make([]int, len(t.rows[0]))
	for _, r := range t.rows {
		for i, c := range r {
			w[i] = max(w[i], len([]rune(c)))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range r {
			fmt.Fprintf(&b, " %s%s |", c, strings.Repeat(" ", w[i]-len([]rune(c))))
		}
		fmt.Println(b.String())
	}
	line(t.rows[0])
	sep := make([]string, len(w))
	for i := range w {
		sep[i] = strings.Repeat("-", w[i])
	}
	line(sep)
	for _, r := range t.rows[1:] {
		line(r)
	}
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

// median of v (the mean of the middle two for an even count), 0 for none.
func median(v []time.Duration) time.Duration {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// lastLines returns the last n lines of b.
func lastLines(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
