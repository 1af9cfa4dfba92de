package record

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/pmp4"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// testRig is a hub with one recorder on a temp directory.
type testRig struct {
	t   *testing.T
	hub *server.Hub
	rec *Recorder
	dir string
}

func testConf(dir string) Config {
	c := DefaultConfig()
	c.Directory = dir
	c.SegmentDuration = 2 * time.Second
	c.FragmentDuration = 500 * time.Millisecond
	return c
}

func newRig(t *testing.T, c Config, pc func(server.PathConfig) server.PathConfig, create func(string) (segmentFile, error)) *testRig {
	t.Helper()
	rig := &testRig{t: t, dir: c.Directory}
	rig.rec = New(c, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rig.rec.create = create
	rig.hub = server.NewHub(server.HubConfig{
		PathConfig: func(string) server.PathConfig {
			p := server.DefaultPathConfig()
			p.Record = true
			p.ReaderQueue = 1 << 16
			p.GracePeriod = 2 * time.Second
			if pc != nil {
				p = pc(p)
			}
			return p
		},
		OnPublish: func(path string, derived bool) { rig.rec.OnPublish(path, derived) },
	})
	rig.rec.SetHub(rig.hub)
	if err := rig.rec.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rig.hub.Close(); rig.rec.Close() })
	return rig
}

// synth makes H264 (25 fps, a keyframe each second) and AAC (44.1 kHz)
// units on a virtual clock.
type synth struct {
	v, a   *media.Track
	vi, ai int
	off    time.Duration
	wall0  time.Time
}

func newSynth() *synth {
	return &synth{
		v:     &media.Track{ID: 0, Codec: media.CodecH264, SPS: testfixtures.H264SPS, PPS: testfixtures.H264PPS},
		a:     &media.Track{ID: 1, Codec: media.CodecAAC, AudioConfig: []byte{0x12, 0x10}, SampleRate: 44100, Channels: 2},
		wall0: time.Now().Add(-time.Hour),
	}
}

func (s *synth) tracks() []*media.Track { return []*media.Track{s.v, s.a} }

func (s *synth) vdts(i int) time.Duration { return s.off + time.Duration(i)*40*time.Millisecond }
func (s *synth) adts(i int) time.Duration { return s.off + time.Duration(i)*1024*time.Second/44100 }

// feed writes units until the video reaches end (stream time from off).
func (s *synth) feed(p *server.Publisher, end time.Duration) {
	for s.vdts(s.vi) < s.off+end {
		if s.adts(s.ai) < s.vdts(s.vi) {
			d := s.adts(s.ai)
			p.Write(&media.Unit{Track: s.a, DTS: d, PTS: d, KeyFrame: true, Payload: [][]byte{bytes.Repeat([]byte{0x21}, 200)}, Wall: s.wall0.Add(d)})
			s.ai++
			continue
		}
		d := s.vdts(s.vi)
		key := s.vi%25 == 0
		pl := [][]byte{{0x41, 0x9a, byte(s.vi)}, bytes.Repeat([]byte{1}, 1000)}
		if key {
			pl = [][]byte{s.v.SPS, s.v.PPS, {0x65, 0x88, byte(s.vi)}, bytes.Repeat([]byte{2}, 3000)}
		}
		p.Write(&media.Unit{Track: s.v, DTS: d, PTS: d, KeyFrame: key, Payload: pl, Wall: s.wall0.Add(d)})
		s.vi++
		if s.vi%50 == 0 {
			time.Sleep(2 * time.Millisecond) // let the recorder keep up
		}
	}
}

// waitReader waits until the recorder reads p's stream (a publisher
// from the network sends its first units after that; this one writes
// seconds of media at once).
func waitReader(t *testing.T, p *server.Publisher, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.Stream().ReaderCount() < n {
		if time.Now().After(deadline) {
			t.Fatal("the recorder did not attach")
		}
		time.Sleep(time.Millisecond)
	}
}

