// Package fanout writes a stream to many TCP readers from one goroutine per
// stream: a pass takes each reader's units from the hub (TryNextBatch),
// encodes them (shared bytes plus the reader's own framing, or, for a
// reader in step with the stream, a framing made once per batch for all
// such readers: Sink.Shared) and hands them to the socket in one
// non-blocking writev, reader after reader, with no goroutine wake-up,
// timer or deadline per reader. With many readers the
// passes are paced by the path's batch interval (Stream.BatchPace), one
// timer for the stream.
//
// A reader whose socket cannot take a pass's bytes at once leaves the pass:
// its own goroutine (the one that called Serve, parked until then) writes
// the rest with a blocking write and the write timeout, then rejoins. So a
// full socket never delays the others, and a joining reader's catch-up (the
// cached GOP, much more than a socket buffer) is written by its own
// goroutine before it joins.
//
//	Serve ──join──▶ group (one per stream and Passes) ──pass──▶ TryNextBatch ▶ Encode ▶ writev(nonblocking)
//	  ▲                                                          │ short write
//	  └────────────── the rest, blocking, then rejoin ◀──────────┘
package fanout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// ErrWrite wraps the error of a write to a reader's socket.
var ErrWrite = errors.New("write")

// passYield is how many readers a pass serves between yields while
// readers are joining.
const passYield = 64

// maxBatch bounds the units one reader takes in one pass.
const maxBatch = 512

// maxKeptPending is the capacity of a member's pending buffers kept after
// a drain: a pass's batch for one reader, not a catch-up's.
const maxKeptPending = 64

// Sink is one reader's connection.
type Sink struct {
	Reader *server.Reader
	// Conn is the reader's socket; it must implement syscall.Conn (a TCP
	// connection) for the pass to write it without blocking. Serve does
	// not close it.
	Conn net.Conn
	// Encode appends to dst the bytes that deliver batch: shared bytes,
	// and framing in memory of the sink's own that it may reuse at its
	// next call (by then the previous bytes have been written).
	Encode func(dst [][]byte, batch []*media.Unit) [][]byte
	// Shared and Plain, if both are set, let a pass encode a batch once
	// for all the readers it is the same for: when Plain(batch) is true,
	// the reader's bytes for batch are Shared.Encode's, and its own Encode
	// would have changed nothing in its state. Sinks with the same Shared
	// share its bytes.
	Shared *Shared
	Plain  func(batch []*media.Unit) bool
	// SoleWriter says nothing but the pass writes the connection while
	// the reader is in it (RTMP and HTTP-FLV players; not a WebSocket,
	// whose library may write a close frame from its reader): the pass's
	// writes then skip the connection's write lock (RawConn.Control).
	SoleWriter bool
	// WriteTimeout ends the session when the socket takes nothing for
	// this long.
	WriteTimeout time.Duration
	// Done, if set, ends the session when closed (the peer left).
	Done <-chan struct{}
	// WatchClose says nothing the peer sends after its request needs
	// reading (an HTTP-FLV player; an RTMP player's acknowledgements):
	// the reader's goroutine waits in a read of the connection that drops
	// what comes and ends when the peer hangs up, so that a reader that
	// left is let go even while the stream sends nothing.
	WatchClose bool
}

// Shared encodes batches in bytes that are the same for every reader they
// are given to (Sink.Shared).
type Shared struct {
	// Encode appends the bytes that deliver batch to dst, in memory of
	// their own, never reused: the pass gives them to many readers, and a
	// reader whose socket was full keeps them past the pass. dst's own
	// array is the pass's, reused: Encode must not keep it. Passes of
	// different streams may call it at once.
	Encode func(dst [][]byte, batch []*media.Unit) [][]byte
}

// Passes serves readers, one group per stream. The zero value is ready.
type Passes struct {
	// Log, if set, is where a pass that panicked is reported (its
	// readers' sessions end; the process lives).
	Log *slog.Logger

	mu     sync.Mutex
	groups map[*server.Stream]*group

	// joining counts the readers, of any stream, writing their catch-up
	// before they first join: every pass yields to them (passYield).
	// Readers writing a short write's rest are not counted: their
	// goroutines get the other threads, and the runtime preempts a long
	// pass after 10 ms.
	joining atomic.Int32
}

