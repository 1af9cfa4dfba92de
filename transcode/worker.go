package transcode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/internal/tsconv"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// Supervision timings.
const (
	backoffMin = time.Second
	backoffMax = 30 * time.Second
	// stableRun resets the backoff: a process that ran this long was fine.
	stableRun = 30 * time.Second
	// stdinGrace and termGrace: after stdin is closed FFmpeg flushes and
	// exits; if it has not within stdinGrace it gets SIGTERM, and SIGKILL
	// termGrace later.
	stdinGrace = 3 * time.Second
	termGrace  = 2 * time.Second
	// stderrLines is how many of FFmpeg's last stderr lines are kept.
	stderrLines = 20
	readBatch   = 64
)

// Reasons a worker stops for good (no restart).
var (
	errSourceLeft = errors.New("transcode: the source's publisher left")
	errIdle       = errors.New("transcode: no one read a rung for transcode.idleTimeout")
	errClosed     = errors.New("transcode: shutting down")
)

// noLadderError is a source the ladder cannot take: it is not retried.
type noLadderError struct{ reason string }

func (e *noLadderError) Error() string { return "transcode: no ladder: " + e.reason }

// worker runs and supervises the FFmpeg process of one source.
type worker struct {
	m      *Manager
	key    string // in Manager.workers: the source, or audioKey(source)
	source string
	plan   Plan
	ctx    context.Context
	cancel context.CancelCauseFunc

	lastDemand atomic.Int64 // unix nanoseconds of the last demand

	// last holds, per rung and track, the DTS last written, so a restarted
	// process's output joins on without going back in time. The outer map
	// belongs to run's goroutine; each inner one to its rung's reader.
	last map[string]map[int]time.Duration
	// walls maps the source's pictures to their arrival times.
	walls wallClock

	mu       sync.Mutex // mu guards the status fields below
	state    string
	pid      int
	restarts int
	lastExit string
	stderr   []string
	since    time.Time
	rungs    []string
}

func newWorker(m *Manager, source string, plan Plan) *worker {
	ctx, cancel := context.WithCancelCause(m.ctx)
	w := &worker{m: m, key: source, source: source, plan: plan, ctx: ctx, cancel: cancel, last: map[string]map[int]time.Duration{},
		state: "starting", since: time.Now()}
	w.touch()
	return w
}

func (w *worker) touch() { w.lastDemand.Store(time.Now().UnixNano()) }

func (w *worker) status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Status{State: w.state, Rungs: append([]string(nil), w.rungs...), PID: w.pid, Restarts: w.restarts,
		LastExit: w.lastExit, Stderr: append([]string(nil), w.stderr...), Since: w.since}
}

func (w *worker) setState(s string) {
	w.mu.Lock()
	w.state, w.since = s, time.Now()
	w.mu.Unlock()
}

// run starts FFmpeg and restarts it with exponential backoff and jitter
// (1 s doubling to 30 s, reset after a stable run) until the worker is
// cancelled or the source cannot have a ladder.
func (w *worker) run() {
	log := w.m.log.With("path", w.source)
	defer w.setState("stopped")
	backoff := backoffMin
	for {
		start := time.Now()
		err := w.once()
		cause := context.Cause(w.ctx)
		if cause == nil && w.m.ctx.Err() != nil {
			cause = errClosed
		}
		var nl *noLadderError
		switch {
		case cause != nil:
			log.Info("ladder stopped", "cause", cause)
			return
		case errors.Is(err, errIdle):
			log.Info("ladder stopped", "cause", err)
			return
		case errors.As(err, &nl), errors.Is(err, server.ErrStreamNotFound), errors.Is(err, server.ErrStreamClosed):
			log.Info("ladder stopped", "cause", err)
			return
		}
		if time.Since(start) >= stableRun {
			backoff = backoffMin
		}
		st := w.status()
		// Jitter of ±25 % keeps many ladders from restarting in step.
		wait := backoff/4*3 + rand.N(backoff/2+1)
		log.Warn("FFmpeg ended; restarting", "err", err, "exit", st.LastExit, "in", wait.Round(time.Millisecond),
			"stderr", lastLines(st.Stderr, 5))
		if w.plan.Mode == ModeOnDemand && w.idle() {
			log.Info("ladder stopped", "cause", errIdle)
			return
		}
		w.setState("backoff")
		t := time.NewTimer(wait)
		select {
		case <-w.ctx.Done():
			t.Stop()
			log.Info("ladder stopped", "cause", context.Cause(w.ctx))
			return
		case <-t.C:
		}
		backoff = min(backoff*2, backoffMax)
		w.mu.Lock()
		w.restarts++
		w.mu.Unlock()
	}
}

