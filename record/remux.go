package record

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/pmp4"
)

// Errors of an export.
var (
	// ErrNoRecording is returned when nothing was recorded in the range.
	ErrNoRecording = errors.New("record: nothing recorded on this path in this time range")
	// ErrTooLarge is returned for an MP4 past 4 GiB (32-bit chunk offsets).
	ErrTooLarge = errors.New("record: the file would be too large (mp4: 4 GiB, fmp4: 16 GiB): ask for a shorter duration, or format=fmp4")
)

// maxMP4Bytes keeps a plain MP4's chunk offsets (32-bit in pmp4) valid.
const maxMP4Bytes = 4<<30 - 64<<20

// maxExportBytes bounds any export (it is built in a temporary file).
const maxExportBytes = 16 << 30

// segments returns path's segments overlapping [from, to), the growing
// one with its current end.
func (r *Recorder) overlapping(path string, from, to time.Time, limit int) ([]Segment, error) {
	segs, err := r.idx.List(path, from, to, limit)
	if err != nil {
		return nil, err
	}
	live, ok := r.live(path)
	if !ok {
		return segs, nil
	}
	found := false
	for i := range segs {
		if segs[i].File == live.File {
			segs[i], found = live, true
		}
	}
	if !found && live.Start.Before(to) && live.End.After(from) && (len(segs) == 0 || segs[0].Start.After(live.Start)) {
		segs = append([]Segment{live}, segs...)
	}
	return segs, nil
}

// outSample is a sample of the export, timed on its timeline.
type outSample struct {
	dts  int64
	dur  uint32
	cto  int32
	sync bool
	off  int64
	size uint32
	f    *os.File
}

type outTrack struct {
	init    *fmp4.InitTrack
	video   bool
	samples []outSample
}

