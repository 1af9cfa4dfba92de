// Package record keeps streams on disk as fMP4 segments, indexes them and
// serves them back (list, download, live rewind).
//
//	server.Hub ──ReadTrusted──▶ pathRec (one per recorded path) ──▶ segWriter ──▶ DIR/live/x/2026-12-04_10-00-00-000000.mp4
//	                                    │ open / close                               ftyp moov free [moof mdat]... (fsync each)
//	                                    └──────────────▶ Index (bbolt: path\0start → end, size, file)
//	GET /api/v1/recordings ─▶ Index.List ─▶ spans;  /get ─▶ scan + remux (pmp4 / fmp4) ─▶ http.ServeContent
//
// A recorder is a trusted hub reader with the original timestamps and every
// track it can carry; a slow disk only makes it skip (the hub drops for it
// like for any slow reader), never slows the live viewers.
package record

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// indexFile is the index's name in the directory.
const indexFile = "index.db"

// gapThreshold starts a new segment when the stream's time or the arrival
// time jumps this far (a publisher gap: the recorder skipped, or the
// publisher stalled).
const gapThreshold = 5 * time.Second

// Recorder records the paths whose paths.*.record is on. It is safe for
// concurrent use.
type Recorder struct {
	conf Config
	hub  *server.Hub
	log  *slog.Logger
	dir  string
	root *os.Root
	idx  SegmentIndex
	now  func() time.Time
	// create makes a segment file (tests: a disk that fills up).
	create func(name string) (segmentFile, error)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	hooks  chan Segment
	sweep  chan struct{}

	mu     sync.Mutex // mu guards active and usage
	active map[string]*pathRec
	// usage is each path's indexed segments: counted from the index by
	// each retention sweep, moved on by each segment closed since.
	usage map[string]pathUsage

	scans scanCache // rewind playlists' file scans

	// counters for /metrics
	segments, bytes, diskFull, writeErrors, deleted, hookFailures atomic.Uint64
	diskUse                                                       atomic.Int64
}

// pathUsage is the disk use of a path's segments.
type pathUsage struct {
	bytes    int64
	segments int
}

// pathRec records one path.
type pathRec struct {
	path  string
	again bool // mu: the path published again while this one was ending
	// attached is set once the first reader attached (run's goroutine only).
	attached bool

	mu      sync.Mutex // mu guards cur, state
	cur     Segment    // the growing segment (zero: none)
	state   string     // "recording", "waiting", "stopped: disk full", ...
	stopped bool
}

// New returns a recorder; Start opens its directory.
func New(c Config, hub *server.Hub, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.Default()
	}
	return &Recorder{conf: c, hub: hub, log: log, now: time.Now, active: map[string]*pathRec{}, usage: map[string]pathUsage{},
		hooks: make(chan Segment, 64), sweep: make(chan struct{}, 1)}
}

// SetHub sets the hub to record from (main makes the recorder before the
// hub, whose OnPublish calls it). Call it before Start.
func (r *Recorder) SetHub(h *server.Hub) { r.hub = h }