func lastLines(l []string, n int) []string { return l[max(len(l)-n, 0):] }

// once runs one FFmpeg process until it exits, the watchdog or the idle
// timer ends it, or the worker is cancelled.
func (w *worker) once() (err error) {
	// A panic ends this FFmpeg run as a failure: run restarts it with
	// backoff, as after a crash of the process.
	defer guard.RecoverErr(w.m.log, "ladder", &err, "path", w.source)
	hub := w.m.hub
	// The cached GOP first, with its real timing: FFmpeg codes it at once
	// and the rungs catch up with live.
	r, err := hub.ReadTrusted(w.ctx, w.source, server.ReadOptions{NoCatchUp: true})
	if err != nil {
		return err
	}
	defer r.Close()
	r.SetPeer(server.Peer{Protocol: "transcode", Remote: "ffmpeg"}, nil)
	tracks := r.Tracks()
	// A source over MPEG-TS or RTSP may be published before its first
	// SPS: its picture size comes with the first keyframe.
	first, err := w.firstPicture(r, tracks)
	if err != nil {
		return err
	}
	if first != nil {
		tracks = r.Stream().Tracks()
	}
	rungs := rungsBelow(w.plan.Rungs, tracks)
	if len(rungs) == 0 {
		return &noLadderError{reason: "the source has no H264 or H265 video of known height above a rung of the ladder"}
	}
	mux, err := tsconv.NewMuxer(tracks)
	if err != nil {
		return &noLadderError{reason: err.Error()}
	}
	in := Input{}
	for _, t := range tracks {
		// What the muxer carries: AAC needs its config.
		switch t.Codec {
		case media.CodecOpus, media.CodecMP3:
			in.HasAudio = true
		case media.CodecAAC:
			in.HasAudio = in.HasAudio || t.AudioConfig != nil
		}
	}
	names := make([]string, len(rungs))
	for i, rg := range rungs {
		names[i] = rg.Name
	}

	p, err := startProcess(w.m.ffmpeg, Args(*w.m.cfg(), rungs, in), len(rungs))
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.pid, w.rungs, w.state, w.since, w.stderr = p.cmd.Process.Pid, names, "running", time.Now(), nil
	w.mu.Unlock()
	w.m.log.Info("FFmpeg started", "path", w.source, "pid", p.cmd.Process.Pid, "rungs", names)

	var (
		wg       sync.WaitGroup
		lastOut  atomic.Int64 // unix nanoseconds of the last rung output
		lastIn   atomic.Int64 // of the last unit fed; negated while a write blocks
		baseSet  = make(chan struct{})
		baseDTS  time.Duration
		feedErr  = make(chan error, 1)
		exitErr  = make(chan error, 1)
		feedCtx  context.Context
		stopFeed context.CancelFunc
	)
	now := time.Now().UnixNano()
	lastOut.Store(now)
	lastIn.Store(now)
	feedCtx, stopFeed = context.WithCancel(w.ctx)
	defer stopFeed()

	// stderr: keep the last lines.
	wg.Add(1)
	go func() {
		defer wg.Done()
		keepStderr(p.stderr, func(line string) {
			w.mu.Lock()
			w.stderr = lastLines(append(w.stderr, line), stderrLines)
			w.mu.Unlock()
		})
	}()
	// Rungs: demux and publish.
	for i, rg := range rungs {
		last := w.last[rg.Name]
		if last == nil {
			last = map[int]time.Duration{}
			w.last[rg.Name] = last
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if v := recover(); v != nil {
					guard.Report(w.m.log, "ladder rung reader", v, "path", w.source, "rung", rg.Name)
					stopFeed() // the run ends and is restarted
				}
			}()
			w.readRung(feedCtx, rg.Name, p.outs[i], last, &lastOut, baseSet, &baseDTS)
		}()
	}
	// Feed: hub → MPEG-TS → stdin.
	wg.Add(1)
	go func() {
		defer wg.Done()
		feedErr <- func() (err error) {
			defer guard.RecoverErr(w.m.log, "ladder feed", &err, "path", w.source)
			return w.feed(feedCtx, r, first, mux, p.stdin, &lastIn, baseSet, &baseDTS)
		}()
	}()
	go func() { exitErr <- p.cmd.Wait() }()

	watchdog := time.NewTicker(time.Second)
	defer watchdog.Stop()
	var result error
	exited := false