// export writes the media of path from start for dur to w as one MP4
// (format "mp4") or fragmented MP4 ("fmp4"), remuxed from the segments,
// never re-encoded. It starts at the keyframe at or before start and
// stops at the first segment whose tracks differ from the first's (a
// codec change). It returns the duration written.
func (r *Recorder) export(w io.Writer, path string, start time.Time, dur time.Duration, format string) (time.Duration, error) {
	segs, err := r.overlapping(path, start, start.Add(dur), 0)
	if err != nil {
		return 0, err
	}
	var (
		tracks  []*outTrack
		initRaw []byte
		files   []*os.File
	)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, sg := range segs {
		f, err := r.root.Open(sg.File)
		if err != nil {
			if len(tracks) == 0 {
				continue
			}
			break // a hole where a file went: stop there
		}
		files = append(files, f)
		st, err := f.Stat()
		if err != nil {
			break
		}
		fi, err := scan(f, st.Size())
		if err != nil {
			break
		}
		raw := make([]byte, fi.initEnd)
		if _, err := f.ReadAt(raw, 0); err != nil {
			break
		}
		if tracks == nil {
			var in fmp4.Init
			if err := in.Unmarshal(bytes.NewReader(raw)); err != nil {
				return 0, fmt.Errorf("record: %s: %w", sg.File, err)
			}
			for _, t := range in.Tracks {
				tracks = append(tracks, &outTrack{init: t, video: t.Codec.IsVideo()})
			}
			initRaw = raw
		} else if !sameInit(initRaw, raw, fi.mvhdDurOff) {
			break // a codec change: one file has one set of tracks
		}
		for _, fr := range fi.frags {
			for _, ft := range fr.tracks {
				ot := trackByID(tracks, ft.id)
				if ot == nil {
					continue
				}
				ts := int64(ot.init.TimeScale)
				dts := durToTS(fi.start.Sub(start), ts) + int64(ft.base)
				for _, s := range ft.samples {
					ot.samples = append(ot.samples, outSample{dts: dts, dur: s.dur, cto: s.cto, sync: s.sync, off: s.off, size: s.size, f: f})
					dts += int64(s.dur)
				}
			}
		}
	}
	if len(tracks) == 0 {
		return 0, ErrNoRecording
	}
	// Start at the keyframe at or before start (the first one after it
	// when the recording begins later).
	var t0 time.Duration
	for _, ot := range tracks {
		if !ot.video {
			continue
		}
		ts := int64(ot.init.TimeScale)
		k := -1
		for i, s := range ot.samples {
			if s.sync && (s.dts <= 0 || k < 0) {
				k = i
			}
			if s.dts > 0 && k >= 0 {
				break
			}
		}
		if k >= 0 {
			t0 = tsToDurSigned(ot.samples[k].dts, ts)
		}
		break
	}
	var total time.Duration
	for _, ot := range tracks {
		ts := int64(ot.init.TimeScale)
		shift := durToTS(t0, ts)
		end := durToTS(dur, ts)
		var keep []outSample
		for _, s := range ot.samples {
			if s.dts < shift || s.dts >= end {
				continue
			}
			if len(keep) == 0 && ot.video && !s.sync {
				continue
			}
			s.dts -= shift
			keep = append(keep, s)
		}
		for i := range keep {
			if i+1 < len(keep) {
				if d := keep[i+1].dts - keep[i].dts; d > 0 && d < 1<<31 {
					keep[i].dur = uint32(d)
				}
			} else if room := end - shift - keep[i].dts; room > 0 && room < int64(keep[i].dur) {
				keep[i].dur = uint32(room)
			}
		}
		ot.samples = keep
		if n := len(keep); n > 0 {
			total = max(total, tsToDurSigned(keep[n-1].dts+int64(keep[n-1].dur), ts))
		}
	}
	var payload int64
	for _, ot := range tracks {
		for _, s := range ot.samples {
			payload += int64(s.size)
		}
	}
	if payload > maxExportBytes {
		return total, ErrTooLarge
	}
	bw := bufio.NewWriterSize(w, 1<<20) // pmp4 writes each sample on its own
	if format == "fmp4" {
		err = writeFMP4(bw, tracks, initRaw, total)
	} else {
		err = writeMP4(bw, tracks)
	}
	if err == nil {
		err = bw.Flush()
	}
	return total, err
}

func trackByID(ts []*outTrack, id uint32) *outTrack {
	for _, t := range ts {
		if uint32(t.init.ID) == id {
			return t
		}
	}
	return nil
}

// sameInit reports whether two inits describe the same tracks (they differ
// only in mvhd's duration).
func sameInit(a, b []byte, durOff int64) bool {
	if len(a) != len(b) {
		return false
	}
	if durOff > 0 && durOff+4 <= int64(len(a)) {
		return bytes.Equal(a[:durOff], b[:durOff]) && bytes.Equal(a[durOff+4:], b[durOff+4:])
	}
	return bytes.Equal(a, b)
}

// durToTS converts d (may be negative) to a timescale.
func durToTS(d time.Duration, ts int64) int64 {
	return int64(d/time.Second)*ts + int64(d%time.Second)*ts/int64(time.Second)
}

func tsToDurSigned(v, ts int64) time.Duration {
	return time.Duration(v/ts)*time.Second + time.Duration(v%ts)*time.Second/time.Duration(ts)
}

// sampleReader reads sample payloads through a window of their file: the
// samples of an export come in file order, so one read of a window serves
// hundreds of them (one ReadAt per sample ran at a tenth of disk speed).
type sampleReader struct {
	f   *os.File
	off int64
	buf []byte
}

const readWindow = 1 << 20