// Start opens the directory and the index, indexes the segments a crash
// left behind, and starts the retention and hook workers.
func (r *Recorder) Start() error {
	dir, err := filepath.Abs(r.conf.Directory)
	if err != nil {
		return fmt.Errorf("record: directory %s (record.directory): %w", r.conf.Directory, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("record: directory %s (record.directory): %w", dir, err)
	}
	if r.root, err = os.OpenRoot(dir); err != nil {
		return fmt.Errorf("record: directory %s (record.directory): %w", dir, err)
	}
	r.dir = dir
	idx, err := OpenIndex(filepath.Join(dir, indexFile))
	if err != nil {
		r.root.Close()
		return err
	}
	r.idx = idx
	if r.create == nil {
		r.create = func(name string) (segmentFile, error) {
			if err := r.root.MkdirAll(filepath.Dir(name), 0o750); err != nil {
				return nil, err
			}
			return r.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		}
	}
	n, err := r.recover()
	if err != nil {
		r.log.Warn("record: recovery incomplete", "err", err)
	}
	if n > 0 {
		r.log.Info("record: recovered segments", "count", n)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(2)
	go r.retentionLoop()
	go r.hookLoop()
	return nil
}

// Close stops every recording (their segments are closed and indexed) and
// the workers.
func (r *Recorder) Close() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	r.wg.Wait()
	r.idx.Close()
	r.root.Close()
}

// OnPublish starts recording path if paths.*.record says so. It does not
// block (the hub calls it).
func (r *Recorder) OnPublish(path string, _ bool) {
	if r.ctx == nil || r.ctx.Err() != nil || !r.hub.PathConfig(path).Record {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.active[path]; p != nil {
		p.again = true
		return
	}
	p := &pathRec{path: path, state: "waiting"}
	r.active[path] = p
	r.wg.Add(1)
	go r.run(p)
}

// run records p until its stream ends for good, the disk fills up or the
// recorder closes.
func (r *Recorder) run(p *pathRec) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		if r.active[p.path] == p {
			delete(r.active, p.path)
		}
		r.mu.Unlock()
	}()
	defer guard.Recover(r.log, "record", "path", p.path)
	for {
		err := r.record(p)
		if r.ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		again := p.again && !p.stopped
		p.again = false
		r.mu.Unlock()
		if !again && !errors.Is(err, server.ErrReaderTooSlow) {
			return
		}
	}
}

// record reads p's stream once, from the cached keyframe, until it ends.
func (r *Recorder) record(p *pathRec) error {
	// The first reader starts as far back as the cache reaches (the
	// publisher may have sent a GOP before this goroutine ran); a reader
	// that lagged and comes back starts at the newest keyframe, after
	// what it wrote.
	opts := server.ReadOptions{NoCatchUp: true}
	if !p.attached {
		opts.Backlog = r.hub.PathConfig(p.path).GOPCache.Backlog
		p.attached = true
	}
	rd, err := r.hub.ReadTrusted(r.ctx, p.path, opts)
	if err != nil {
		return err
	}
	defer rd.Close()
	s := &session{r: r, p: p, tracks: rd.Stream().Tracks}
	p.setState("recording")
	buf := make([]*media.Unit, 0, 64)
	for {
		buf, err = rd.NextBatch(r.ctx, buf[:0])
		for _, u := range buf {
			if werr := s.add(u); werr != nil {
				s.closeSegment()
				r.stop(p, werr)
				return werr
			}
		}
		if err != nil {
			s.closeSegment()
			p.setState("waiting")
			return err
		}
	}
}

func (p *pathRec) setState(st string) {
	p.mu.Lock()
	p.state = st
	p.mu.Unlock()
}

// stop ends p's recording after a write error: one log line, a metric.
func (r *Recorder) stop(p *pathRec, err error) {
	r.mu.Lock()
	p.stopped = true
	r.mu.Unlock()
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		r.diskFull.Add(1)
		p.setState("stopped: disk full")
		r.log.Error("record: disk full, recording stopped until the path publishes again (live viewers are not affected)",
			"path", p.path, "dir", r.dir)
		return
	}
	r.writeErrors.Add(1)
	p.setState("stopped: write error")
	r.log.Error("record: write error, recording stopped until the path publishes again", "path", p.path, "err", err)
}

// session is one reader's recording: the growing segment and the time
// line that gives its units wall times.
type session struct {
	r      *Recorder
	p      *pathRec
	tracks func() []*media.Track
	w      *segWriter
	cur    Segment
	// anchor ties stream time to wall time for this publisher: segments
	// of one publish follow each other exactly.
	anchorDTS  time.Duration
	anchorWall time.Time
	anchored   bool
	sess       uint64
	lastDTS    time.Duration
	lastWall   time.Time
}