// waitIdle waits until nothing is recorded any more.
func (rig *testRig) waitIdle() {
	rig.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		rig.rec.mu.Lock()
		n := len(rig.rec.active)
		rig.rec.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	rig.t.Fatal("the recorder did not finish")
}

func (rig *testRig) list(path string) []Segment {
	rig.t.Helper()
	segs, err := rig.rec.idx.List(path, time.Unix(0, 0), time.Unix(1<<40, 0), 0)
	if err != nil {
		rig.t.Fatal(err)
	}
	return segs
}

// publishFor publishes s on path for d and leaves.
func (rig *testRig) publishFor(path string, s *synth, d time.Duration) {
	rig.t.Helper()
	p, err := rig.hub.PublishTrusted(path, s.tracks(), server.PublishOptions{})
	if err != nil {
		rig.t.Fatal(err)
	}
	waitReader(rig.t, p, 1)
	s.feed(p, d)
	p.Close()
}

func TestRecordSegmentsContiguousAndGetAcrossBoundary(t *testing.T) {
	rig := newRig(t, testConf(t.TempDir()), func(p server.PathConfig) server.PathConfig { p.GracePeriod = 0; return p }, nil)
	s := newSynth()
	rig.publishFor("live/a", s, 7*time.Second)
	rig.waitIdle()
	segs := rig.list("live/a")
	if len(segs) != 4 { // cut at the keyframes at 2 s, 4 s and 6 s
		t.Fatalf("got %d segments, want 4: %+v", len(segs), segs)
	}
	var total time.Duration
	for i, sg := range segs {
		if !sg.Complete || sg.Size == 0 || !strings.HasPrefix(sg.File, "live/a/") || sg.Codecs != "H264,AAC" {
			t.Fatalf("segment %d: %+v", i, sg)
		}
		if i > 0 && sg.Start.Sub(segs[i-1].End).Abs() > 25*time.Millisecond {
			t.Fatalf("segment %d starts at %s, the one before ended at %s", i, sg.Start, segs[i-1].End)
		}
		f, err := os.Open(filepath.Join(rig.dir, sg.File))
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		fi, err := scan(f, st.Size())
		f.Close()
		if err != nil || fi.end != st.Size() || fi.path != "live/a" || !fi.start.Equal(sg.Start) {
			t.Fatalf("segment %d scans as %+v, %v (size %d)", i, fi, err, st.Size())
		}
		total += sg.Duration()
	}
	if total < 6900*time.Millisecond || total > 7100*time.Millisecond {
		t.Fatalf("recorded %s, want 7s", total)
	}
	var size int64
	for _, sg := range segs {
		size += sg.Size
	}
	if st := rig.rec.PathStatus("live/a"); st.Segments != 4 || st.Bytes != size || st.Recording || st.State != "idle" {
		t.Fatalf("status %+v, want 4 segments of %d bytes, idle", st, size)
	}

	// One file from 1 s to 4 s: across the boundaries at 2 s and 4 s.
	var buf bytes.Buffer
	got, err := rig.rec.export(&buf, "live/a", segs[0].Start.Add(time.Second), 3*time.Second, "mp4")
	if err != nil {
		t.Fatal(err)
	}
	if got < 3*time.Second-40*time.Millisecond || got > 3*time.Second+40*time.Millisecond {
		t.Fatalf("export lasts %s, want 3s ± a frame", got)
	}
	var pres pmp4.Presentation
	if err := pres.Unmarshal(bytes.NewReader(bytes.Clone(buf.Bytes()))); err != nil { // buf is reused below
		t.Fatal(err)
	}
	if len(pres.Tracks) != 2 {
		t.Fatalf("%d tracks", len(pres.Tracks))
	}
	vt := pres.Tracks[0]
	if n := len(vt.Samples); n < 74 || n > 76 {
		t.Fatalf("%d video samples, want 75", n)
	}
	for i, sm := range vt.Samples {
		if sm.Duration != 3600 && i != len(vt.Samples)-1 {
			t.Fatalf("video sample %d lasts %d ticks: timestamps not continuous", i, sm.Duration)
		}
	}
	if vt.Samples[0].IsNonSyncSample {
		t.Fatal("the export does not start at a keyframe")
	}
	// fmp4 too.
	buf.Reset()
	if _, err := rig.rec.export(&buf, "live/a", segs[0].Start.Add(time.Second), 3*time.Second, "fmp4"); err != nil {
		t.Fatal(err)
	}
	var in fmp4.Init
	rd := bytes.NewReader(buf.Bytes())
	if err := in.Unmarshal(rd); err != nil {
		t.Fatal(err)
	}
	initLen := mvhdDurOffset(buf.Bytes()) // > 0: the init is there
	moof := bytes.Index(buf.Bytes(), []byte("moof"))
	var parts fmp4.Parts
	if initLen == 0 || moof < 8 || parts.Unmarshal(buf.Bytes()[moof-4:]) != nil {
		t.Fatal("the fmp4 export does not parse")
	}
	nv, first := 0, []byte(nil)
	for _, p := range parts {
		for _, pt := range p.Tracks {
			if pt.ID == 1 {
				nv += len(pt.Samples)
				if first == nil {
					first = pt.Samples[0].Payload
				}
			}
		}
	}
	want, _ := vt.Samples[0].GetPayload()
	if nv != len(vt.Samples) || !bytes.Equal(first, want) {
		t.Fatalf("fmp4 export: %d video samples (mp4: %d), first payload equal: %v (%d %x / %d %x)", nv, len(vt.Samples), bytes.Equal(first, want), len(first), first[:min(16, len(first))], len(want), want[:min(16, len(want))])
	}
	if _, err := rig.rec.export(io.Discard, "live/a", segs[3].End.Add(time.Minute), time.Second, "mp4"); err != ErrNoRecording {
		t.Fatalf("an export past the recording: %v", err)
	}
}

