// Package transcode runs the FFmpeg bitrate ladder: one FFmpeg process per
// source stream decodes it once and encodes every rung, and each rung comes
// back into the hub as an ordinary stream, <path>/<rung>.
//
//	hub Reader(live/test) ──MPEG-TS──▶ stdin ┐
//	                                         FFmpeg (split, scale, encode ×N)
//	hub Publisher(live/test/480p) ◀──MPEG-TS── fd 3 ┘
//	hub Publisher(live/test/240p) ◀──MPEG-TS── fd 4 ┘
//
// The Manager starts a worker when a source is published (mode always) or
// when a rung or the multivariant playlist is first asked for (mode
// onDemand), and stops it when the source's publisher leaves or, on
// demand, when no one has read a rung for IdleTimeout. A worker supervises
// its process: restart with backoff, a watchdog, stop with stdin closed →
// SIGTERM → SIGKILL, and the process dies with the server.
package transcode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// Plan is what the configuration says of one path's ladder.
type Plan struct {
	// Mode is ModeOff, ModeOnDemand or ModeAlways.
	Mode string
	// Rungs are the rungs the path may get, highest first; those at or
	// above the source's height are skipped.
	Rungs []Rung
}

// Rendition is one rung a live source has (or will have once its ladder
// started), for the multivariant playlist.
type Rendition struct {
	Name                        string
	Height                      int
	Bandwidth, AverageBandwidth int
}

// Manager owns every ladder worker. Its methods are safe for concurrent use.
type Manager struct {
	// conf is the transcode: section; Update swaps it.
	conf   atomic.Pointer[Config]
	hub    *server.Hub
	log    *slog.Logger
	plan   func(path string) Plan
	ffmpeg string // the resolved binary; "" when off
	offErr error  // why the ladder is off, nil when it works

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // mu guards workers
	workers map[string]*worker
	// running counts workers until their process has exited (a stopping
	// one included), for transcode.maxWorkers; full says it was logged.
	running atomic.Int64
	full    atomic.Bool
}

// New returns a manager for hub. plan resolves a path's ladder. When the
// FFmpeg binary cannot be found, the manager logs once that the ladder is
// off and why, and does nothing else.
func New(conf Config, hub *server.Hub, log *slog.Logger, plan func(path string) Plan) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{hub: hub, log: log.With("component", "transcode"), plan: plan, ctx: ctx, cancel: cancel,
		workers: map[string]*worker{}}
	m.conf.Store(&conf)
	bin, err := exec.LookPath(conf.FFmpeg)
	switch {
	case len(conf.Ladder) == 0:
		m.offErr = errors.New("transcode.ladder is empty")
	case err != nil:
		m.offErr = fmt.Errorf("FFmpeg not found (transcode.ffmpeg %q: %w); install it (apt-get install ffmpeg) or set transcode.ffmpeg to its path", conf.FFmpeg, err)
	default:
		m.ffmpeg = bin
	}
	if m.offErr != nil {
		m.log.Warn("bitrate ladder off", "reason", m.offErr)
	}
	return m
}

// Update makes the manager use c (a config reload): threads, the VAAPI
// device and maxWorkers for the FFmpeg processes started from now on,
// idleTimeout and watchdog at their next check. transcode.ffmpeg, resolved
// at New, is kept; the rungs come from the plan function. Safe for
// concurrent use.
func (m *Manager) Update(c Config) {
	c.FFmpeg = m.cfg().FFmpeg
	m.conf.Store(&c)
}

// cfg returns the current transcode: section.
func (m *Manager) cfg() *Config { return m.conf.Load() }

// Err returns why the ladder is off, or nil.
func (m *Manager) Err() error { return m.offErr }

// Close stops every worker and waits until their processes have exited.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

// OnPublish starts the ladder of a source whose mode is always. It is the
// hub's HubConfig.OnPublish and does not block.
func (m *Manager) OnPublish(path string, derived bool) {
	if derived || m.offErr != nil {
		return
	}
	switch p := m.plan(path); p.Mode {
	case ModeAlways:
		m.start(path)
	case ModeOnDemand:
		// A republish (an encoder reconnecting): rung readers waiting in
		// the grace period get their rungs back.
		for _, r := range p.Rungs {
			if s := m.hub.Stream(path + "/" + r.Name); s != nil && s.ReaderCount() > 0 {
				m.start(path)
				return
			}
		}
	}
}

// OnUnpublish stops the ladder of a source whose publisher left; a new
// publisher starts a new one. It is the hub's HubConfig.OnUnpublish and does
// not block.
func (m *Manager) OnUnpublish(path string, derived bool) {
	if derived {
		return
	}
	if s := m.hub.Stream(path); s != nil && s.Publishing() {
		// A new publisher attached before this callback ran: the worker
		// reads on from the same stream.
		return
	}
	m.mu.Lock()
	w, aw := m.workers[path], m.workers[audioKey(path)]
	delete(m.workers, path)
	delete(m.workers, audioKey(path))
	m.mu.Unlock()
	if aw != nil {
		aw.cancel(errSourceLeft)
	}
	if w != nil {
		w.cancel(errSourceLeft)
	}
}

