package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/streamhub/streamhub/internal/audioframe"
	"github.com/streamhub/streamhub/media"
)

// segmentFile is where a segment goes: an *os.File from the recordings
// root, or a fake in tests (a disk that fills up).
type segmentFile interface {
	io.Writer
	io.WriterAt
	Sync() error
	Close() error
}

// errNoTrack is returned for a stream without any track the recorder
// carries.
var errNoTrack = errors.New("record: the stream has no track the recorder carries (H264, H265, AAC, Opus)")

// trackOut is one fMP4 track of a segment.
type trackOut struct {
	hub       *media.Track
	id        int
	timescale int64
	samples   []*fmp4.Sample
	base      int64       // time of samples[0], in timescale
	pend      *media.Unit // video: the last unit, waiting for the next one for its duration
	end       int64       // where the last sample ended (audio continuity), in timescale
	lastDur   uint32
}

// segWriter writes one segment: the init (ftyp+moov), the meta box, then
// a fragment (moof+mdat) per fragment duration, each written with one
// write and made durable with one fsync before the next starts: after a
// crash or a power loss every fragment written before it is complete and
// playable, and the one being written is cut off (scan ignores it).
//
// Not safe for concurrent use: its recorder's goroutine is its only user.
type segWriter struct {
	f          segmentFile
	name       string
	start      time.Time     // wall time of startDTS
	startDTS   time.Duration // hub time that is 0 in the file
	fragDur    time.Duration
	tracks     []*trackOut // by fMP4 ID - 1
	byHub      map[int]*trackOut
	video      *trackOut // the first video track: it drives the cuts
	fragStart  time.Duration
	seq        uint32
	size       int64
	mvhdDurOff int64
	mediaEnd   time.Duration // media time the durable fragments cover
	codecs     string        // "H264,AAC"
}

// recordable reports whether the recorder carries t.
func recordable(t *media.Track) bool {
	switch t.Codec {
	case media.CodecH264:
		return t.SPS != nil && t.PPS != nil
	case media.CodecH265:
		return t.VPS != nil && t.SPS != nil && t.PPS != nil
	case media.CodecAAC:
		return t.AudioConfig != nil && t.SampleRate > 0
	case media.CodecOpus:
		return true
	}
	return false
}

// newSegWriter writes the header of a segment of tracks starting at
// startDTS (wall time start) to f.
func newSegWriter(f segmentFile, name, streamPath string, tracks []*media.Track, startDTS time.Duration, start time.Time,
	fragDur time.Duration) (*segWriter, error) {
	w := &segWriter{f: f, name: name, start: start, startDTS: startDTS, fragStart: startDTS, fragDur: fragDur, byHub: map[int]*trackOut{}}
	init := fmp4.Init{}
	for _, t := range tracks {
		if !recordable(t) {
			continue
		}
		var c mp4codecs.Codec
		rate := int64(90000)
		switch t.Codec {
		case media.CodecH264:
			c = &mp4codecs.H264{SPS: t.SPS, PPS: t.PPS}
		case media.CodecH265:
			c = &mp4codecs.H265{VPS: t.VPS, SPS: t.SPS, PPS: t.PPS}
		case media.CodecOpus:
			c, rate = &mp4codecs.Opus{ChannelCount: max(t.Channels, 1)}, 48000
		case media.CodecAAC:
			var asc mpeg4audio.AudioSpecificConfig
			if err := asc.Unmarshal(t.AudioConfig); err != nil {
				continue
			}
			c, rate = &mp4codecs.MPEG4Audio{Config: asc}, int64(t.SampleRate)
		}
		to := &trackOut{hub: t, id: len(w.tracks) + 1, timescale: rate}
		w.tracks = append(w.tracks, to)
		w.byHub[t.ID] = to
		if w.video == nil && t.IsVideo() {
			w.video = to
		}
		if w.codecs != "" {
			w.codecs += ","
		}
		w.codecs += t.Codec.String()
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: to.id, TimeScale: uint32(rate), Codec: c})
	}
	if len(w.tracks) == 0 {
		return nil, errNoTrack
	}
	var buf seekablebuffer.Buffer
	if err := init.Marshal(&buf); err != nil {
		return nil, fmt.Errorf("record: init: %w", err)
	}
	hdr := append(buf.Bytes(), marshalMeta(start, streamPath)...)
	fi, err := scan(bytes.NewReader(hdr), int64(len(hdr)))
	if err != nil {
		return nil, fmt.Errorf("record: the header we made does not scan: %w", err)
	}
	w.mvhdDurOff = fi.mvhdDurOff
	if err := w.write(hdr); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *segWriter) write(b []byte) error {
	if _, err := w.f.Write(b); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	w.size += int64(len(b))
	return nil
}