func TestRecordRepublishAndCodecChangeStartSegments(t *testing.T) {
	c := testConf(t.TempDir())
	c.SegmentDuration = time.Hour
	rig := newRig(t, c, nil, nil)
	s := newSynth()
	p, err := rig.hub.PublishTrusted("live/b", s.tracks(), server.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitReader(t, p, 1)
	s.feed(p, 2*time.Second)
	// A codec change at a keyframe.
	nv := *s.v
	nv.SPS = testfixtures.H264SPS2
	p.UpdateTrack(&nv)
	s.v = p.Stream().Tracks()[0]
	s.off, s.vi, s.ai = s.vdts(s.vi), 0, 0
	s.feed(p, 2*time.Second)
	p.Close()
	// A republish within the grace period.
	s2 := newSynth()
	s2.wall0 = s.wall0.Add(s.vdts(s.vi) + time.Second)
	p2, err := rig.hub.PublishTrusted("live/b", s2.tracks(), server.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s2.feed(p2, 2*time.Second)
	p2.Close()
	rig.hub.Close()
	rig.waitIdle()
	segs := rig.list("live/b")
	if len(segs) != 3 {
		t.Fatalf("got %d segments, want 3 (start, codec change, republish): %+v", len(segs), segs)
	}
	for i, sg := range segs {
		if d := sg.Duration(); d < 1900*time.Millisecond || d > 2100*time.Millisecond {
			t.Fatalf("segment %d lasts %s, want 2s", i, d)
		}
	}
}

func TestRecordCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	rig := newRig(t, testConf(dir), func(p server.PathConfig) server.PathConfig { p.GracePeriod = 0; return p }, nil)
	s := newSynth()
	c := testConf(dir)
	c.SegmentDuration = time.Hour
	rig.rec.conf.SegmentDuration = time.Hour
	rig.publishFor("live/c", s, 3*time.Second)
	rig.waitIdle()
	segs := rig.list("live/c")
	rig.hub.Close()
	rig.rec.Close()
	if len(segs) != 1 {
		t.Fatalf("%d segments", len(segs))
	}
	want := segs[0]
	// What a kill -9 leaves: a fragment cut short and an index that
	// knows nothing of the file.
	name := filepath.Join(dir, want.File)
	st, _ := os.Stat(name)
	f, _ := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0, 0, 0x10, 0, 'm', 'o', 'o', 'f', 1, 2, 3})
	f.Close()
	idx, err := OpenIndex(filepath.Join(dir, indexFile))
	if err != nil {
		t.Fatal(err)
	}
	idx.Delete("live/c", want.Start)
	idx.Close()

	rig2 := newRig(t, c, nil, nil)
	got := rig2.list("live/c")
	if len(got) != 1 || !got[0].Complete || !got[0].Start.Equal(want.Start) || got[0].End.Sub(want.End).Abs() > time.Millisecond || got[0].Size != st.Size() {
		t.Fatalf("recovered %+v, want %+v", got, want)
	}
	if st2, _ := os.Stat(name); st2.Size() != st.Size() {
		t.Fatalf("the torn fragment was not cut off: %d bytes, want %d", st2.Size(), st.Size())
	}
}

