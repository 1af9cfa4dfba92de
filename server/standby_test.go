package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

// standbyConf is testConf with standby mode m.
func standbyConf(m string) PathConfig {
	pc := testConf()
	pc.Standby = m
	pc.StandbyTimeout = 0 // TestStandbyStalled sets it
	pc.GracePeriod = time.Minute
	return pc
}

// source is one encoder: its own tracks and clock, units numbered from
// seq0 (so a reader can tell whose units it got).
type source struct {
	v, a *media.Track
	seq  uint64
	n    int // frames made
	gop  int
}

func newSource(seq0 uint64, gop int) *source {
	return &source{
		v:   &media.Track{ID: 0, Codec: media.CodecH264, SPS: []byte{0x67}, PPS: []byte{0x68}, Width: 320, Height: 240},
		a:   &media.Track{ID: 1, Codec: media.CodecAAC, SampleRate: 48000, Channels: 2},
		seq: seq0, gop: gop,
	}
}

func (src *source) tracks() []*media.Track { return []*media.Track{src.v, src.a} }

// frames makes n more frames at 25 fps (each with an audio unit), a
// keyframe every gop frames of this source's clock.
func (src *source) frames(n int) []*media.Unit {
	var out []*media.Unit
	for range n {
		dts := time.Duration(src.n) * 40 * time.Millisecond
		out = append(out, mkUnit(src.v, src.seq, src.n%src.gop == 0, dts))
		out = append(out, mkUnit(src.a, src.seq+1, true, dts+5*time.Millisecond))
		src.seq += 2
		src.n++
	}
	return out
}

// publishAs publishes src through the guarded door with query.
func publishAs(t *testing.T, h *Hub, path, key, query string, src *source) (*Publisher, error) {
	t.Helper()
	c, err := h.Publish(context.Background(), path, PublishRequest{Key: key, Peer: Peer{Protocol: "test", Remote: "192.0.2.9:" + query, Query: query}})
	if err != nil {
		return nil, err
	}
	return c.Publish(src.tracks())
}

// available returns every unit the reader can have now, without waiting.
func available(t *testing.T, r *Reader) []*media.Unit {
	t.Helper()
	var out []*media.Unit
	for {
		b, _, err := r.TryNextBatch(make([]*media.Unit, 0, 256))
		if err != nil {
			t.Fatalf("TryNextBatch: %v", err)
		}
		if len(b) == 0 {
			return out
		}
		out = append(out, b...)
	}
}

func from(src *source, u *media.Unit) bool { return u.Track == src.v || u.Track == src.a }

// checkContinuous checks that each track's DTS grows and that the largest
// step between consecutive units of one track is at most max.
func checkContinuous(t *testing.T, us []*media.Unit, maxStep time.Duration) {
	t.Helper()
	checkMonotonic(t, us)
	last := map[int]time.Duration{}
	for i, u := range us {
		if d, ok := last[u.Track.ID]; ok && u.DTS-d > maxStep {
			t.Errorf("unit %d (seq %d, track %d): DTS jumps %v after %v", i, seqOf(u), u.Track.ID, u.DTS-d, d)
		}
		last[u.Track.ID] = u.DTS
	}
}