func (r *sampleReader) read(s outSample) ([]byte, error) {
	end := s.off + int64(s.size)
	if r.f != s.f || s.off < r.off || end > r.off+int64(len(r.buf)) {
		n := max(readWindow, int(s.size))
		if cap(r.buf) < n {
			r.buf = make([]byte, n)
		}
		r.buf = r.buf[:n]
		m, err := s.f.ReadAt(r.buf, s.off)
		if m < int(s.size) {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			r.f = nil
			return nil, err
		}
		r.f, r.off, r.buf = s.f, s.off, r.buf[:m]
	}
	// The slice is valid until the next read: pmp4 writes each payload
	// out at once, writeFMP4 copies.
	return r.buf[s.off-r.off : end-r.off], nil
}

func writeMP4(w io.Writer, tracks []*outTrack) error {
	var p pmp4.Presentation
	var size int64
	var rd sampleReader
	for _, ot := range tracks {
		t := &pmp4.Track{ID: ot.init.ID, TimeScale: ot.init.TimeScale, Codec: ot.init.Codec}
		for _, s := range ot.samples {
			size += int64(s.size)
			t.Samples = append(t.Samples, &pmp4.Sample{Duration: s.dur, PTSOffset: s.cto, IsNonSyncSample: !s.sync,
				PayloadSize: s.size, GetPayload: func() ([]byte, error) { return rd.read(s) }})
		}
		if len(t.Samples) > 0 {
			p.Tracks = append(p.Tracks, t)
		}
	}
	if len(p.Tracks) == 0 {
		return ErrNoRecording
	}
	if size > maxMP4Bytes {
		return ErrTooLarge
	}
	return p.Marshal(w)
}

// writeFMP4 writes the init (with the export's duration) and a fragment
// per second of media.
func writeFMP4(w io.Writer, tracks []*outTrack, initRaw []byte, total time.Duration) error {
	var in fmp4.Init
	for _, ot := range tracks {
		in.Tracks = append(in.Tracks, ot.init)
	}
	var buf seekablebuffer.Buffer
	if err := in.Marshal(&buf); err != nil {
		return err
	}
	hdr := buf.Bytes()
	if off := mvhdDurOffset(hdr); off > 0 {
		binary.BigEndian.PutUint32(hdr[off:], uint32(min(total.Milliseconds(), 1<<32-1)))
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	idx := make([]int, len(tracks))
	var (
		rd      sampleReader
		partBuf []byte // the payloads of one part, reused: Marshal copies them
		pb      seekablebuffer.Buffer
	)
	for k, seq := int64(1), uint32(0); ; k++ {
		part := fmp4.Part{SequenceNumber: seq}
		partBuf = partBuf[:0]
		for i, ot := range tracks {
			limit := k * int64(ot.init.TimeScale)
			first := idx[i]
			var samples []*fmp4.Sample
			for idx[i] < len(ot.samples) && ot.samples[idx[i]].dts < limit {
				s := ot.samples[idx[i]]
				b, err := rd.read(s)
				if err != nil {
					return err
				}
				if len(partBuf)+len(b) > cap(partBuf) {
					// A new buffer; the samples gathered so far keep pointing
					// into the old one, which nothing writes any more.
					partBuf = make([]byte, 0, max(2*cap(partBuf), len(b), 1<<20))
				}
				o := len(partBuf)
				partBuf = append(partBuf, b...)
				samples = append(samples, &fmp4.Sample{Duration: s.dur, PTSOffset: s.cto, IsNonSyncSample: !s.sync, Payload: partBuf[o:len(partBuf):len(partBuf)]})
				idx[i]++
			}
			if len(samples) > 0 {
				part.Tracks = append(part.Tracks, &fmp4.PartTrack{ID: ot.init.ID, BaseTime: uint64(ot.samples[first].dts), Samples: samples})
			}
		}
		if len(part.Tracks) > 0 {
			pb.Reset()
			if err := part.Marshal(&pb); err != nil {
				return err
			}
			if _, err := w.Write(pb.Bytes()); err != nil {
				return err
			}
			seq++
		}
		done := true
		for i, ot := range tracks {
			if idx[i] < len(ot.samples) {
				done = false
			}
		}
		if done {
			return nil
		}
	}
}