// add writes u, starting or cutting segments where needed.
func (s *session) add(u *media.Unit) error {
	gap := s.anchored && (u.Track.Session != s.sess || u.DTS-s.lastDTS > gapThreshold || u.DTS < s.lastDTS-gapThreshold ||
		(!u.Wall.IsZero() && !s.lastWall.IsZero() && u.Wall.Sub(s.lastWall) > gapThreshold))
	if gap {
		s.closeSegment()
		s.anchored = false
	}
	s.lastDTS, s.lastWall = u.DTS, u.Wall
	if s.w != nil && !s.w.fits(u) && recordable(u.Track) {
		s.closeSegment() // a codec change or a new track: a new init
	}
	if s.w != nil && u.Track.IsVideo() && u.KeyFrame && s.w.video != nil && s.w.byHub[u.Track.ID] == s.w.video &&
		u.DTS-s.w.startDTS >= s.r.conf.SegmentDuration {
		s.closeSegment()
	}
	if s.w != nil && s.w.video == nil && u.DTS-s.w.startDTS >= s.r.conf.SegmentDuration {
		s.closeSegment()
	}
	if s.w == nil {
		if err := s.open(u); err != nil || s.w == nil {
			return err
		}
	}
	if err := s.w.add(u); err != nil {
		return err
	}
	s.publish()
	return nil
}

// open starts a segment at u when u can start one: a video keyframe, or
// any audio unit of a stream without video.
func (s *session) open(u *media.Unit) error {
	tracks := s.tracks()
	hasVideo := false
	for _, t := range tracks {
		if t.IsVideo() && recordable(t) {
			hasVideo = true
		}
	}
	// The unit's own track may be newer than the stream's list.
	for i, t := range tracks {
		if t.ID == u.Track.ID {
			tracks = append(append([]*media.Track(nil), tracks[:i]...), append([]*media.Track{u.Track}, tracks[i+1:]...)...)
			break
		}
	}
	if !recordable(u.Track) || (hasVideo && (!u.Track.IsVideo() || !u.KeyFrame)) {
		return nil
	}
	if !s.anchored {
		s.anchorDTS, s.anchorWall, s.anchored, s.sess = u.DTS, u.Wall, true, u.Track.Session
		if s.anchorWall.IsZero() {
			s.anchorWall = s.r.now()
		}
	}
	start := s.anchorWall.Add(u.DTS - s.anchorDTS).UTC()
	name := segmentName(s.r.conf.PathFormat, s.p.path, start)
	f, err := s.r.create(name)
	if errors.Is(err, fs.ErrExist) {
		start = start.Add(time.Microsecond)
		name = segmentName(s.r.conf.PathFormat, s.p.path, start)
		f, err = s.r.create(name)
	}
	if err != nil {
		return err
	}
	w, err := newSegWriter(f, name, s.p.path, tracks, u.DTS, start, s.r.conf.FragmentDuration)
	if err != nil {
		f.Close()
		s.r.root.Remove(name) //nolint:errcheck // nothing in it
		if errors.Is(err, errNoTrack) {
			return nil
		}
		return err
	}
	s.w = w
	s.cur = Segment{Path: s.p.path, Start: start, End: start, File: name, Size: w.size, Codecs: w.codecs}
	if err := s.r.idx.Put(s.cur); err != nil {
		s.r.log.Warn("record: index", "path", s.p.path, "err", err)
	}
	s.r.segments.Add(1)
	s.publish()
	return nil
}

// publish shows the growing segment to listings and /metrics.
func (s *session) publish() {
	if s.w == nil {
		return
	}
	grown := s.w.size - s.cur.Size
	s.cur.End, s.cur.Size = s.cur.Start.Add(s.w.mediaEnd), s.w.size
	if grown > 0 {
		s.r.bytes.Add(uint64(grown))
		s.r.diskUse.Add(grown)
	}
	s.p.mu.Lock()
	s.p.cur = s.cur
	s.p.mu.Unlock()
}

