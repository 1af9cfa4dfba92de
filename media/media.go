// Package media defines the one data type that flows through the hub: a Unit
// (one access unit of one track) and the Track it belongs to.
//
// Ingest converts a wire format to Units once; egress converts Units to its
// wire format. Nothing here knows a protocol.
package media

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Codec identifies the coding format of a track.
type Codec int

// Codecs the hub carries. Ingest refuses anything else with a message that
// lists these.
const (
	CodecUnknown Codec = iota
	CodecH264
	CodecH265
	CodecAV1
	CodecAAC  // MPEG-4 Audio; Payload is one raw access unit (no ADTS header)
	CodecOpus // Payload is one Opus packet
	CodecMP3  // MPEG-1/2 Layer III; Payload is one frame
	// G.711 A-law and µ-law (PCMA, PCMU); Payload is one packet's samples.
	CodecG711A
	CodecG711U
)

var codecNames = [...]string{"unknown", "H264", "H265", "AV1", "AAC", "Opus", "MP3", "G711A", "G711U"}

// String returns the codec's common name ("H264", "AAC", ...).
func (c Codec) String() string {
	if c < 0 || int(c) >= len(codecNames) {
		return fmt.Sprintf("codec(%d)", int(c))
	}
	return codecNames[c]
}

// IsVideo reports whether c is a video codec.
func (c Codec) IsVideo() bool {
	return c == CodecH264 || c == CodecH265 || c == CodecAV1
}

// Track describes one elementary stream. A Track is immutable once it is
// handed to the hub: a change of codec parameters mid-stream (a new SPS, a new
// AudioSpecificConfig) makes a new Track with the same ID and a higher
// Generation, and the units that follow point at it. Egress compares track
// pointers to notice the change (new FLV sequence header, HLS discontinuity).
type Track struct {
	// ID is the track's index in the stream's track list.
	ID int
	// Generation counts parameter changes of this track within one stream.
	Generation int
	// Session numbers the publishers of a stream (1, 2, ... on republish);
	// the hub sets it at Publish, and new generations keep it. Egress uses it
	// to notice that the track layout may have changed.
	Session uint64
	Codec   Codec

	// Video parameter sets (without start codes) for H264 and H265. They are
	// also carried in-band in every key unit.
	VPS, SPS, PPS []byte
	// AV1SequenceHeader is the AV1 sequence header OBU, when known.
	AV1SequenceHeader []byte
	// Width, Height and FPS are parsed from the parameter sets, 0 if unknown.
	Width, Height int
	FPS           float64

	// AudioConfig is the MPEG-4 AudioSpecificConfig for AAC.
	AudioConfig []byte
	// SampleRate and Channels of an audio track.
	SampleRate, Channels int
}

// IsVideo reports whether t carries video.
func (t *Track) IsVideo() bool { return t.Codec.IsVideo() }

// SameParams reports whether t and o would need the same decoder
// configuration, so that egress need not send a new sequence header.
func (t *Track) SameParams(o *Track) bool {
	if t == o {
		return true
	}
	if t == nil || o == nil {
		return false
	}
	return t.Codec == o.Codec && string(t.VPS) == string(o.VPS) && string(t.SPS) == string(o.SPS) &&
		string(t.PPS) == string(o.PPS) && string(t.AV1SequenceHeader) == string(o.AV1SequenceHeader) &&
		string(t.AudioConfig) == string(o.AudioConfig) && t.SampleRate == o.SampleRate && t.Channels == o.Channels
}

// Unit is one access unit of one track. It is immutable once passed to
// Publisher.Write: the same *Unit is shared by every reader and by the GOP
// cache, so no one may modify it or its Payload afterwards.
type Unit struct {
	Track *Track
	// PTS and DTS are on the stream's timeline. DTS == PTS for audio and for
	// video without B-frames. DTS never decreases within a track.
	PTS, DTS time.Duration
	// KeyFrame marks a random access point; it is true for every audio unit.
	// A video key unit carries its parameter sets in-band.
	KeyFrame bool
	// Payload holds, for video, the NALUs (H264/H265) or OBUs (AV1) of one
	// access unit without start codes; for audio, one frame.
	Payload [][]byte
	// Wall is the arrival time at the server (latency figures, PROGRAM-DATE-TIME).
	Wall time.Time

	// Size is the sum of the payload lengths, computed by the hub on Write.
	Size int

	// Orig, when set, is the unit this one retimes (the hub's catch-up
	// join): the same payload with other timestamps. Serializers may
	// share Orig's bytes for everything but the times.
	Orig *Unit

	memo atomic.Pointer[memoEntry]
}

// PayloadSize returns the number of payload bytes of u.
func (u *Unit) PayloadSize() int {
	n := 0
	for _, p := range u.Payload {
		n += len(p)
	}
	return n
}

// memoEntry is one cached serialization of a Unit; once builds it.
type memoEntry struct {
	key  any
	once sync.Once
	val  []byte
	ok   bool // build returned (it may panic: then every asker builds)
	next *memoEntry
}

// Memo returns the serialization of u that build makes for key, building it
// only once per unit however many readers ask: egress uses it to serialize a
// unit once per wire format and share the bytes across all its readers.
// key must be comparable and should be of a type private to the caller.
// build must be deterministic for a key. Readers that ask while it runs
// wait for its result (when a unit reaches a thousand readers at once, they
// would otherwise all build it). The returned bytes are shared and must
// not be modified.
func (u *Unit) Memo(key any, build func(*Unit) []byte) []byte {
	for {
		head := u.memo.Load()
		for e := head; e != nil; e = e.next {
			if e.key == key {
				return e.get(u, build)
			}
		}
		e := &memoEntry{key: key, next: head}
		if u.memo.CompareAndSwap(head, e) {
			return e.get(u, build)
		}
	}
}

func (e *memoEntry) get(u *Unit, build func(*Unit) []byte) []byte {
	e.once.Do(func() { e.val = build(u); e.ok = true })
	if !e.ok {
		return build(u) // the first build panicked: no cached answer
	}
	return e.val
}