// Serve writes first, then the reader's stream, to s until the session ends
// (the reader's error, a write error, ctx, or s.Done); it returns the bytes
// written and why it ended (never nil).
func (p *Passes) Serve(ctx context.Context, s *Sink, first [][]byte) (int64, error) {
	raw, err := s.Conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("fanout: %w", err)
	}
	m := &member{sink: s, raw: raw, ev: make(chan event, 1)}
	if s.WatchClose {
		m.rd = NewRawReader(s.Conn)
	}
	m.pending = append(m.pending, first...)
	p.joining.Add(1)
	joined := false
	defer func() {
		if !joined {
			p.joining.Add(-1)
		}
	}()
	batch := make([]*media.Unit, 0, maxBatch)
	var done <-chan struct{}
	if s.Done != nil {
		done = s.Done
	}
	// The catch-up: what the reader has now (the cached GOP) is written
	// here, blocking, before it joins the passes.
	batch, _, err = s.Reader.TryNextBatch(batch)
	if err != nil {
		m.drain() //nolint:errcheck // the head at least (an HTTP status), best effort
		return m.total.Load(), err
	}
	m.pending = s.Encode(m.pending, batch)
	clear(batch)
	for {
		if len(m.pending) > 0 {
			if err := m.drain(); err != nil {
				return m.total.Load(), err
			}
		}
		g := p.join(m)
		if !joined {
			joined = true
			p.joining.Add(-1)
		}
		var ev event
		if s.WatchClose {
			ev = m.watch(ctx)
		} else {
			select {
			case ev = <-m.ev:
			case <-ctx.Done():
				ev = event{err: ctx.Err()}
			case <-done:
				ev = event{err: errors.New("the peer left")}
			}
		}
		if ev.err != nil {
			g.quit(m)
			return m.total.Load(), ev.err
		}
		// The pass left bytes the socket could not take: write them
		// here, then join again.
	}
}

// event is what a pass tells a member's goroutine: err ends the session;
// otherwise the member has pending bytes to write.
type event struct{ err error }

type member struct {
	sink    *Sink
	raw     syscall.RawConn
	ev      chan event
	pending [][]byte     // bytes to write before the next pass (the member's own slice)
	rd      io.Reader    // the connection, read by watch
	total   atomic.Int64 // bytes written
}

// watch waits in a read of the connection for the pass's event (end
// interrupts the read through its deadline) or the peer's leaving.
func (m *member) watch(ctx context.Context) event {
	c := m.sink.Conn
	var b [512]byte
	for {
		select {
		case ev := <-m.ev:
			c.SetReadDeadline(time.Time{}) //nolint:errcheck // a closed conn fails the next read
			return ev
		default:
		}
		_, err := m.rd.Read(b[:])
		select {
		case ev := <-m.ev:
			c.SetReadDeadline(time.Time{}) //nolint:errcheck // as above
			return ev
		default:
		}
		switch {
		case ctx.Err() != nil:
			return event{err: ctx.Err()}
		case err == nil: // the peer sent something: not for us
		case errors.Is(err, os.ErrDeadlineExceeded):
			// An interrupt whose event was taken already; the loop looks
			// for one that came meanwhile before it reads again.
			c.SetReadDeadline(time.Time{}) //nolint:errcheck // as above
		default:
			return event{err: fmt.Errorf("the peer left: %w", err)}
		}
	}
}

// drain writes m.pending with a blocking write and the write timeout.
func (m *member) drain() error {
	s := m.sink
	s.Conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout)) //nolint:errcheck // a closed conn fails the write
	bufs := net.Buffers(m.pending)
	n, err := bufs.WriteTo(s.Conn)
	s.Conn.SetWriteDeadline(time.Time{}) //nolint:errcheck // as above
	m.total.Add(n)
	s.Reader.AddBytesOut(int(n))
	clear(m.pending)
	m.pending = m.pending[:0]
	if cap(m.pending) > maxKeptPending {
		// A catch-up's buffers (a GOP's worth): not kept for the rest of
		// the session, in each of a thousand members.
		m.pending = nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	return nil
}

// join adds m to its stream's group, starting the group if needed.
func (p *Passes) join(m *member) *group {
	st := m.sink.Reader.Stream()
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.groups[st]
	if g == nil {
		if p.groups == nil {
			p.groups = map[*server.Stream]*group{}
		}
		g = &group{p: p, st: st, kick: make(chan struct{}, 1)}
		p.groups[st] = g
		go g.run()
	}
	g.mu.Lock()
	g.members = append(g.members, m)
	g.mu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default:
	}
	return g
}

