package webrtc

import (
	"time"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// A viewer that has caught up with live and sends on a UDP pair with its
// own SRTP (srtpout.go) is served by its stream's fan: a few goroutines,
// each serving up to fanShardSize viewers in one pass per picture, where
// each viewer had its own goroutine woken for every picture. At 200
// viewers that was 6,000 wake-ups a second (the hub's wake, the
// scheduler's hand-offs, a select and a timer per viewer), a tenth of the
// server's CPU. A pass does for each viewer what its own loop did (the
// companion's sound, the units available, one cork flush, the sender
// reports), so what a viewer receives is unchanged.
//
// Nothing in a pass blocks on one viewer: its packets go to the shared
// UDP socket, which waits only when the kernel's send buffer is full (it
// did for every viewer alike before). A viewer on a TCP pair (pion's
// path, a socket per viewer) keeps its own loop, and so does a viewer
// during its catch-up: the cached GOP it joins with goes out from its own
// goroutine before it joins the fan. A viewer's error or panic in a pass
// ends that viewer only (its session goroutine returns the error).

// fanShardSize bounds the viewers of one fan goroutine: a pass over them
// takes a few milliseconds at 720p (about 60 µs a viewer per picture), so
// the last of them gets each picture that much after the first, and the
// shards of a stream use every core.
var fanShardSize = 50 // a variable for the tests

// fanMorePass is how many batches a pass takes for one viewer before
// leaving the rest to the next pass (which then follows at once).
const fanMorePass = 4

// readyChan is closed: a pass that left units behind waits on it.
var readyChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// fanShard is one goroutine's viewers of a stream.
type fanShard struct {
	srv     *Server
	s       *server.Stream
	members []*viewer     // guarded by srv.fansMu
	kick    chan struct{} // a viewer joined or left
	units   []*media.Unit // the pass's scratch
	snap    []*viewer     // the pass's copy of members
}

// fanJoin hands v, caught up and on its own SRTP path, to a shard of its
// stream's fan.
func (s *Server) fanJoin(v *viewer) *fanShard {
	st := v.r.Stream()
	s.fansMu.Lock()
	defer s.fansMu.Unlock()
	if s.fans == nil {
		s.fans = map[*server.Stream][]*fanShard{}
	}
	for _, sh := range s.fans[st] {
		if len(sh.members) < fanShardSize {
			sh.members = append(sh.members, v)
			sh.poke()
			return sh
		}
	}
	sh := &fanShard{srv: s, s: st, members: []*viewer{v}, kick: make(chan struct{}, 1),
		units: make([]*media.Unit, 0, viewerBatch)}
	s.fans[st] = append(s.fans[st], sh)
	s.wg.Add(1)
	go sh.run()
	return sh
}

// leave takes v out of sh. It returns once no pass is writing to v, and
// no later pass will.
func (sh *fanShard) leave(v *viewer) {
	v.stepMu.Lock()
	v.fanOut = true
	v.stepMu.Unlock()
	sh.drop(v)
}

// drop removes v from sh's members.
func (sh *fanShard) drop(v *viewer) {
	sh.srv.fansMu.Lock()
	defer sh.srv.fansMu.Unlock()
	for i, m := range sh.members {
		if m == v {
			last := len(sh.members) - 1
			sh.members[i] = sh.members[last]
			sh.members[last] = nil
			sh.members = sh.members[:last]
			break
		}
	}
	sh.poke()
}

func (sh *fanShard) poke() {
	select {
	case sh.kick <- struct{}{}:
	default:
	}
}

// snapshot copies the members for a pass; false when there are none,
// and then sh is gone from its fan (a joiner makes a new shard).
func (sh *fanShard) snapshot() ([]*viewer, bool) {
	s := sh.srv
	s.fansMu.Lock()
	defer s.fansMu.Unlock()
	if len(sh.members) == 0 {
		sh.unlistLocked()
		return nil, false
	}
	sh.snap = append(sh.snap[:0], sh.members...)
	return sh.snap, true
}

// unlistLocked takes sh out of its stream's fan; srv.fansMu is held.
func (sh *fanShard) unlistLocked() {
	s := sh.srv
	shards := s.fans[sh.s]
	for i, o := range shards {
		if o == sh {
			shards = append(shards[:i], shards[i+1:]...)
			break
		}
	}
	if len(shards) == 0 {
		delete(s.fans, sh.s)
	} else {
		s.fans[sh.s] = shards
	}
}

// run passes over the shard's viewers whenever the stream has more, and
// every audioWait for the companions' sound, until none is left.
func (sh *fanShard) run() {
	defer sh.srv.wg.Done()
	defer func() {
		if p := recover(); p != nil {
			guard.Report(sh.srv.log, "webrtc fan", p)
			sh.fail()
		}
	}()
	tick := time.NewTimer(audioWait)
	defer tick.Stop()
	var last time.Time
	for {
		members, ok := sh.snapshot()
		if !ok {
			return
		}
		if iv := sh.s.BatchPace(); iv > 0 && !last.IsZero() {
			// The path's batch pacing, as the viewers' own loops keep it.
			if d := iv - time.Since(last); d > 0 {
				time.Sleep(d)
			}
		}
		now := time.Now()
		last = now
		var wake <-chan struct{}
		companions := false
		for _, v := range members {
			w := sh.step(v, now)
			switch {
			case w == nil:
			case w == readyChan || wake == nil:
				if wake != readyChan {
					wake = w
				}
			}
			companions = companions || v.companion != nil
		}
		clear(sh.snap)
		var tc <-chan time.Time
		if companions {
			tick.Reset(audioWait)
			tc = tick.C
		}
		select {
		case <-wake: // nil when every viewer left: the kick follows
		case <-tc:
		case <-sh.kick:
		}
	}
}

// fail ends every viewer of sh and takes sh out of its fan: what is left
// of a shard whose loop panicked (a viewer's own panic ends that viewer
// only, in step).
func (sh *fanShard) fail() {
	s := sh.srv
	s.fansMu.Lock()
	members := sh.members
	sh.members = nil
	sh.unlistLocked()
	s.fansMu.Unlock()
	for _, v := range members {
		v.stepMu.Lock()
		if !v.fanOut {
			v.fanOut = true
			v.fanErr <- guard.ErrPanic
		}
		v.stepMu.Unlock()
	}
}

// step sends v what it has now; it returns the channel that says there
// is more (readyChan if the pass left some), nil when v is out.
func (sh *fanShard) step(v *viewer, now time.Time) <-chan struct{} {
	v.stepMu.Lock()
	defer v.stepMu.Unlock()
	if v.fanOut {
		return nil
	}
	wake, err := v.pass(sh.units, now)
	if err != nil {
		v.fanOut = true
		v.fanErr <- err // room for one: a viewer fails once
		sh.drop(v)
		return nil
	}
	return wake
}

// pass is one viewer's part of a fan pass: the companion's sound and the
// units available now (up to fanMorePass batches), then its sender
// reports.
func (v *viewer) pass(buf []*media.Unit, now time.Time) (wake <-chan struct{}, err error) {
	defer guard.RecoverErr(v.ss.log, "webrtc viewer", &err)
	ctx := v.ss.ctx
	for range fanMorePass {
		audio := v.companionUnits(ctx)
		batch, w, err := v.r.TryNextBatch(buf[:0])
		if err != nil {
			return nil, err
		}
		if len(audio) > 0 || len(batch) > 0 {
			err = v.sendBatch(audio, batch)
			clear(batch)
			if err != nil {
				return nil, err
			}
		}
		if w != nil {
			v.sendReports(now)
			return w, nil
		}
	}
	v.sendReports(now)
	return readyChan, nil
}

// fanReady reports whether v can be served by a fan: it sends on a UDP
// pair with its own SRTP (nothing in its writes can block on it alone).
func (v *viewer) fanReady() bool {
	return v.ss.srv.udp != nil && v.udpPeer.Load() != nil && v.ownUsed.Load() && !v.pionUsed.Load()
}