// When the main publisher drops, the backup's cached GOP goes out in the
// same call: the readers need no unit the backup sends after the drop,
// and their timestamps go on without a jump back or a gap.
func TestStandbyTakeover(t *testing.T) {
	h := newTestHub(t, standbyConf(StandbyTakeover))
	main, backup := newSource(0, 10), newSource(1<<32, 10)
	pm, err := publishAs(t, h, "live/s", "", "", main)
	if err != nil {
		t.Fatal(err)
	}
	r := mustRead(t, h, "live/s")
	writeAll(pm, main.frames(12))
	pb, err := publishAs(t, h, "live/s", "", "role=backup", backup)
	if err != nil {
		t.Fatalf("a second publisher on a path with standby on: %v", err)
	}
	if !pb.Standby() || pm.Standby() {
		t.Fatalf("standby: main %v, backup %v; want the second publisher waiting", pm.Standby(), pb.Standby())
	}
	// 13 backup frames: its latest GOP starts at its frame 10 (3 frames).
	writeAll(pb, backup.frames(13))
	writeAll(pm, main.frames(3))
	before := available(t, r)
	for _, u := range before {
		if from(backup, u) {
			t.Fatalf("a reader got the waiting backup's unit %d", seqOf(u))
		}
	}
	st := h.Stream("live/s").Stats()
	if len(st.Standbys) != 1 || st.Standbys[0].Role != RoleBackup || st.Standbys[0].CachedUnits != 6 || st.PublisherRole != RoleMain {
		t.Fatalf("stats before the drop: role %q, standbys %+v; want one backup with 6 cached units", st.PublisherRole, st.Standbys)
	}

	pm.Close() // the main drops
	after := available(t, r)
	if len(after) != 6 || !after[0].KeyFrame || !from(backup, after[0]) || seqOf(after[0]) != 1<<32+20 {
		t.Fatalf("right after the drop the reader has %d units (first %v); want the backup's cached GOP of 6 from its keyframe", len(after), after)
	}
	if !h.Stream("live/s").Publishing() || pb.Standby() {
		t.Fatal("the backup is not live after the main dropped")
	}
	writeAll(pb, backup.frames(5))
	after = append(after, available(t, r)...)
	all := append(before, after...)
	checkContinuous(t, all, 100*time.Millisecond)
	if len(after) != 16 {
		t.Fatalf("the reader got %d of the backup's 16 units after the takeover", len(after))
	}
	st = h.Stream("live/s").Stats()
	if st.Takeovers != 1 || len(st.Standbys) != 0 || st.PublisherRole != RoleBackup || st.Publishes != 2 {
		t.Fatalf("stats after the takeover: %+v", st)
	}
}

// With failback, the main coming back waits until its keyframe, then
// takes the path back exactly there; the backup waits again.
func TestStandbyFailbackAtKeyframe(t *testing.T) {
	h := newTestHub(t, standbyConf(StandbyFailback))
	main, backup := newSource(0, 10), newSource(1<<32, 10)
	pm, _ := publishAs(t, h, "live/s", "", "", main)
	pb, err := publishAs(t, h, "live/s", "", "", backup) // no role: second to arrive, a backup
	if err != nil || !pb.Standby() {
		t.Fatalf("second publisher: %v, standby %v", err, pb != nil && pb.Standby())
	}
	r := mustRead(t, h, "live/s")
	writeAll(pb, backup.frames(4))
	writeAll(pm, main.frames(4))
	pm.Close()
	writeAll(pb, backup.frames(4))

	main2 := newSource(2<<32, 10)
	main2.n = 7 // it comes back mid-GOP: its keyframe is its 4th frame
	pm2, err := publishAs(t, h, "live/s", "", "", main2)
	if err != nil || !pm2.Standby() {
		t.Fatalf("the returning main: %v, standby %v; want it waiting for its keyframe", err, pm2 != nil && pm2.Standby())
	}
	if pm2.opts.Role != RoleMain {
		t.Fatalf("the returning main's role is %q, want main (a backup is live)", pm2.opts.Role)
	}
	writeAll(pm2, main2.frames(3)) // no keyframe yet
	if pm2.Standby() == false || pb.Standby() {
		t.Fatal("the main took over before its keyframe")
	}
	writeAll(pb, backup.frames(1))
	writeAll(pm2, main2.frames(2)) // its keyframe, then one more frame
	if pm2.Standby() || !pb.Standby() {
		t.Fatalf("after the main's keyframe: main standby %v, backup standby %v", pm2.Standby(), pb.Standby())
	}
	writeAll(pb, backup.frames(2)) // waiting again: not published
	got := available(t, r)
	checkContinuous(t, got, 100*time.Millisecond)
	var firstMain *media.Unit
	for _, u := range got {
		if from(main2, u) && firstMain == nil {
			firstMain = u
		}
		if firstMain != nil && from(backup, u) {
			t.Fatalf("backup unit %d after the failback", seqOf(u))
		}
	}
	if firstMain == nil || !firstMain.KeyFrame || !firstMain.Track.IsVideo() || seqOf(firstMain) != 2<<32+6 {
		t.Fatalf("first unit of the returning main: %v; want its keyframe (seq %d)", firstMain, 2<<32+6)
	}
	st := h.Stream("live/s").Stats()
	if st.Failbacks != 1 || st.Takeovers != 1 || len(st.Standbys) != 1 || st.Standbys[0].Role != RoleBackup || st.PublisherRole != RoleMain {
		t.Fatalf("stats after the failback: %+v", st)
	}
	// The main drops again: the backup, waiting again, takes over again.
	pm2.Close()
	writeAll(pb, backup.frames(10))
	got = append(got, available(t, r)...)
	checkContinuous(t, got, 100*time.Millisecond)
	if u := got[len(got)-1]; !from(backup, u) {
		t.Fatal("the backup did not take over a second time")
	}
}