// group is the pass of one stream's readers.
type group struct {
	p    *Passes
	st   *server.Stream
	kick chan struct{} // a member joined

	mu      sync.Mutex
	members []*member

	// passMu is held through each pass: quit waits on it, so that no
	// pass touches a member once its session has returned.
	passMu sync.Mutex
}

// quit takes m out for good: after it returns no pass uses m.
func (g *group) quit(m *member) {
	g.leave(m)
	g.passMu.Lock()
	g.passMu.Unlock() //nolint:staticcheck // an empty critical section: waiting for the pass in progress
	select {
	case <-m.ev:
	default:
	}
}

// leave removes m (if the group still has it).
func (g *group) leave(m *member) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, x := range g.members {
		if x == m {
			last := len(g.members) - 1
			g.members[i] = g.members[last]
			g.members[last] = nil
			g.members = g.members[:last]
			return
		}
	}
}

// run makes passes until the group has no members.
func (g *group) run() {
	var (
		ps    passScratch
		snap  []*member
		timer *time.Timer
	)
	defer func() {
		if v := recover(); v != nil {
			g.fail(v)
		}
	}()
	for {
		g.p.mu.Lock()
		g.mu.Lock()
		if len(g.members) == 0 {
			delete(g.p.groups, g.st)
			g.mu.Unlock()
			g.p.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return
		}
		snap = append(snap[:0], g.members...)
		g.mu.Unlock()
		g.p.mu.Unlock()

		start := time.Now()
		wake, gave := g.locked(snap, &ps)
		clear(snap)
		snap = snap[:0]

		// Wait: with many readers, out the batch interval from this pass's
		// start; otherwise until the stream has more, if this pass gave
		// nothing.
		if pace := g.st.BatchPace(); pace > 0 {
			if timer == nil {
				timer = time.NewTimer(pace)
			} else {
				timer.Reset(time.Until(start.Add(pace)))
			}
			<-timer.C
			continue
		}
		if gave || wake == nil {
			continue
		}
		select {
		case <-wake:
		case <-g.kick:
		}
	}
}

// locked is a pass under passMu (released if the pass panics).
func (g *group) locked(members []*member, ps *passScratch) (<-chan struct{}, bool) {
	g.passMu.Lock()
	defer g.passMu.Unlock()
	return g.pass(members, ps)
}

// passScratch is a pass's reusable memory.
type passScratch struct {
	batch []*media.Unit
	bufs  [][]byte
	w     *vwriter
	// shared[:nshared] are this pass's shared encodings; their memory is
	// the next pass's.
	shared  []sharedBatch
	nshared int
}

// sharedBatch is one batch encoded by a Shared in a pass. Readers' batches
// are compared whole: a reader waiting for a keyframe drops units others
// keep, so the ends of a batch do not name it.
type sharedBatch struct {
	sh     *Shared
	units  []*media.Unit
	enc    [][]byte // the encoding, as Encode gave it
	copied bool     // out holds enc copied into one
	one    []byte
	out    [][]byte // {one}
}

// maxSharedBatches bounds the shared encodings a pass keeps: the readers
// of a stream are nearly all at the same place, a few are behind.
const maxSharedBatches = 4

// maxKeptShared is the largest copy of a shared encoding whose memory a
// group keeps for its next passes (a live batch's; not a burst's).
const maxKeptShared = 1 << 20

