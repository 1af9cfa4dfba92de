package flv

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxTagSize bounds the body of a tag a Reader accepts (the field allows 16 MiB).
const MaxTagSize = 8 << 20

// ErrBadHeader is returned by Reader when the stream does not start with an FLV header.
var ErrBadHeader = errors.New("flv: not an FLV stream (no FLV header)")

// Tag is one FLV tag as read from a stream.
type Tag struct {
	Type      byte
	Timestamp uint32 // milliseconds, as on the wire (32-bit)
	Body      []byte // valid until the next call to Read
}

// IsVideoKeyFrame reports whether t is a video key frame with picture data
// (not a sequence header), classic or Enhanced RTMP.
func (t *Tag) IsVideoKeyFrame() bool {
	if t.Type != TagVideo || len(t.Body) < 2 {
		return false
	}
	b := t.Body[0]
	if b&exHeader != 0 { // enhanced: frame type bits 4-6, packet type bits 0-3
		pt := b & 0x0F
		return (b>>4)&7 == 1 && (pt == exCodedFrames || pt == 3)
	}
	return b>>4 == 1 && (b&0x0F != 7 || t.Body[1] == 1)
}

// IsConfig reports whether t is a sequence header (decoder configuration).
func (t *Tag) IsConfig() bool {
	switch {
	case t.Type == TagVideo && len(t.Body) >= 2 && t.Body[0]&exHeader != 0:
		return t.Body[0]&0x0F == exSequenceStart
	case t.Type == TagVideo && len(t.Body) >= 2:
		return t.Body[0]&0x0F == 7 && t.Body[1] == 0
	case t.Type == TagAudio && len(t.Body) >= 2 && t.Body[0]>>4 == 9:
		return t.Body[0]&0x0F == exSequenceStart
	case t.Type == TagAudio && len(t.Body) >= 2:
		return t.Body[0]>>4 == 10 && t.Body[1] == 0
	}
	return false
}

// Reader reads an FLV stream: the file header, then tags.
type Reader struct {
	r        *bufio.Reader
	buf      []byte
	HasVideo bool
	HasAudio bool
}

// NewReader reads and checks the FLV header from r.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var h [13]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("flv: reading header: %w", err)
	}
	if h[0] != 'F' || h[1] != 'L' || h[2] != 'V' {
		return nil, ErrBadHeader
	}
	off := binary.BigEndian.Uint32(h[5:9])
	if off < 9 || off > 1024 {
		return nil, fmt.Errorf("flv: header size %d is invalid", off)
	}
	if _, err := br.Discard(int(off) - 9); err != nil {
		return nil, err
	}
	return &Reader{r: br, HasAudio: h[4]&4 != 0, HasVideo: h[4]&1 != 0}, nil
}

// Read returns the next tag. Its body is valid until the next Read.
func (r *Reader) Read() (Tag, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r.r, h[:]); err != nil {
		return Tag{}, err
	}
	n := dataSize(h[:])
	if n > MaxTagSize {
		return Tag{}, fmt.Errorf("flv: tag of %d bytes exceeds the %d-byte limit", n, MaxTagSize)
	}
	if cap(r.buf) < n+TrailerSize {
		r.buf = make([]byte, n+TrailerSize)
	}
	buf := r.buf[:n+TrailerSize]
	if _, err := io.ReadFull(r.r, buf); err != nil {
		return Tag{}, fmt.Errorf("flv: truncated tag: %w", err)
	}
	if prev := binary.BigEndian.Uint32(buf[n:]); prev != uint32(HeaderSize+n) {
		return Tag{}, fmt.Errorf("flv: PreviousTagSize %d does not match tag size %d", prev, HeaderSize+n)
	}
	return Tag{Type: h[0] & 0x1F, Timestamp: TagTime(h[:]), Body: buf[:n]}, nil
}