loop:
	for {
		select {
		case err := <-exitErr:
			exited = true
			result = exitError(err)
			break loop
		case err := <-feedErr:
			if errors.Is(err, server.ErrStreamClosed) || errors.Is(err, server.ErrReaderClosed) {
				result = server.ErrStreamClosed
			} else if err != nil && w.ctx.Err() == nil {
				result = fmt.Errorf("transcode: feeding FFmpeg: %w", err)
			}
			break loop
		case <-w.ctx.Done():
			break loop
		case <-watchdog.C:
			if err := starved(&lastIn, &lastOut, w.m.cfg().Watchdog); err != nil {
				result = err
				p.kill()
				break loop
			}
			if w.plan.Mode == ModeOnDemand && w.idle() {
				result = errIdle
				w.m.forget(w) // a demand from now on starts a new worker
				break loop
			}
		}
	}
	stopFeed()
	p.closeStdin()
	if !exited {
		exit := p.stop(exitErr)
		w.mu.Lock()
		w.lastExit = exit
		w.mu.Unlock()
	} else {
		w.mu.Lock()
		w.lastExit = result.Error()
		w.mu.Unlock()
	}
	p.closeOuts()
	wg.Wait()
	p.stderr.Close()
	w.mu.Lock()
	w.pid = 0
	w.mu.Unlock()
	if result == nil {
		result = errors.New("transcode: FFmpeg exited")
	}
	return result
}

// keepStderr reads FFmpeg's stderr until it closes and hands each line,
// cut to guard.Truncate's bound, to keep.
func keepStderr(r io.Reader, keep func(line string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64*1024)
	for sc.Scan() {
		keep(guard.Truncate(sc.Text()))
	}
	io.Copy(io.Discard, r) //nolint:errcheck // a line too long: drain
}

// starved is the watchdog's test: an error when FFmpeg was fed (a write
// pending, lastIn negated, or a recent one) but wrote nothing for wd.
// lastIn and lastOut hold unix nanoseconds.
func starved(lastIn, lastOut *atomic.Int64, wd time.Duration) error {
	in := lastIn.Load()
	fed := in < 0 || time.Since(time.Unix(0, in)) < wd
	if fed && time.Since(time.Unix(0, lastOut.Load())) > wd {
		return fmt.Errorf("transcode: watchdog: FFmpeg was fed but wrote nothing for %s", wd)
	}
	return nil
}

// exitError says how the process ended: "exit status 1", "signal: killed".
func exitError(err error) error {
	if err == nil {
		return errors.New("FFmpeg exited with status 0")
	}
	return fmt.Errorf("FFmpeg: %w", err)
}

// idle reports whether an on-demand ladder has had no reader on any rung
// and no demand for IdleTimeout.
func (w *worker) idle() bool {
	it := w.m.cfg().IdleTimeout
	if time.Since(time.Unix(0, w.lastDemand.Load())) < it {
		return false
	}
	w.mu.Lock()
	names := w.rungs
	w.mu.Unlock()
	for _, n := range names {
		if s := w.m.hub.Stream(w.source + "/" + n); s != nil && s.ReaderCount() > 0 {
			w.touch()
			return false
		}
	}
	return true
}