// With takeover, the main coming back waits, keyframes or not.
func TestStandbyTakeoverKeepsPath(t *testing.T) {
	h := newTestHub(t, standbyConf(StandbyTakeover))
	main, backup := newSource(0, 5), newSource(1<<32, 5)
	pm, _ := publishAs(t, h, "live/s", "", "", main)
	pb, _ := publishAs(t, h, "live/s", "", "role=backup", backup)
	writeAll(pb, backup.frames(5))
	pm.Close()
	pm2, err := publishAs(t, h, "live/s", "", "", newSource(2<<32, 5))
	if err != nil || !pm2.Standby() {
		t.Fatalf("the returning main: %v", err)
	}
	writeAll(pm2, newSource(2<<32, 5).frames(11))
	if !pm2.Standby() || pb.Standby() {
		t.Fatal("with standby: takeover, the main took the path back")
	}
}

// With standby off a second publisher is refused as before; with it on, a
// publisher with a wrong key is refused all the same.
func TestStandbyRefusals(t *testing.T) {
	h := newTestHub(t, standbyConf(StandbyOff))
	pm, _ := publishAs(t, h, "live/s", "", "", newSource(0, 5))
	if _, err := publishAs(t, h, "live/s", "", "role=backup", newSource(1, 5)); !errors.Is(err, ErrPathBusy) {
		t.Fatalf("second publisher with standby off: %v, want ErrPathBusy", err)
	}
	pm.Close()

	pc := standbyConf(StandbyFailback)
	pc.PublishKey = "pk"
	h = newTestHub(t, pc)
	if _, err := publishAs(t, h, "live/s", "pk", "", newSource(0, 5)); err != nil {
		t.Fatal(err)
	}
	if _, err := publishAs(t, h, "live/s", "wrong", "role=backup", newSource(1, 5)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("backup with a wrong key: %v, want ErrUnauthorized", err)
	}
	if _, err := publishAs(t, h, "live/s", "pk", "role=spare", newSource(1, 5)); !errors.Is(err, ErrBadRole) {
		t.Fatalf("role=spare: %v, want ErrBadRole", err)
	}
	for i := range maxStandbys {
		if _, err := publishAs(t, h, "live/s", "pk", "role=backup", newSource(uint64(i), 5)); err != nil {
			t.Fatalf("standby %d: %v", i, err)
		}
	}
	if _, err := publishAs(t, h, "live/s", "pk", "role=backup", newSource(9, 5)); !errors.Is(err, ErrPathBusy) {
		t.Fatalf("standby past maxStandbys: %v, want ErrPathBusy", err)
	}
	if n := len(h.Stream("live/s").Stats().Standbys); n != maxStandbys {
		t.Fatalf("%d standbys listed, want %d", n, maxStandbys)
	}
}

// A standby that leaves changes nothing; a main that leaves with no
// standby left starts the grace period as before.
func TestStandbyLeaves(t *testing.T) {
	pc := standbyConf(StandbyTakeover)
	pc.GracePeriod = 0
	h := newTestHub(t, pc)
	var unpublished []string
	h.conf.OnUnpublish = func(path string, _ bool) { unpublished = append(unpublished, path) }
	pm, _ := publishAs(t, h, "live/s", "", "", newSource(0, 5))
	pb, _ := publishAs(t, h, "live/s", "", "", newSource(1, 5))
	pb.Close()
	pb.Write(mkUnit(trackV, 1, true, 0)) // after Close: ignored
	if !h.Stream("live/s").Publishing() || len(h.Stream("live/s").Stats().Standbys) != 0 || len(unpublished) != 0 {
		t.Fatal("a standby leaving changed the stream")
	}
	pm.Close()
	if h.Stream("live/s") != nil || len(unpublished) != 1 {
		t.Fatalf("the main left with no standby: stream %v, unpublished %v", h.Stream("live/s"), unpublished)
	}
}