// closeSegment finishes the growing segment: the last frames, the
// duration, the index entry; then the hook.
func (s *session) closeSegment() {
	if s.w == nil {
		return
	}
	w := s.w
	s.w = nil
	d, err := w.close()
	if err == nil && d == 0 {
		// Nothing in it (the stream stopped right after a cut): no file.
		s.r.root.Remove(w.name)                 //nolint:errcheck // best effort
		s.r.idx.Delete(s.cur.Path, s.cur.Start) //nolint:errcheck // best effort
		s.r.diskUse.Add(-s.cur.Size)
		s.p.mu.Lock()
		s.p.cur = Segment{}
		s.p.mu.Unlock()
		return
	}
	s.cur.End = s.cur.Start.Add(d)
	grown := w.size - s.cur.Size
	s.cur.Size = w.size
	s.r.bytes.Add(uint64(max(grown, 0)))
	s.r.diskUse.Add(grown)
	s.cur.Complete = err == nil
	if err != nil {
		// A write failed (a full disk): the file may end in a torn
		// fragment. Cut it after the last complete one now, as a restart
		// would, so that it is listed and plays at once.
		if fixed, rerr := s.r.recoverFile(w.name); rerr == nil {
			s.r.diskUse.Add(fixed.Size - s.cur.Size)
			s.cur = fixed
		} else {
			s.r.log.Warn("record: closing a segment", "path", s.p.path, "file", w.name, "err", err)
			if perr := s.r.idx.Put(s.cur); perr != nil {
				s.r.log.Warn("record: index", "path", s.p.path, "err", perr)
			}
		}
	} else if perr := s.r.idx.Put(s.cur); perr != nil {
		s.r.log.Warn("record: index", "path", s.p.path, "err", perr)
	}
	s.r.mu.Lock()
	u := s.r.usage[s.p.path]
	u.bytes += s.cur.Size
	u.segments++
	s.r.usage[s.p.path] = u
	s.r.mu.Unlock()
	s.p.mu.Lock()
	s.p.cur = Segment{}
	s.p.mu.Unlock()
	if s.cur.Complete {
		select {
		case s.r.hooks <- s.cur:
		default:
			s.r.hookFailures.Add(1)
		}
		select {
		case s.r.sweep <- struct{}{}:
		default:
		}
	}
}

// Status is a path's recording state for the API.
type Status struct {
	Recording bool   `json:"recording"`
	State     string `json:"state"`
	// Segment is the growing segment's file, "" when none.
	Segment string `json:"segment,omitempty"`
	// Bytes is the disk space the path's indexed segments take.
	Bytes    int64 `json:"bytes"`
	Segments int   `json:"segments"`
}

// PathStatus returns path's recording state and disk use.
func (r *Recorder) PathStatus(path string) Status {
	var st Status
	if r.idx == nil {
		return st
	}
	r.mu.Lock()
	p := r.active[path]
	r.mu.Unlock()
	if p != nil {
		p.mu.Lock()
		st.State, st.Segment = p.state, p.cur.File
		st.Recording = p.state == "recording"
		p.mu.Unlock()
	} else {
		st.State = "off"
		if r.hub.PathConfig(path).Record {
			st.State = "idle"
		}
	}
	r.mu.Lock()
	u := r.usage[path]
	r.mu.Unlock()
	st.Bytes, st.Segments = u.bytes, u.segments
	if live, ok := r.live(path); ok {
		st.Bytes += live.Size
		st.Segments++
	}
	return st
}

// live returns the growing segment of path, false if none.
func (r *Recorder) live(path string) (Segment, bool) {
	r.mu.Lock()
	p := r.active[path]
	r.mu.Unlock()
	if p == nil {
		return Segment{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur, p.cur.File != ""
}

// retentionLoop deletes what maxAge and diskBudget say must go, every
// 30 s and after each completed segment.
func (r *Recorder) retentionLoop() {
	defer r.wg.Done()
	defer guard.Recover(r.log, "record retention")
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	r.enforceRetention()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		case <-r.sweep:
		}
		r.enforceRetention()
	}
}