// firstPicture returns nil when the video track's height is known;
// otherwise it reads up to the first video keyframe (bounded by the
// watchdog time) and returns what it read, which the feed sends first.
func (w *worker) firstPicture(r *server.Reader, tracks []*media.Track) ([]*media.Unit, error) {
	if v := sourceVideo(tracks); (v != nil && v.Height > 0) || len(w.plan.Rungs) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(w.ctx, w.m.cfg().Watchdog)
	defer cancel()
	var read []*media.Unit
	for {
		u, err := r.Next(ctx)
		if err != nil {
			if ctx.Err() != nil && w.ctx.Err() == nil {
				return nil, &noLadderError{reason: "no video keyframe within transcode.watchdog"}
			}
			return nil, err
		}
		read = append(read, u)
		if u.Track.IsVideo() && u.KeyFrame {
			return read, nil
		}
		if len(read) > 10000 {
			return nil, &noLadderError{reason: "no video keyframe"}
		}
	}
}

// feed writes the source's units to FFmpeg's stdin as MPEG-TS until ctx
// ends, the stream ends or the pipe breaks.
func (w *worker) feed(ctx context.Context, r *server.Reader, pending []*media.Unit, mux *tsconv.Muxer, stdin io.Writer,
	lastIn *atomic.Int64, baseSet chan struct{}, baseDTS *time.Duration) error {
	tracks := func() []*media.Track { return r.Stream().Tracks() }
	batch := make([]*media.Unit, 0, readBatch)
	first := true
	for {
		var err error
		if len(pending) > 0 {
			batch, pending = append(batch[:0], pending...), nil
		} else if batch, err = r.NextBatch(ctx, batch[:0]); err != nil {
			return err
		}
		for _, u := range batch {
			b, err := mux.Mux(u, tracks)
			if err != nil {
				return err
			}
			if len(b) == 0 {
				continue
			}
			if first {
				// The rungs' timestamps are read relative to this one.
				*baseDTS = u.DTS
				close(baseSet)
				first = false
			}
			if u.Track.IsVideo() {
				w.walls.add(u.DTS, u.Wall)
			}
			// While a write blocks, FFmpeg has input it does not take: that
			// counts as fed for the watchdog.
			lastIn.Store(-time.Now().UnixNano())
			if _, err := stdin.Write(b); err != nil {
				return err
			}
			lastIn.Store(time.Now().UnixNano())
		}
	}
}

// readRung demuxes one rung's MPEG-TS and publishes it as source/name.
func (w *worker) readRung(ctx context.Context, name string, out *os.File, last map[int]time.Duration, lastOut *atomic.Int64, baseSet chan struct{}, baseDTS *time.Duration) {
	log := w.m.log.With("path", w.source+"/"+name)
	defer io.Copy(io.Discard, out) //nolint:errcheck // FFmpeg must never block on a rung nobody takes
	ar := &activityReader{r: out, last: lastOut}
	tr := &mpegts.Reader{R: ar}
	if err := tr.Initialize(); err != nil {
		return // FFmpeg ended before writing the rung
	}
	var decodeErrs atomic.Int64
	tr.OnDecodeError(func(error) { decodeErrs.Add(1) })
	in, err := tsconv.NewIngest(tr, func(error) { decodeErrs.Add(1) })
	if err != nil {
		log.Warn("rung unreadable", "err", err)
		return
	}
	select {
	case <-baseSet:
		in.SetTimeBase(*baseDTS)
	case <-ctx.Done():
		return
	}
	pub, err := w.m.hub.PublishTrusted(w.source+"/"+name, in.Tracks(), server.PublishOptions{Derived: true, Protocol: "transcode", Remote: "ffmpeg"})
	if err != nil {
		log.Warn("rung not published", "err", err)
		return
	}
	defer pub.Close()
	in.SetWriter(&monotonic{pub: pub, last: last, walls: &w.walls})
	for tr.Read() == nil {
	}
}

// monotonic drops what a restarted process writes again: its output starts
// at the source's cached keyframe, which the rung may already have had. It
// gives each unit the arrival time of the source picture it was made from,
// so the variants' PROGRAM-DATE-TIMEs agree (players align them by it).
type monotonic struct {
	pub   *server.Publisher
	last  map[int]time.Duration // owned by this rung's reader goroutine
	walls *wallClock
}

