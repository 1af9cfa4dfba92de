package tsconv

import (
	"errors"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/streamhub/streamhub/media"
)

// ErrNoTrack is returned by NewMuxer when no track of the stream fits MPEG-TS.
var ErrNoTrack = errors.New("no track of the stream fits MPEG-TS (H264, H265, AAC, Opus, MP3)")

// Muxer turns a reader's units into MPEG-TS, one access unit at a time. It
// follows a republish: a new publisher whose tracks differ gets new tables.
type Muxer struct {
	w       *mpegts.Writer
	buf     []byte          // the TS packets of the unit being muxed
	byID    []*mpegts.Track // hub track ID → TS track; nil: not carried
	codecs  []media.Codec   // what byID was made for
	session uint64
	hasVid  bool
}

// Write collects the writer's output; Mux returns it per access unit.
func (m *Muxer) Write(p []byte) (int, error) {
	m.buf = append(m.buf, p...)
	return len(p), nil
}

// NewMuxer makes the TS tracks for the hub tracks MPEG-TS can carry, or
// returns ErrNoTrack.
func NewMuxer(tracks []*media.Track) (*Muxer, error) {
	m := &Muxer{}
	if err := m.setup(tracks); err != nil {
		return nil, err
	}
	return m, nil
}

// HasVideo reports whether the muxer carries a video track.
func (m *Muxer) HasVideo() bool { return m.hasVid }

func (m *Muxer) setup(tracks []*media.Track) error {
	m.byID, m.codecs = make([]*mpegts.Track, len(tracks)), make([]media.Codec, len(tracks))
	var list []*mpegts.Track
	m.hasVid = false
	for _, t := range tracks {
		var c tscodecs.Codec
		switch t.Codec {
		case media.CodecH264:
			c = &tscodecs.H264{}
		case media.CodecH265:
			c = &tscodecs.H265{}
		case media.CodecAAC:
			var asc mpeg4audio.AudioSpecificConfig
			if asc.Unmarshal(t.AudioConfig) != nil {
				continue
			}
			c = &tscodecs.MPEG4Audio{Config: asc}
		case media.CodecOpus:
			c = &tscodecs.Opus{ChannelCount: max(t.Channels, 1)}
		case media.CodecMP3:
			c = &tscodecs.MPEG1Audio{}
		default:
			continue // AV1 and G.711 have no MPEG-TS mapping here
		}
		if t.ID < 0 || t.ID >= len(tracks) {
			continue
		}
		tt := &mpegts.Track{Codec: c}
		m.byID[t.ID], m.codecs[t.ID] = tt, t.Codec
		m.hasVid = m.hasVid || t.IsVideo()
		list = append(list, tt)
	}
	if len(list) == 0 {
		return ErrNoTrack
	}
	m.w = &mpegts.Writer{W: m, Tracks: list}
	return m.w.Initialize()
}

// Mux returns the TS packets of u, nil for a unit of a track the muxer does
// not carry or cannot take. tracks returns the stream's current tracks; it
// is called when u comes from a new publisher. The bytes are valid until
// the next call.
func (m *Muxer) Mux(u *media.Unit, tracks func() []*media.Track) ([]byte, error) {
	if u.Track.Session != m.session {
		// A new publisher may lay its tracks out differently.
		if m.session != 0 && !sameCodecs(m.codecs, tracks()) {
			m.buf = m.buf[:0]
			if err := m.setup(tracks()); err != nil {
				return nil, err
			}
		}
		m.session = u.Track.Session
	}
	return m.Encode(u), nil
}

// Encode returns the TS packets of u with the muxer's layout as it is (no
// republish handling: a caller that shares one muxer between readers picks
// it by the codecs, see SameCodecs), nil for a unit of a track the muxer
// does not carry or cannot take. The bytes are valid until the next call.
func (m *Muxer) Encode(u *media.Unit) []byte {
	id := u.Track.ID
	if id < 0 || id >= len(m.byID) || m.byID[id] == nil || m.codecs[id] != u.Track.Codec {
		return nil
	}
	tt := m.byID[id]
	pts, dts := TSTime(u.PTS), TSTime(u.DTS)
	m.buf = m.buf[:0]
	var err error
	switch u.Track.Codec {
	case media.CodecH264:
		err = m.w.WriteH264(tt, pts, dts, u.Payload)
	case media.CodecH265:
		err = m.w.WriteH265(tt, pts, dts, u.Payload)
	case media.CodecAAC:
		err = m.w.WriteMPEG4Audio(tt, pts, u.Payload)
	case media.CodecOpus:
		err = m.w.WriteOpus(tt, pts, u.Payload)
	case media.CodecMP3:
		err = m.w.WriteMPEG1Audio(tt, pts, u.Payload)
	}
	if err != nil {
		return nil // a unit the muxer cannot take is skipped
	}
	if u.Track.IsVideo() {
		setPESLength(m.buf, tt.PID)
	}
	return m.buf
}

// Tables returns the PAT and PMT packets of the muxer's layout, as the
// muxer also repeats them in the stream (before a keyframe of the track
// that carries the PCR). The PCR track is the one of the first unit
// encoded: call Tables after that. The bytes are valid until the next
// call.
func (m *Muxer) Tables() []byte {
	m.buf = m.buf[:0]
	if _, err := m.w.WriteTables(); err != nil {
		return nil
	}
	return m.buf
}

// SameCodecs reports whether the muxer was made for tracks with these
// codecs, in this order.
func (m *Muxer) SameCodecs(tracks []*media.Track) bool { return sameCodecs(m.codecs, tracks) }

// setPESLength writes the PES_packet_length of the one PES of pid in buf
// (whole TS packets), which the writer leaves 0 ("any length", allowed for
// video only): a demuxer then has the picture as soon as its last packet
// comes, not when the next picture's PES starts. FFmpeg, reading a ladder's
// input or an SRT stream, would otherwise hold every picture back one
// frame interval. A PES longer than 65535 bytes keeps 0.
func setPESLength(buf []byte, pid uint16) {
	const size = 188
	start, n := -1, 0
	for off := 0; off+size <= len(buf); off += size {
		pkt := buf[off : off+size]
		if pkt[0] != 0x47 || (uint16(pkt[1]&0x1f)<<8|uint16(pkt[2])) != pid || pkt[3]&0x10 == 0 {
			continue // another PID, or no payload
		}
		p := 4
		if pkt[3]&0x20 != 0 { // adaptation field
			p += 1 + int(pkt[4])
		}
		if p > size {
			return
		}
		if pkt[1]&0x40 != 0 { // payload unit start: the PES header
			if start >= 0 || p+6 > size || pkt[p] != 0 || pkt[p+1] != 0 || pkt[p+2] != 1 {
				return // not one PES as expected: leave it
			}
			start = off + p
		}
		if start >= 0 {
			n += size - p
		}
	}
	if start < 0 || n-6 > 0xffff || n < 6 {
		return
	}
	buf[start+4], buf[start+5] = byte((n-6)>>8), byte(n-6)
}

func sameCodecs(c []media.Codec, tracks []*media.Track) bool {
	if len(c) != len(tracks) {
		return false
	}
	for i, t := range tracks {
		if c[i] != t.Codec {
			return false
		}
	}
	return true
}