// sharedBytes returns sh's bytes for batch, encoding them at the pass's
// first reader that needs them.
//
// From the second reader on, the encoding is copied into one buffer: each
// reader's writev then has one segment instead of a few per unit
// (headers, payloads, trailers), and the kernel's copy from a writev's
// segments costs per segment (perf, 1000 RTMP readers: that copy was 17 %
// of the process's CPU, against 11 % for the one-buffer floor). The copy
// is made once per encoding in a pass (an evicted batch that comes back is
// encoded and copied again), in memory the group keeps (so it is not made for a
// stream's only reader, nor kept by a group that never shares); a reader
// that keeps part of it past the pass (a short write) takes it from the
// group (detach).
func (ps *passScratch) sharedBytes(sh *Shared, batch []*media.Unit) ([][]byte, *sharedBatch) {
	for i := range ps.shared[:ps.nshared] {
		e := &ps.shared[i]
		if e.sh != sh || !slices.Equal(e.units, batch) {
			continue
		}
		if !e.copied {
			one := e.one[:0]
			for _, b := range e.enc {
				one = append(one, b...)
			}
			clear(e.enc)
			e.enc = e.enc[:0]
			e.one, e.copied = one, true
			if e.out == nil {
				e.out = make([][]byte, 1)
			}
			e.out[0] = one
		}
		return e.out, e
	}
	var e *sharedBatch
	switch {
	case ps.nshared < len(ps.shared):
		e = &ps.shared[ps.nshared]
		ps.nshared++
	case ps.nshared < maxSharedBatches:
		ps.shared = append(ps.shared, sharedBatch{})
		e = &ps.shared[ps.nshared]
		ps.nshared++
	default: // the oldest goes; its readers have had their bytes
		old := ps.shared[0]
		copy(ps.shared, ps.shared[1:])
		ps.shared[len(ps.shared)-1] = old
		e = &ps.shared[len(ps.shared)-1]
		e.reset()
	}
	e.sh, e.units = sh, append(e.units[:0], batch...)
	e.enc = sh.Encode(e.enc[:0], batch)
	return e.enc, e
}

// detach leaves e's copy to a reader that keeps part of it past the pass:
// the next pass's copy is made in new memory.
func (e *sharedBatch) detach() {
	if e.copied {
		e.one = nil
	}
}

// reset ends e's encoding, keeping its memory.
func (e *sharedBatch) reset() {
	e.sh, e.copied = nil, false
	clear(e.units)
	e.units = e.units[:0]
	clear(e.enc)
	e.enc = e.enc[:0]
	if e.out != nil {
		e.out[0] = nil
	}
	if cap(e.one) > maxKeptShared {
		e.one = nil
	}
}

// endShared ends the pass's shared encodings.
func (ps *passScratch) endShared() {
	for i := range ps.shared[:ps.nshared] {
		ps.shared[i].reset()
	}
	ps.nshared = 0
}

// pass serves every member once: what the hub has for it, encoded and
// written without waiting. It returns a channel to wait on when it gave
// no member anything (nil if it gave something or has no member left).
func (g *group) pass(members []*member, ps *passScratch) (wake <-chan struct{}, gave bool) {
	if ps.batch == nil {
		ps.batch = make([]*media.Unit, 0, maxBatch)
		ps.w = newVWriter()
	}
	for i, m := range members {
		if i%passYield == passYield-1 && g.p.joining.Load() > 0 {
			// A pass over thousands of readers takes milliseconds: let
			// the goroutines of joining readers (their catch-up) run.
			// Not otherwise: a yield with nothing waiting wakes another
			// thread for the pass (2 % of the CPU at 1000 readers).
			runtime.Gosched()
		}
		var err error
		var w <-chan struct{}
		ps.batch, w, err = m.sink.Reader.TryNextBatch(ps.batch[:0])
		if err != nil {
			g.end(m, event{err: err})
			continue
		}
		if len(ps.batch) == 0 {
			if wake == nil {
				// The first: a unit written since this pass began has
				// closed it already (later ones may be newer channels).
				wake = w
			}
			continue
		}
		gave = true
		var bufs [][]byte
		var shared *sharedBatch
		if s := m.sink; s.Shared != nil && s.Plain != nil && s.Plain(ps.batch) {
			bufs, shared = ps.sharedBytes(s.Shared, ps.batch)
		} else {
			ps.bufs = s.Encode(ps.bufs[:0], ps.batch)
			bufs = ps.bufs
		}
		clear(ps.batch)
		if len(bufs) > 0 {
			g.write(m, bufs, shared, ps.w)
		}
		clear(ps.bufs) // the reader's own framing (the shared bytes stay for the others)
		ps.bufs = ps.bufs[:0]
	}
	ps.endShared()
	if gave {
		wake = nil
	}
	return wake, gave
}