func (m *monotonic) Write(u *media.Unit) {
	if last, ok := m.last[u.Track.ID]; ok && u.DTS <= last {
		return
	}
	m.last[u.Track.ID] = u.DTS
	if wall, ok := m.walls.at(u.DTS); ok {
		u.Wall = wall
	}
	m.pub.Write(u)
}

// wallClock maps the source's video DTS to its arrival time, for the last
// wallClockSize pictures fed.
type wallClock struct {
	mu   sync.Mutex // mu guards ring and n
	ring [wallClockSize]struct {
		dts  time.Duration
		wall time.Time
	}
	n int
}

const wallClockSize = 1024

func (c *wallClock) add(dts time.Duration, wall time.Time) {
	c.mu.Lock()
	e := &c.ring[c.n%wallClockSize]
	e.dts, e.wall = dts, wall
	c.n++
	c.mu.Unlock()
}

// at returns the arrival time of the newest picture at or before dts, moved
// on by the difference; false when none is known.
func (c *wallClock) at(dts time.Duration) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := c.n - 1; i >= 0 && i >= c.n-wallClockSize; i-- {
		if e := c.ring[i%wallClockSize]; e.dts <= dts {
			return e.wall.Add(dts - e.dts), true
		}
	}
	return time.Time{}, false
}

func (m *monotonic) UpdateTrack(t *media.Track) { m.pub.UpdateTrack(t) }

// activityReader records when data last came.
type activityReader struct {
	r    io.Reader
	last *atomic.Int64
}

func (a *activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// process is one FFmpeg child with its pipes.
type process struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stderr *os.File
	outs   []*os.File

	stdinOnce sync.Once
}

// startProcess starts bin in its own process group, killed with the
// server (parent-death signal), with stdin, stderr and one output pipe per
// rung (file descriptors 3, 4, ...).
func startProcess(bin string, args []string, nOut int) (*process, error) {
	p := &process{}
	var childEnds []*os.File
	closeAll := func() {
		for _, f := range childEnds {
			f.Close()
		}
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	childEnds = append(childEnds, inR)
	p.stdin = inW
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll()
		inW.Close()
		return nil, err
	}
	childEnds = append(childEnds, errW)
	p.stderr = errR
	var extra []*os.File
	for range nOut {
		r, wr, err := os.Pipe()
		if err != nil {
			closeAll()
			p.closeParentEnds()
			return nil, err
		}
		childEnds = append(childEnds, wr)
		extra = append(extra, wr)
		p.outs = append(p.outs, r)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stderr, cmd.ExtraFiles = inR, errW, extra
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	closeAll() // the child has its copies
	if err != nil {
		p.closeParentEnds()
		return nil, fmt.Errorf("transcode: starting %s: %w", bin, err)
	}
	p.cmd = cmd
	return p, nil
}

func (p *process) closeParentEnds() {
	p.closeStdin()
	if p.stderr != nil {
		p.stderr.Close()
	}
	p.closeOuts()
}

func (p *process) closeStdin() { p.stdinOnce.Do(func() { p.stdin.Close() }) }

// closeOuts closes the read ends of the rung pipes, which ends their readers.
func (p *process) closeOuts() {
	for _, f := range p.outs {
		f.Close()
	}
}

// kill sends SIGKILL to the process group.
func (p *process) kill() { syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) } //nolint:errcheck // may be gone

// stop ends the process: stdin closed (FFmpeg flushes and exits), SIGTERM
// to its group after stdinGrace, SIGKILL after termGrace more. It returns
// how the process ended; exited yields cmd.Wait's result.
func (p *process) stop(exited <-chan error) string {
	p.closeStdin()
	t := time.NewTimer(stdinGrace)
	defer t.Stop()
	select {
	case err := <-exited:
		return exitError(err).Error()
	case <-t.C:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM) //nolint:errcheck // may be gone
	t.Reset(termGrace)
	select {
	case err := <-exited:
		return exitError(err).Error() + " (after SIGTERM)"
	case <-t.C:
	}
	p.kill()
	return exitError(<-exited).Error() + " (after SIGKILL)"
}