// The cluster's hooks: a publisher on a path live on another node waits;
// Promote makes it live with its cached GOP; OnStandby hears it.
func TestStandbyLiveElsewhereAndPromote(t *testing.T) {
	pc := standbyConf(StandbyTakeover)
	var events []StandbyEvent
	h := NewHub(HubConfig{PathConfig: func(string) PathConfig { return pc }, Logger: discardLogger(),
		LiveElsewhere: func(p string) bool { return strings.HasPrefix(p, "live/remote") },
		OnStandby:     func(ev StandbyEvent) { events = append(events, ev) }})
	t.Cleanup(h.Close)
	src := newSource(0, 5)
	p, err := publishAs(t, h, "live/remote", "", "", src)
	if err != nil || !p.Standby() {
		t.Fatalf("publisher on a path live elsewhere: %v, standby %v", err, p != nil && p.Standby())
	}
	writeAll(p, src.frames(7))
	if h.Stream("live/remote").Publishing() {
		t.Fatal("the stream is published while its only publisher waits")
	}
	if err := h.Promote("live/nothing"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("Promote of a path with no stream: %v", err)
	}
	if err := h.Promote("live/remote"); err != nil {
		t.Fatal(err)
	}
	if p.Standby() || !h.Stream("live/remote").Publishing() {
		t.Fatal("Promote did not make the standby live")
	}
	r := mustRead(t, h, "live/remote")
	if got := available(t, r); len(got) == 0 || !got[0].KeyFrame || seqOf(got[0]) != 10 {
		t.Fatalf("a reader after Promote starts with %v, want the cached keyframe (seq 10)", got)
	}
	if len(events) != 1 || events[0].Kind != EventPromote || events[0].Path != "live/remote" {
		t.Fatalf("events %+v", events)
	}
	if err := h.Promote("live/remote"); !errors.Is(err, ErrNoStandby) {
		t.Fatalf("Promote with no standby: %v", err)
	}
	// A stream held by a standby alone ends when it leaves.
	p3, err := publishAs(t, h, "live/remote2", "", "", newSource(0, 5))
	if err != nil || !p3.Standby() || h.Stream("live/remote2") == nil {
		t.Fatalf("a standby on another path live elsewhere: %v", err)
	}
	p3.Close()
	if h.Stream("live/remote2") != nil {
		t.Fatal("a stream held by a standby alone outlived it")
	}
	// A path not live elsewhere publishes as usual.
	if p2, err := publishAs(t, h, "live/here", "", "", newSource(0, 5)); err != nil || p2.Standby() {
		t.Fatalf("publisher on a free path: %v", err)
	}
}

// A standby's own writes never take the stream lock except at a keyframe
// of a main that may fail back; concurrent writers, a takeover and stats
// under -race.
func TestStandbyConcurrent(t *testing.T) {
	h := newTestHub(t, standbyConf(StandbyFailback))
	main, backup := newSource(0, 5), newSource(1<<32, 5)
	pm, _ := publishAs(t, h, "live/s", "", "", main)
	pb, _ := publishAs(t, h, "live/s", "", "role=backup", backup)
	r := mustRead(t, h, "live/s")
	mu, bu := main.frames(200), backup.frames(200)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, u := range bu {
			// Its ingest copies its tracks (a new generation): the
			// takeover must not write them from another goroutine.
			gen := *backup.v
			_ = gen
			pb.Write(u)
			if i == 100 {
				pm.Close()
			}
		}
	}()
	for _, u := range mu[:150] {
		pm.Write(u)
		h.Stream("live/s").Stats()
	}
	<-done
	got := available(t, r)
	checkMonotonic(t, got)
	if !h.Stream("live/s").Publishing() || pb.Standby() {
		t.Fatal("the backup is not live at the end")
	}
	if last := got[len(got)-1]; last.Track.Session != backup.v.Session || backup.v.Session == main.v.Session {
		t.Fatalf("Track.Session: last unit %d, backup %d, main %d; want the backup's own number", last.Track.Session, backup.v.Session, main.v.Session)
	}
}

// The session list shows a standby, and kicking it ends only it.
func TestStandbySessions(t *testing.T) {
	h := newTestHub(t, standbyConf(StandbyTakeover))
	publishAs(t, h, "live/s", "", "", newSource(0, 5))
	kicked := make(chan struct{})
	c, err := h.Publish(context.Background(), "live/s", PublishRequest{Peer: Peer{Protocol: "test", Remote: "192.0.2.7:1"}, Kick: func() { close(kicked) }})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := c.Publish(newSource(1, 5).tracks())
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, s := range h.Sessions() {
		if s.Kind == "standby" && s.Remote == "192.0.2.7:1" {
			id = s.ID
		}
	}
	if id == "" {
		t.Fatalf("no standby in the session list %+v", h.Sessions())
	}
	if !h.KickSession(id) {
		t.Fatal("KickSession did not find the standby")
	}
	<-kicked
	if !pb.closed.Load() || len(h.Stream("live/s").Stats().Standbys) != 0 || !h.Stream("live/s").Publishing() {
		t.Fatal("kicking the standby did not end it alone")
	}
}