func TestRetentionByAgeAndBudget(t *testing.T) {
	dir := t.TempDir()
	c := testConf(dir)
	rig := newRig(t, c, nil, nil)
	rig.rec.cancel() // no sweeps of its own while the test changes the config
	rig.rec.wg.Wait()
	now := time.Now().UTC()
	put := func(path string, age time.Duration, size int) Segment {
		s := Segment{Path: path, Start: now.Add(-age), End: now.Add(-age + time.Minute), File: path + "/" + now.Add(-age).Format("150405.000000") + ".mp4",
			Size: int64(size), Complete: true}
		os.MkdirAll(filepath.Join(dir, path), 0o750)
		os.WriteFile(filepath.Join(dir, s.File), make([]byte, size), 0o600)
		rig.rec.idx.Put(s)
		return s
	}
	old := put("live/x", 3*time.Hour, 1000)
	mid := put("live/y", 2*time.Hour, 1000)
	fresh := put("live/x", time.Hour, 1000)
	rig.rec.conf.MaxAge = 150 * time.Minute
	rig.rec.enforceRetention()
	if _, err := os.Stat(filepath.Join(dir, old.File)); err == nil {
		t.Fatal("maxAge kept an old segment")
	}
	if n := len(rig.list("live/x")); n != 1 {
		t.Fatalf("%d segments of live/x left, want 1", n)
	}
	rig.rec.conf.MaxAge = 0
	rig.rec.conf.DiskBudget = 1500
	rig.rec.enforceRetention()
	if _, err := os.Stat(filepath.Join(dir, mid.File)); err == nil {
		t.Fatal("the budget kept the oldest segment")
	}
	if _, err := os.Stat(filepath.Join(dir, fresh.File)); err != nil {
		t.Fatal("the budget deleted the newest segment")
	}
	if _, err := os.Stat(filepath.Join(dir, "live/y")); err == nil {
		t.Fatal("an empty directory was left")
	}
	if rig.rec.diskUse.Load() != 1000 || rig.rec.deleted.Load() != 2 {
		t.Fatalf("disk use %d, deleted %d", rig.rec.diskUse.Load(), rig.rec.deleted.Load())
	}
}

// fullFile fails with ENOSPC once room bytes are written.
type fullFile struct {
	*os.File
	room *atomic.Int64
}