// enforceRetention deletes complete segments older than maxAge, then the
// oldest ones while the recordings take more than diskBudget. A growing
// segment is never deleted.
func (r *Recorder) enforceRetention() {
	var all []Segment
	var total int64
	r.idx.All(func(s Segment) bool { //nolint:errcheck // a failed read deletes nothing
		all = append(all, s)
		total += s.Size
		return true
	})
	r.diskUse.Store(total)
	usage := map[string]pathUsage{}
	defer func() {
		r.mu.Lock()
		r.usage = usage
		r.mu.Unlock()
	}()
	growing := map[string]bool{}
	r.mu.Lock()
	for _, p := range r.active {
		p.mu.Lock()
		if p.cur.File != "" {
			growing[p.cur.File] = true
		}
		p.mu.Unlock()
	}
	r.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].Start.Before(all[j].Start) })
	now := r.now()
	for _, s := range all {
		keep := func() {
			if !growing[s.File] {
				u := usage[s.Path]
				u.bytes += s.Size
				u.segments++
				usage[s.Path] = u
			}
		}
		if growing[s.File] {
			continue
		}
		old := r.conf.MaxAge > 0 && now.Sub(s.End) > r.conf.MaxAge
		over := r.conf.DiskBudget > 0 && total > int64(r.conf.DiskBudget)
		if !old && !over {
			keep()
			continue
		}
		if err := r.deleteSegment(s); err != nil {
			r.log.Warn("record: retention", "file", s.File, "err", err)
			keep()
			continue
		}
		total -= s.Size
	}
	r.diskUse.Store(total)
}

// deleteSegment removes a segment's file and index entry, and the
// directories it leaves empty.
func (r *Recorder) deleteSegment(s Segment) error {
	if err := r.root.Remove(s.File); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := r.idx.Delete(s.Path, s.Start); err != nil {
		return err
	}
	r.deleted.Add(1)
	for d := filepath.Dir(s.File); d != "." && d != "/"; d = filepath.Dir(d) {
		if r.root.Remove(d) != nil { // not empty
			break
		}
	}
	return nil
}

// recover indexes the segments on disk that the index lacks or holds as
// incomplete (a crash): it reads each to its last complete fragment, cuts
// off what follows, writes the duration and indexes it. It returns how
// many it indexed.
func (r *Recorder) recover() (int, error) {
	known := map[string]Segment{}
	if err := r.idx.All(func(s Segment) bool { known[s.File] = s; return true }); err != nil {
		return 0, err
	}
	n := 0
	err := fs.WalkDir(r.root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(name, ".mp4") {
			return nil
		}
		if s, ok := known[name]; ok && s.Complete {
			return nil
		}
		if _, err := r.recoverFile(name); err != nil {
			r.log.Warn("record: a file in the recordings directory is not a readable segment; left alone", "file", name, "err", err)
			return nil
		}
		n++
		return nil
	})
	return n, err
}

// recoverFile cuts a segment file after its last complete fragment,
// writes its duration and indexes it as complete (and returns that entry),
// or deletes it when it has no complete fragment.
func (r *Recorder) recoverFile(name string) (Segment, error) {
	f, err := r.root.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return Segment{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Segment{}, err
	}
	fi, err := scan(f, st.Size())
	if err != nil {
		return Segment{}, err
	}
	if server.ValidatePath(fi.path) != nil {
		return Segment{}, fmt.Errorf("%w: bad path in the meta box", errBadFile)
	}
	d := fi.duration()
	if len(fi.frags) == 0 || d == 0 {
		// A crash right after the header: nothing to play.
		f.Close()
		if err := r.root.Remove(name); err != nil {
			return Segment{}, err
		}
		return Segment{}, r.idx.Delete(fi.path, fi.start)
	}
	if fi.end < st.Size() {
		if err := f.Truncate(fi.end); err != nil {
			return Segment{}, err
		}
	}
	if fi.mvhdDurOff > 0 {
		var b [4]byte
		ms := uint32(min(d.Milliseconds(), 1<<32-1))
		b[0], b[1], b[2], b[3] = byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
		if _, err := f.WriteAt(b[:], fi.mvhdDurOff); err != nil {
			return Segment{}, err
		}
	}
	if err := f.Sync(); err != nil {
		return Segment{}, err
	}
	var codecs []string
	for _, t := range fi.tracks {
		codecs = append(codecs, t.codec)
	}
	seg := Segment{Path: fi.path, Start: fi.start, End: fi.start.Add(d), File: name, Size: fi.end,
		Codecs: strings.Join(codecs, ","), Complete: true}
	return seg, r.idx.Put(seg)
}