// tsOf converts hub time to a track's timescale, relative to the segment.
func (w *segWriter) tsOf(d time.Duration, timescale int64) int64 {
	d -= w.startDTS
	return int64(d/time.Second)*timescale + int64(d%time.Second)*timescale/int64(time.Second)
}

// fits reports whether u's track is one of the segment's with the same
// codec parameters (false: a new segment is needed for it).
func (w *segWriter) fits(u *media.Unit) bool {
	to := w.byHub[u.Track.ID]
	return to != nil && to.hub.SameParams(u.Track)
}

// add writes u (each track in DTS order); a full fragment is written out
// first.
func (w *segWriter) add(u *media.Unit) error {
	to := w.byHub[u.Track.ID]
	if to == nil || u.DTS < w.startDTS || len(u.Payload) == 0 {
		return nil
	}
	if u.Track.IsVideo() {
		p := to.pend
		to.pend = u
		if p == nil {
			return nil
		}
		d := u.DTS - p.DTS
		if d <= 0 {
			d = time.Millisecond
		}
		w.appendVideo(to, p, d)
		// Cut before a keyframe once half a fragment is there, else at
		// the fragment duration: fragments that start at keyframes are
		// where a rewinding player can start.
		if to == w.video && (u.DTS-w.fragStart >= w.fragDur || (u.KeyFrame && u.DTS-w.fragStart >= w.fragDur/2)) {
			return w.flush(u.DTS)
		}
		return nil
	}
	if len(u.Payload) != 1 || len(u.Payload[0]) == 0 {
		return nil
	}
	fd := audioframe.Duration(u.Track.Codec, u.Payload[0])
	if len(to.samples) == 0 {
		to.base = audioframe.Start(w.tsOf(u.DTS, to.timescale), to.end, fd)
		to.end = to.base
	}
	to.samples = append(to.samples, &fmp4.Sample{Duration: uint32(fd), Payload: u.Payload[0]})
	to.end += fd
	if w.video == nil {
		end := u.DTS + time.Duration(fd)*time.Second/time.Duration(to.timescale)
		if end-w.fragStart >= w.fragDur {
			return w.flush(end)
		}
	}
	return nil
}

func (w *segWriter) appendVideo(to *trackOut, u *media.Unit, dur time.Duration) {
	payload, err := h264.AVCC(u.Payload).Marshal() // 4-byte lengths: the same layout for H265
	if err != nil {
		return
	}
	dts := w.tsOf(u.DTS, to.timescale)
	if len(to.samples) == 0 {
		to.base = dts
	}
	s := &fmp4.Sample{
		Duration:        uint32(max(1, w.tsOf(u.DTS+dur, to.timescale)-dts)),
		PTSOffset:       int32(w.tsOf(u.PTS, to.timescale) - dts),
		IsNonSyncSample: !u.KeyFrame,
		Payload:         payload,
	}
	to.lastDur = s.Duration
	to.samples = append(to.samples, s)
	to.end = dts + int64(s.Duration)
}

// flush writes the samples gathered as one fragment that ends at hub time
// end, and makes it durable.
func (w *segWriter) flush(end time.Duration) error {
	p := fmp4.Part{SequenceNumber: w.seq}
	for _, t := range w.tracks {
		if len(t.samples) > 0 {
			p.Tracks = append(p.Tracks, &fmp4.PartTrack{ID: t.id, BaseTime: uint64(t.base), Samples: t.samples})
		}
	}
	w.fragStart = end
	if len(p.Tracks) == 0 {
		return nil
	}
	var buf seekablebuffer.Buffer
	if err := p.Marshal(&buf); err != nil {
		return fmt.Errorf("record: fragment: %w", err)
	}
	for _, t := range w.tracks {
		t.samples = nil
	}
	w.seq++
	if err := w.write(buf.Bytes()); err != nil {
		return err
	}
	for _, t := range w.tracks {
		if t.end > 0 {
			w.mediaEnd = max(w.mediaEnd, time.Duration(t.end)*time.Second/time.Duration(t.timescale))
		}
	}
	return nil
}

// close writes what is pending (the last video frame gets the duration of
// the one before), the duration into the mvhd box, and closes the file.
// It returns the media time the segment covers.
func (w *segWriter) close() (time.Duration, error) {
	var end time.Duration
	for _, t := range w.tracks {
		if t.pend != nil {
			d := 40 * time.Millisecond
			if t.lastDur > 0 {
				d = time.Duration(t.lastDur) * time.Second / time.Duration(t.timescale)
			}
			w.appendVideo(t, t.pend, d)
			end = max(end, t.pend.DTS+d)
			t.pend = nil
		}
	}
	err := w.flush(max(end, w.fragStart))
	if err == nil && w.mvhdDurOff > 0 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(min(w.mediaEnd.Milliseconds(), 1<<32-1)))
		if _, err = w.f.WriteAt(b[:], w.mvhdDurOff); err == nil {
			err = w.f.Sync()
		}
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return w.mediaEnd, err
}
