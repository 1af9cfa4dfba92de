package flv

import (
	"fmt"

	"github.com/streamhub/streamhub/media"
)

// Muxer turns one reader's units into FLV tags: the metadata and sequence
// headers first, a new sequence header whenever a track's parameters change
// (republish, new SPS), then each unit's shared tag. It carries the first
// video and the first audio track and skips others. Not safe for concurrent use.
type Muxer struct {
	videoID, audioID int // -1: none
	video, audio     *media.Track
	tracks           []*media.Track
	session          uint64 // Track.Session of videoID and audioID
	err              error  // the first sequence header that could not be built
}

// NewMuxer returns a muxer for a reader whose stream has tracks.
func NewMuxer(tracks []*media.Track) *Muxer {
	m := &Muxer{videoID: -1, audioID: -1, tracks: tracks}
	if len(tracks) > 0 {
		m.session = tracks[0].Session
	}
	if v := FirstTrack(tracks, true); v != nil {
		m.videoID = v.ID
	}
	if a := FirstTrack(tracks, false); a != nil {
		m.audioID = a.ID
	}
	return m
}

// HasVideo and HasAudio say what the FLV header should announce.
func (m *Muxer) HasVideo() bool { return m.videoID >= 0 }

// HasAudio reports whether the muxer carries an audio track.
func (m *Muxer) HasAudio() bool { return m.audioID >= 0 }

// Err returns the first sequence header that could not be built (its
// track's units are dropped), or nil.
func (m *Muxer) Err() error { return m.err }

// MetadataTag returns the onMetaData script tag.
func (m *Muxer) MetadataTag() []byte {
	return AppendTag(nil, TagScript, 0, MetadataBody(m.tracks))
}

// Append appends to dst the tags that deliver u: a sequence header first
// when u's track has parameters the reader has not seen, then u's tag
// (shared bytes, not to be modified). The tag of a retimed unit comes as
// two slices (UnitParts): a head, for which IsHead is true, then the rest;
// every other slice is one whole tag. Units of tracks the muxer does not
// carry, and video before its parameters are known, append nothing.
func (m *Muxer) Append(dst [][]byte, u *media.Unit) [][]byte {
	t := u.Track
	if t.Session != m.session {
		// A new publisher: its track IDs may be laid out differently. Carry
		// the first unit of each kind it sends.
		m.session, m.videoID, m.audioID = t.Session, -1, -1
	}
	last := &m.audio
	id := &m.audioID
	if t.IsVideo() {
		last, id = &m.video, &m.videoID
	}
	if *id < 0 {
		*id = t.ID
	}
	if t.ID != *id {
		return dst
	}
	if *last != t {
		if !t.SameParams(*last) {
			cfg, err := ConfigTag(t, Timestamp(u.DTS))
			if err != nil {
				if m.err == nil {
					m.err = fmt.Errorf("%s track %d: %w", t.Codec, t.ID, err)
				}
				return dst
			}
			if cfg == nil && t.IsVideo() && t.Codec != media.CodecAV1 {
				return dst // no decodable start without parameter sets
			}
			if cfg != nil {
				dst = append(dst, cfg)
			}
		}
		*last = t
	}
	return AppendUnit(dst, u)
}

// AppendUnit appends u's own tag (UnitParts: a retimed unit's head and
// rest), as Append does once the reader has u's track's parameters.
func AppendUnit(dst [][]byte, u *media.Unit) [][]byte {
	if head, rest := UnitParts(u); len(head) > 0 {
		dst = append(dst, head)
		if rest != nil {
			dst = append(dst, rest)
		}
	}
	return dst
}

// Plain reports whether Append would give each unit of batch its own tag
// (AppendUnit) and nothing else, and change nothing in the muxer: every
// unit is of a track the muxer carries and has started (no sequence
// header due). Then what the reader gets for batch is the same as every
// other such reader's, and can be made once for all of them.
//
// Append sets its last track of a kind only for the carried track of the
// session, so a unit whose track is that last track, in the same session,
// is one it carries and has started.
func (m *Muxer) Plain(batch []*media.Unit) bool {
	for _, u := range batch {
		t := u.Track
		last := m.audio
		if t.IsVideo() {
			last = m.video
		}
		if t != last || t.Session != m.session {
			return false
		}
	}
	return true
}