func (f fullFile) Write(b []byte) (int, error) {
	if left := f.room.Add(-int64(len(b))); left < 0 {
		// What fitted is written: the fragment is torn.
		n, _ := f.File.Write(b[:max(0, int64(len(b))+left)])
		f.room.Store(0)
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Write(b)
}

func TestDiskFullStopsRecordingNotViewers(t *testing.T) {
	dir := t.TempDir()
	var room atomic.Int64
	room.Store(40 << 10)
	rig := newRig(t, testConf(dir), nil, func(name string) (segmentFile, error) {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o750)
		f, err := os.Create(filepath.Join(dir, name))
		return fullFile{f, &room}, err
	})
	s := newSynth()
	p, err := rig.hub.PublishTrusted("live/d", s.tracks(), server.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := rig.hub.ReadTrusted(context.Background(), "live/d", server.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitReader(t, p, 2)
	defer viewer.Close()
	s.feed(p, 4*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for rig.rec.diskFull.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if rig.rec.diskFull.Load() != 1 {
		t.Fatal("a full disk was not counted")
	}
	// The segment the full disk cut is listed, complete, and scans to its
	// end (the torn fragment cut off at once).
	var segs []Segment
	for time.Now().Before(deadline) {
		if segs = rig.list("live/d"); len(segs) > 0 && segs[len(segs)-1].Complete {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(segs) == 0 || !segs[len(segs)-1].Complete || segs[len(segs)-1].Codecs != "H264,AAC" {
		t.Fatalf("after the full disk: %+v", segs)
	}
	last := segs[len(segs)-1]
	f, _ := os.Open(filepath.Join(dir, last.File))
	st, _ := f.Stat()
	fi, err := scan(f, st.Size())
	f.Close()
	if err != nil || fi.end != st.Size() || len(fi.frags) == 0 || st.Size() != last.Size {
		t.Fatalf("the cut segment: %v, scanned to %d of %d bytes (index: %d)", err, fi.end, st.Size(), last.Size)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n := 0
	for n < 100 {
		b, err := viewer.NextBatch(ctx, nil)
		if err != nil {
			t.Fatalf("the viewer after %d units: %v", n, err)
		}
		n += len(b)
	}
	p.Close()
}

func TestHTTPAuthorizationRangesAndBadInput(t *testing.T) {
	rig := newRig(t, testConf(t.TempDir()), func(p server.PathConfig) server.PathConfig {
		p.GracePeriod = 0
		p.ReadKey = "sesame"
		p.RewindWindow = 2 * time.Hour // the synthetic stream is an hour old
		return p
	}, nil)
	rig.publishFor("live/e", newSynth(), 3*time.Second)
	rig.waitIdle()
	segs := rig.list("live/e")
	srv := httptest.NewServer(rig.rec)
	defer srv.Close()
	get := func(u string, hdr ...string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+u, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	start := segs[0].Start.Format(time.RFC3339Nano)
	for _, u := range []string{ListPath + "?path=live/e", GetPath + "?path=live/e&start=" + start + "&duration=2s",
		ListPath + "?path=live/e&key=wrong"} {
		if resp := get(u); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s without the key: %s", u, resp.Status)
		}
	}
	resp := get(ListPath + "?path=live/e&key=sesame")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"spans":[{`) || !strings.Contains(string(body), "key=sesame") {
		t.Fatalf("list: %s %s", resp.Status, body)
	}
	resp = get(GetPath+"?path=live/e&key=sesame&start="+start+"&duration=2s", "Range", "bytes=100-199")
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || len(body) != 100 {
		t.Fatalf("range: %s, %d bytes", resp.Status, len(body))
	}
	// A server's whole-response deadlines are made for live requests: a
	// download lifts them (every write has its own).
	short := httptest.NewUnstartedServer(rig.rec)
	short.Config.WriteTimeout = time.Millisecond
	short.Start()
	defer short.Close()
	resp, err := http.Get(short.URL + GetPath + "?path=live/e&key=sesame&start=" + start + "&duration=2s")
	if err != nil {
		t.Fatalf("a download under a 1 ms server write timeout: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || int64(len(body)) != resp.ContentLength || len(body) < 1000 {
		t.Fatalf("a download under a 1 ms server write timeout: %s, %d bytes", resp.Status, len(body))
	}
	for _, u := range []string{
		ListPath + "?path=../etc&key=sesame",
		ListPath + "?path=live/e&key=sesame&start=2030-01-01T00:00:00Z&end=2020-01-01T00:00:00Z",
		GetPath + "?path=live/e&key=sesame&start=" + start + "&duration=1000h",
		GetPath + "?path=live/e&key=sesame&start=" + start + "&duration=-1s",
		GetPath + "?path=live/e&key=sesame&start=nope&duration=1s",
		GetPath + "?path=live/e&key=sesame&start=" + start + "&duration=1s&format=avi",
	} {
		if resp := get(u); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: %s, want 400", u, resp.Status)
		}
	}
	if resp := get(GetPath + "?path=live/e&key=sesame&start=2001-01-01T00:00:00Z&duration=1s"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("nothing recorded: %s", resp.Status)
	}

	// Rewind: a playlist into the files, and the files with ranges.
	for _, u := range []string{RewindPath + "?path=live/e", SegmentPath + "?path=live/e&start=" + strconv.FormatInt(segs[0].Start.UnixNano(), 10)} {
		if resp := get(u); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s without the key: %s", u, resp.Status)
		}
	}
	resp = get(RewindPath + "?path=live/e&key=sesame")
	body, _ = io.ReadAll(resp.Body)
	pl := string(body)
	if resp.StatusCode != 200 || !strings.Contains(pl, "#EXT-X-MAP:URI=") || !strings.HasSuffix(pl, "#EXT-X-ENDLIST\n") ||
		strings.Count(pl, "#EXT-X-DISCONTINUITY\n") != len(segs)-1 {
		t.Fatalf("rewind playlist: %s\n%s", resp.Status, pl)
	}
	var total float64
	lines := strings.Split(pl, "\n")
	for i, l := range lines {
		if v, ok := strings.CutPrefix(l, "#EXTINF:"); ok {
			f, _ := strconv.ParseFloat(strings.TrimSuffix(v, ","), 64)
			total += f
			br := strings.TrimPrefix(lines[i+1], "#EXT-X-BYTERANGE:")
			n, off, _ := strings.Cut(br, "@")
			ni, _ := strconv.Atoi(n)
			oi, _ := strconv.Atoi(off)
			r := get(lines[i+2], "Range", fmt.Sprintf("bytes=%d-%d", oi, oi+ni-1))
			b, _ := io.ReadAll(r.Body)
			if r.StatusCode != http.StatusPartialContent || len(b) != ni || string(b[4:8]) != "moof" {
				t.Fatalf("%s %s: %s, %d bytes", lines[i+2], br, r.Status, len(b))
			}
		}
	}
	if total < 2.9 || total > 3.1 {
		t.Fatalf("the rewind playlist lasts %.3f s, want 3", total)
	}
	if resp := get(RewindPath + "?path=live/e&key=sesame&from=2001-01-01T00:00:00Z"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("from before the window: %s", resp.Status)
	}
}

func TestPathFormat(t *testing.T) {
	for _, f := range []string{"%path/%Y", "/abs/%path/%Y-%m-%d_%H-%M-%S", "../%path/%Y-%m-%d_%H-%M-%S", "%path/../%Y-%m-%d_%H-%M-%S"} {
		if checkPathFormat(f) == nil {
			t.Errorf("%q accepted", f)
		}
	}
	if err := checkPathFormat(DefaultConfig().PathFormat); err != nil {
		t.Fatal(err)
	}
	got := segmentName(DefaultConfig().PathFormat, "live/x", time.Date(2026, 12, 4, 10, 1, 2, 3004000, time.UTC))
	if got != "live/x/2026-12-04_10-01-02-003004.mp4" {
		t.Fatal(got)
	}
}

// TestExportFileChangedUnderIndex: a segment truncated, or replaced by
// something else, under the index: /get gives what is still there, or a
// clear error, never a crash.
func TestExportFileChangedUnderIndex(t *testing.T) {
	rig := newRig(t, testConf(t.TempDir()), func(p server.PathConfig) server.PathConfig { p.GracePeriod = 0; return p }, nil)
	rig.publishFor("live/f", newSynth(), 5*time.Second)
	rig.waitIdle()
	segs := rig.list("live/f")
	if len(segs) != 3 {
		t.Fatalf("%d segments", len(segs))
	}
	// The middle one loses its second half; the last one is garbage.
	mid := filepath.Join(rig.dir, segs[1].File)
	if err := os.Truncate(mid, segs[1].Size/2); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(rig.dir, segs[2].File), []byte("not a segment"), 0o600)
	var buf bytes.Buffer
	got, err := rig.rec.export(&buf, "live/f", segs[0].Start, 5*time.Second, "mp4")
	if err != nil {
		t.Fatal(err)
	}
	if got < 2*time.Second || got >= 4*time.Second {
		t.Fatalf("export of a truncated recording lasts %s: want the first segment and part of the second", got)
	}
	var pres pmp4.Presentation
	if err := pres.Unmarshal(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	// Only garbage: a clear error.
	os.WriteFile(filepath.Join(rig.dir, segs[0].File), []byte("x"), 0o600)
	if _, err := rig.rec.export(io.Discard, "live/f", segs[0].Start, time.Second, "mp4"); err == nil {
		t.Fatal("an export of garbage succeeded")
	}
}

func TestSegmentCompleteHook(t *testing.T) {
	posted := make(chan hookBody, 8)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b hookBody
		if err := json.NewDecoder(r.Body).Decode(&b); err == nil && r.Method == http.MethodPost {
			posted <- b
		}
	}))
	defer hs.Close()
	out := t.TempDir()
	c := testConf(t.TempDir())
	// An argv, no shell: the quotes and the semicolon reach cp as they are.
	c.OnSegmentComplete = HookConfig{Command: []string{"cp", "{file}", filepath.Join(out, "{duration}';x")}, URL: hs.URL, Timeout: 10 * time.Second}
	rig := newRig(t, c, func(p server.PathConfig) server.PathConfig { p.GracePeriod = 0; return p }, nil)
	rig.publishFor("live/h", newSynth(), 3*time.Second)
	rig.waitIdle()
	var got []hookBody
	for len(got) < 2 {
		select {
		case b := <-posted:
			got = append(got, b)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d hook POSTs, want 2", len(got))
		}
	}
	if got[0].Path != "live/h" || !strings.HasPrefix(got[0].File, rig.dir) || got[0].Size == 0 || got[0].Duration < 1.9 {
		t.Fatalf("hook body %+v", got[0])
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ents, _ := os.ReadDir(out)
		if len(ents) == 2 && strings.HasSuffix(ents[0].Name(), "';x") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command's copies: %v", ents)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRecoveryDeletesHeaderOnlySegment: a crash right after a cut leaves
// a file with its header and no fragment; the restart deletes it.
func TestRecoveryDeletesHeaderOnlySegment(t *testing.T) {
	dir := t.TempDir()
	seg := sampleSegment(t)
	hdr := seg[:bytes.Index(seg, []byte("moof"))-4]
	os.MkdirAll(filepath.Join(dir, "live/z"), 0o750)
	os.WriteFile(filepath.Join(dir, "live/z/a.mp4"), hdr, 0o600)
	os.WriteFile(filepath.Join(dir, "live/z/b.mp4"), seg, 0o600)
	os.WriteFile(filepath.Join(dir, "live/z/c.mp4"), []byte("not a segment"), 0o600)
	rig := newRig(t, testConf(dir), nil, nil)
	if _, err := os.Stat(filepath.Join(dir, "live/z/a.mp4")); err == nil {
		t.Fatal("the header-only file was kept")
	}
	if _, err := os.Stat(filepath.Join(dir, "live/z/c.mp4")); err != nil {
		t.Fatal("a file that is not a segment was touched")
	}
	got := rig.list("live/x") // sampleSegment's path
	if len(got) != 1 || got[0].File != "live/z/b.mp4" || got[0].Duration() != 800*time.Millisecond {
		t.Fatalf("recovered %+v", got)
	}
}