// write hands bufs to m's socket in one non-blocking writev; what it does
// not take goes to m's goroutine with the member out of the pass (and, if
// bufs are a shared encoding's, their memory with it).
func (g *group) write(m *member, bufs [][]byte, shared *sharedBatch, w *vwriter) {
	s := m.sink
	want := 0
	for _, b := range bufs {
		want += len(b)
	}
	n, err := w.writev(m.raw, bufs, s.SoleWriter)
	if n > 0 {
		m.total.Add(int64(n))
		s.Reader.AddBytesOut(n)
	}
	switch {
	case err != nil && err != unix.EAGAIN:
		g.end(m, event{err: fmt.Errorf("%w: %w", ErrWrite, err)})
	case n < want:
		// The socket is full: the rest is written by the member's own
		// goroutine, out of the pass.
		for _, b := range bufs {
			if n >= len(b) {
				n -= len(b)
				continue
			}
			m.pending = append(m.pending, b[n:])
			n = 0
		}
		if shared != nil {
			shared.detach()
		}
		g.end(m, event{})
	}
}

// end takes m out of the pass and tells its goroutine.
func (g *group) end(m *member, ev event) {
	g.leave(m)
	select {
	case m.ev <- ev:
	default: // it has one already; the first counts
	}
	if m.sink.WatchClose {
		m.sink.Conn.SetReadDeadline(longAgo) //nolint:errcheck // wakes its read; a closed conn already did
	}
}

// fail ends a group whose pass panicked: it is reported, the group is
// dropped, and each member's session ends with the error (a new reader
// starts a new group).
func (g *group) fail(v any) {
	if g.p.Log != nil {
		guard.Report(g.p.Log, "fanout pass", v, "path", g.st.Path())
	}
	g.p.mu.Lock()
	if g.p.groups[g.st] == g {
		delete(g.p.groups, g.st)
	}
	g.p.mu.Unlock()
	g.mu.Lock()
	members := append([]*member(nil), g.members...)
	g.mu.Unlock()
	for _, m := range members {
		g.end(m, event{err: guard.ErrPanic})
	}
}

// longAgo is a deadline in the past: it ends a read at once.
var longAgo = time.Unix(1, 0)

// maxIov is the kernel's limit on one writev's buffers (UIO_MAXIOV).
const maxIov = 1024

// vwriter writes a reader's buffers to its socket without waiting, with
// memory and a callback made once per pass goroutine (a closure per call
// would allocate, as would unix.Writev's own iovec array).
type vwriter struct {
	bufs  [][]byte
	iovs  []unix.Iovec
	total int
	err   error
	fn    func(fd uintptr)
	// fnWrite is fn for RawConn.Write.
	fnWrite func(fd uintptr) bool
}

func newVWriter() *vwriter {
	w := &vwriter{}
	w.fn = w.write
	w.fnWrite = func(fd uintptr) bool { w.write(fd); return true }
	return w
}

// writev writes bufs: it returns what the socket took, and unix.EAGAIN
// when it took less than everything because it is full.
func (w *vwriter) writev(raw syscall.RawConn, bufs [][]byte, sole bool) (int, error) {
	w.bufs, w.total, w.err = bufs, 0, nil
	// For a sole writer, Control, not Write: it holds the descriptor open
	// (a Close meanwhile waits for it, so the number cannot be reused
	// under the writev) and skips Write's write lock and poller
	// bookkeeping for a wait this write never does (1.8 % of the CPU at
	// 1000 readers).
	var werr error
	if sole {
		werr = raw.Control(w.fn)
	} else {
		werr = raw.Write(w.fnWrite)
	}
	clear(w.iovs) // no pointers into the readers' bytes kept
	w.bufs = nil
	if werr != nil {
		return w.total, werr
	}
	return w.total, w.err
}

func (w *vwriter) write(fd uintptr) {
	for len(w.bufs) > 0 {
		k := min(len(w.bufs), maxIov)
		v := w.iovs[:0]
		want := 0
		for _, b := range w.bufs[:k] {
			if len(b) == 0 {
				continue
			}
			iov := unix.Iovec{Base: &b[0]}
			iov.SetLen(len(b))
			v = append(v, iov)
			want += len(b)
		}
		w.iovs = v
		if len(v) == 0 {
			w.bufs = w.bufs[k:]
			continue
		}
		// A raw system call: the socket is non-blocking, so writev
		// returns as soon as the kernel has copied what fits. Through
		// unix.Syscall the P would be marked in a system call for each of
		// a pass's thousands of writes, and the runtime's monitor thread,
		// seeing Ps in system calls, keeps waking every 20 µs to look at
		// them: measured, 6 % of the process's CPU at 1000 readers.
		r, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			w.err = e
			return
		}
		w.total += int(r)
		if int(r) < want {
			w.err = unix.EAGAIN
			return
		}
		w.bufs = w.bufs[k:]
	}
}