// Demand starts the ladder that would publish path, a rung path such as
// live/test/480p, and reports whether it did or one is running: the hub's
// HubConfig.OnDemand calls it for a path nobody publishes, and then waits
// for the rung to appear.
func (m *Manager) Demand(path string) bool {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 || m.offErr != nil {
		return false
	}
	if path[i+1:] == OpusRung {
		return m.demandAudio(path)
	}
	source, name := path[:i], path[i+1:]
	rs := m.renditions(source)
	if rs == nil && m.heightUnknown(source) {
		// A source over MPEG-TS or RTSP, just published: its picture size
		// comes with its first keyframe. Start; the worker picks the rungs.
		for _, r := range m.plan(source).Rungs {
			rs = append(rs, Rendition{Name: r.Name})
		}
	}
	for _, r := range rs {
		if r.Name == name {
			return m.start(source)
		}
	}
	return false
}

// heightUnknown reports whether source is a live stream with H264 or H265
// video whose height is not known yet.
func (m *Manager) heightUnknown(source string) bool {
	s := m.hub.Stream(source)
	if s == nil || s.Derived() || !s.Publishing() {
		return false
	}
	v := sourceVideo(s.Tracks())
	return v != nil && v.Height == 0
}

// sourceVideo returns the track the ladder scales: the first H264 or H265
// one (what FFmpeg can read from MPEG-TS), or nil.
func sourceVideo(tracks []*media.Track) *media.Track {
	for _, t := range tracks {
		if t.Codec == media.CodecH264 || t.Codec == media.CodecH265 {
			return t
		}
	}
	return nil
}

// Renditions returns the rungs the live source at path gets, and starts
// its ladder if it is on demand. It returns nil when the path has no ladder
// (mode off, no FFmpeg, no video, nothing below the source's height, or the
// path is itself a rung).
func (m *Manager) Renditions(path string) []Rendition {
	rs := m.renditions(path)
	if len(rs) > 0 && !m.start(path) {
		return nil
	}
	return rs
}

// Rungs is Renditions without starting anything.
func (m *Manager) Rungs(path string) []Rendition { return m.renditions(path) }

func (m *Manager) renditions(path string) []Rendition {
	if m.offErr != nil {
		return nil
	}
	p := m.plan(path)
	if p.Mode == ModeOff {
		return nil
	}
	s := m.hub.Stream(path)
	if s == nil || s.Derived() || !s.Publishing() {
		return nil
	}
	var out []Rendition
	for _, r := range rungsBelow(p.Rungs, s.Tracks()) {
		out = append(out, Rendition{Name: r.Name, Height: r.Height, Bandwidth: r.Bandwidth(), AverageBandwidth: r.AverageBandwidth()})
	}
	return out
}

// rungsBelow returns the rungs lower than the first video track, which
// must be one FFmpeg can read from MPEG-TS.
func rungsBelow(rungs []Rung, tracks []*media.Track) []Rung {
	h := 0
	if v := sourceVideo(tracks); v != nil {
		h = v.Height
	}
	var out []Rung
	for _, r := range rungs {
		if r.Height < h || r.Encoder == encoderOpus {
			out = append(out, r)
		}
	}
	return out
}

// start runs the worker of source unless one runs; either way it counts as
// a demand (it holds an on-demand ladder for IdleTimeout). With
// transcode.maxWorkers processes running it starts nothing. It reports
// whether a worker runs.
func (m *Manager) start(source string) bool { return m.startKey(source, source, m.plan(source)) }

// startKey is start for the worker under key (the source for its ladder,
// audioKey for its audio job) with plan.
func (m *Manager) startKey(key, source string, plan Plan) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w := m.workers[key]; w != nil {
		w.touch()
		return true
	}
	if m.ctx.Err() != nil {
		return false
	}
	if maxW := m.cfg().MaxWorkers; maxW > 0 && int(m.running.Load()) >= maxW {
		if m.full.CompareAndSwap(false, true) {
			m.log.Warn("ladder not started: transcode.maxWorkers FFmpeg processes run already", "path", source, "maxWorkers", maxW)
		}
		return false
	}
	m.full.Store(false)
	w := newWorker(m, source, plan)
	w.key = key
	m.running.Add(1)
	m.workers[key] = w
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.running.Add(-1) // counted until its process has exited
		w.run()
		m.forget(w)
	}()
	return true
}

// forget removes w from the running workers, if it is still the one of
// its source: a stopping worker no longer answers demands.
func (m *Manager) forget(w *worker) {
	m.mu.Lock()
	if m.workers[w.key] == w {
		delete(m.workers, w.key)
	}
	m.mu.Unlock()
}

// Status is what the API shows of a source's ladder.
type Status struct {
	// State is starting, running, backoff or stopped.
	State    string
	Rungs    []string
	PID      int
	Restarts int
	// LastExit is how the last process ended ("exit status 1", "signal:
	// killed (watchdog: no output for 10s)"), "" before the first end.
	LastExit string
	// Stderr holds the last lines FFmpeg wrote to stderr.
	Stderr []string
	Since  time.Time
}

// Status returns the ladder of source, and false when none runs.
func (m *Manager) Status(source string) (Status, bool) {
	m.mu.Lock()
	w := m.workers[source]
	m.mu.Unlock()
	if w == nil {
		return Status{}, false
	}
	return w.status(), true
}