// A live publisher that stalls (connected, silent past standbyTimeout)
// is replaced by the standby at the standby's next unit and waits itself;
// with failback, a main that resumes takes the path back at its keyframe.
func TestStandbyStalled(t *testing.T) {
	pc := standbyConf(StandbyFailback)
	pc.StandbyTimeout = time.Second
	h := newTestHub(t, pc)
	main, backup := newSource(0, 5), newSource(1<<32, 5)
	pm, _ := publishAs(t, h, "live/s", "", "", main)
	pb, _ := publishAs(t, h, "live/s", "", "role=backup", backup)
	r := mustRead(t, h, "live/s")
	writeAll(pm, main.frames(6))
	writeAll(pb, backup.frames(6))
	if pb.Standby() == false {
		t.Fatal("the backup took over from a main that is not stalled")
	}
	s := h.Stream("live/s")
	s.lastIn.Store(time.Now().Add(-2 * time.Second).UnixNano()) // the main has been silent for 2 s
	writeAll(pb, backup.frames(1))
	if pb.Standby() || !pm.Standby() {
		t.Fatalf("after a stall: backup standby %v, main standby %v; want them swapped", pb.Standby(), pm.Standby())
	}
	got := available(t, r)
	n := 0
	for _, u := range got {
		if from(backup, u) {
			n++
		}
	}
	// The backup's GOP (its frame 5) and the unit that saw the stall (frame 6).
	if n != 4 {
		t.Fatalf("the reader got %d backup units after the stall, want 4", n)
	}
	writeAll(pm, main.frames(4)) // resumes: frames 6..9, keyframe at 10
	if !pm.Standby() {
		t.Fatal("the main took the path back before its keyframe")
	}
	writeAll(pm, main.frames(1))
	if pm.Standby() || !pb.Standby() {
		t.Fatal("the main did not take the path back at its keyframe")
	}
	checkContinuous(t, append(got, available(t, r)...), 100*time.Millisecond)
	if st := s.Stats(); st.Takeovers != 1 || st.Failbacks != 1 {
		t.Fatalf("takeovers %d, failbacks %d", st.Takeovers, st.Failbacks)
	}
}

// The standby settings are checked with their full key.
func TestStandbyConfigValidate(t *testing.T) {
	pc := DefaultPathConfig()
	pc.Standby, pc.StandbyTimeout = "on", 10*time.Millisecond
	errs := pc.Validate("paths.default")
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "paths.default.standby:") || !strings.Contains(errs[1].Error(), "paths.default.standbyTimeout:") {
		t.Fatalf("errors %v", errs)
	}
}

// KickPublisher (a deleted stream, a rotated key) ends the standbys too,
// so none takes over; KickSession of the live one lets a standby take over.
func TestStandbyKick(t *testing.T) {
	h := newTestHub(t, standbyConf(StandbyTakeover))
	pm, _ := publishAs(t, h, "live/s", "", "", newSource(0, 5))
	pb, _ := publishAs(t, h, "live/s", "", "", newSource(1, 5))
	var liveID string
	for _, s := range h.Sessions() {
		if s.Kind == "publisher" {
			liveID = s.ID
		}
	}
	if !h.KickSession(liveID) || !pm.closed.Load() || pb.Standby() || !h.Stream("live/s").Publishing() {
		t.Fatal("KickSession of the live publisher did not hand the path to the standby")
	}
	pc, _ := publishAs(t, h, "live/s", "", "", newSource(2, 5))
	if !pc.Standby() {
		t.Fatal("a third publisher is not a standby")
	}
	if !h.KickPublisher("live/s") {
		t.Fatal("KickPublisher found no publisher")
	}
	if s := h.Stream("live/s"); !pb.closed.Load() || !pc.closed.Load() || (s != nil && s.Publishing()) {
		t.Fatal("KickPublisher left a publisher or let a standby take over")
	}
}
