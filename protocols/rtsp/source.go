package rtsp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/server"
)

// Backoff of a source that fails: 1 s doubling to 30 s, with jitter, back
// to 1 s after a run of stableRun.
const (
	backoffMin = time.Second
	backoffMax = 30 * time.Second
	stableRun  = 30 * time.Second
)

// Sources pulls the paths whose config names a source (an IP camera, another
// server): always, or on demand (HubConfig.OnDemand calls Demand) until the
// path has had no reader for sourceIdleTimeout. Each source runs in its own
// goroutine, so a camera that hangs or drops blocks nothing else.
type Sources struct {
	hub  *server.Hub
	log  *slog.Logger
	conf Config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex // mu guards running and demanded
	running  map[string]*pull
	demanded map[string]time.Time // last Demand per path: a waiting reader counts as one
}

// pull is one running source.
type pull struct {
	ctx  context.Context // cancelled when the source stops (idle or shutdown)
	done chan struct{}
}

// NewSources returns a source manager; conf gives the timeouts.
func NewSources(conf Config, hub *server.Hub, log *slog.Logger) *Sources {
	ctx, cancel := context.WithCancel(context.Background())
	return &Sources{hub: hub, log: log.With("proto", "rtsp-source"), conf: conf, ctx: ctx, cancel: cancel,
		running: map[string]*pull{}, demanded: map[string]time.Time{}}
}

// StartAlways starts the sources of paths that are pulled always.
func (m *Sources) StartAlways(paths []string) {
	for _, p := range paths {
		pc := m.hub.PathConfig(p)
		if pc.Source != "" && !pc.SourceOnDemand {
			m.start(p, pc)
		}
	}
}

// Demand starts path's on-demand source if it has one and it is not
// running; it reports whether path has a source that is (now) running.
func (m *Sources) Demand(path string) bool {
	pc := m.hub.PathConfig(path)
	if pc.Source == "" {
		return false
	}
	m.mu.Lock()
	m.demanded[path] = time.Now()
	p := m.running[path]
	m.mu.Unlock()
	if p != nil && p.ctx.Err() != nil {
		// Stopping (idle): let it finish, then start anew.
		select {
		case <-p.done:
		case <-time.After(time.Second):
		}
	}
	m.start(path, pc)
	return true
}

// Close stops every source and waits for them.
func (m *Sources) Close() {
	m.cancel()
	m.wg.Wait()
}

func (m *Sources) start(path string, pc server.PathConfig) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.running[path]; (p != nil && p.ctx.Err() == nil) || m.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	p := &pull{ctx: ctx, done: make(chan struct{})}
	m.running[path] = p
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(p.done)
		m.run(ctx, cancel, path, pc)
		m.mu.Lock()
		if m.running[path] == p {
			delete(m.running, path)
		}
		m.mu.Unlock()
	}()
}

// pullSafe is pull with a panic turned into an error: the source is
// retried with backoff, as after any failure.
func (m *Sources) pullSafe(ctx context.Context, path string, pc server.PathConfig, log *slog.Logger) (err error) {
	defer guard.RecoverErr(log, "rtsp source", &err)
	return m.pull(ctx, path, pc, log)
}

// run pulls one source until ctx ends: the server closes or, on demand,
// the path stays without readers.
func (m *Sources) run(ctx context.Context, cancel context.CancelFunc, path string, pc server.PathConfig) {
	defer cancel()
	log := m.log.With("path", path, "source", server.RedactURL(pc.Source))
	if pc.SourceOnDemand {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.idleWatch(ctx, cancel, path, pc.SourceIdleTimeout)
		}()
	}
	log.Info("source starting", "onDemand", pc.SourceOnDemand)
	wait := backoffMin
	for {
		began := time.Now()
		err := m.pullSafe(ctx, path, pc, log)
		if ctx.Err() != nil {
			log.Info("source stopped", "cause", stopReason(m.ctx))
			return
		}
		if time.Since(began) >= stableRun {
			wait = backoffMin
		}
		// Full jitter on the upper half: a fleet of cameras that dropped
		// together does not reconnect in lockstep.
		d := wait/2 + rand.N(wait/2+1)
		log.Warn("source failed; retrying", "cause", err.Error(), "retryIn", d.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			log.Info("source stopped", "cause", stopReason(m.ctx))
			return
		case <-time.After(d):
		}
		wait = min(wait*2, backoffMax)
	}
}

func stopReason(serverCtx context.Context) string {
	if serverCtx.Err() != nil {
		return "server shutting down"
	}
	return "no readers (sourceIdleTimeout)"
}

// idleWatch cancels an on-demand source once its path has had no reader
// for idle.
func (m *Sources) idleWatch(ctx context.Context, cancel context.CancelFunc, path string, idle time.Duration) {
	tick := time.NewTicker(min(idle/4, time.Second))
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			m.mu.Lock()
			demanded := m.demanded[path]
			m.mu.Unlock()
			st := m.hub.Stream(path)
			switch {
			case st != nil && st.ReaderCount() > 0:
				last = now
			case st == nil && now.Sub(demanded) < server.OnDemandTimeout:
				last = now // not published yet: a reader may still be waiting for it
			case now.Sub(last) >= idle:
				cancel()
				return
			}
		}
	}
}

// pull runs one connection to the source: DESCRIBE, SETUP, PLAY, publish
// into the hub, and wait until it fails or ctx ends.
func (m *Sources) pull(ctx context.Context, path string, pc server.PathConfig, log *slog.Logger) error {
	u, err := base.ParseURL(pc.Source)
	if err != nil {
		return fmt.Errorf("source URL: %w", err)
	}
	c := &gortsplib.Client{
		Scheme: u.Scheme, Host: u.Host,
		ReadTimeout: m.conf.ReadTimeout, WriteTimeout: m.conf.WriteTimeout,
	}
	switch pc.SourceTransport {
	case server.SourceTCP:
		p := gortsplib.ProtocolTCP
		c.Protocol = &p
	case server.SourceUDP:
		p := gortsplib.ProtocolUDP
		c.Protocol = &p
	}
	if err := c.Start(); err != nil {
		return err
	}
	// Close the client when ctx ends, whatever it is doing (a camera that
	// hangs in DESCRIBE must not hold up a shutdown).
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()
	defer c.Close()

	desc, _, err := c.Describe(u)
	if err != nil {
		return fmt.Errorf("DESCRIBE: %w", err)
	}
	in, err := newIngest(desc)
	if err != nil {
		return err
	}
	in.log, in.path = m.log, path
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		return fmt.Errorf("SETUP: %w", err)
	}
	pub, err := m.hub.PublishTrusted(path, in.tracks, server.PublishOptions{Protocol: "rtsp-source", Remote: u.Host, Pulled: true})
	if err != nil {
		return err
	}
	defer pub.Close()
	in.pub = pub
	in.register(c)
	if _, err := c.Play(nil); err != nil {
		return fmt.Errorf("PLAY: %w", err)
	}
	tr := "?"
	if t := c.Transport(); t != nil && t.Session != nil {
		tr = t.Session.Protocol.String()
	}
	log.Info("source playing", "transport", tr)
	err = c.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil {
		err = errors.New("the source ended the session")
	}
	return err
}
