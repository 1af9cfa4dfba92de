package main

import (
	"errors"
	"time"

	flv "github.com/streamhub/streamhub/protocols/httpflv"
)

// flvHeaderSize is the FLV file header and the first PreviousTagSize.
const flvHeaderSize = 13

var errNotFLV = errors.New("not an FLV stream (no FLV header)")

// tagWalker follows the tag boundaries of an FLV byte stream without
// copying it: it looks at each tag's 11-byte header and the first two
// bytes of a video body, and skips the rest. It notes when the first video
// keyframe came and the media time of the newest picture, which is what
// a reader's rate of media delivered is computed from (see mediaClock).
type tagWalker struct {
	skipHeader int // file header bytes still to pass
	hdr        [11]byte
	hn         int // tag header bytes gathered
	skip       int // bytes of the current tag (body and trailer) still to pass
	body       [2]byte
	bn, bneed  int // video body bytes gathered, and how many to look at
	typ        byte
	ts         uint32

	clock *mediaClock // where the pictures' times go
}

func newTagWalker(c *mediaClock) *tagWalker { return &tagWalker{skipHeader: flvHeaderSize, clock: c} }

// feed walks p, which arrived at now.
func (w *tagWalker) feed(p []byte, now time.Time) error {
	for w.skipHeader > 0 && len(p) > 0 {
		if i := flvHeaderSize - w.skipHeader; i < 3 && p[0] != "FLV"[i] {
			return errNotFLV
		}
		w.skipHeader--
		p = p[1:]
	}
	for len(p) > 0 {
		if w.skip == 0 {
			k := copy(w.hdr[w.hn:], p)
			w.hn += k
			p = p[k:]
			if w.hn < len(w.hdr) {
				return nil
			}
			w.hn = 0
			n := int(w.hdr[1])<<16 | int(w.hdr[2])<<8 | int(w.hdr[3])
			w.typ, w.ts = w.hdr[0]&0x1F, uint32(w.hdr[7])<<24|uint32(w.hdr[4])<<16|uint32(w.hdr[5])<<8|uint32(w.hdr[6])
			w.skip, w.bn, w.bneed = n+4, 0, 0
			if w.typ == flv.TagVideo {
				w.bneed = min(n, len(w.body))
			}
			continue
		}
		if w.bn < w.bneed {
			k := copy(w.body[w.bn:w.bneed], p)
			w.bn += k
			if w.bn == w.bneed {
				t := flv.Tag{Type: w.typ, Timestamp: w.ts, Body: w.body[:w.bn]}
				w.clock.video(&t, now)
			}
		}
		k := min(w.skip, len(p))
		w.skip -= k
		p = p[k:]
	}
	return nil
}

// mediaClock follows the media time of the pictures a reader received.
// Its rate leaves the start out: the cached GOP comes at once, up to a
// GOP of media in a moment, which would hide a reader falling behind.
type mediaClock struct {
	keyAt  time.Time // when the first keyframe came
	first  uint32    // its timestamp
	refAt  time.Time // the first picture settle or more after it came
	ref    uint32    // its timestamp
	newest uint32    // the newest picture's timestamp
}

// settle is how long after its first keyframe a reader's rate starts
// being measured.
const settle = 2 * time.Second

// video notes a video tag that arrived at now.
func (c *mediaClock) video(t *flv.Tag, now time.Time) {
	if t.Type != flv.TagVideo || t.IsConfig() {
		return
	}
	if c.keyAt.IsZero() {
		if t.IsVideoKeyFrame() {
			c.keyAt, c.first, c.newest = now, t.Timestamp, t.Timestamp
		}
		return
	}
	if d := t.Timestamp - c.first; d > c.newest-c.first && d < 1<<31 {
		c.newest = t.Timestamp
	}
	if c.refAt.IsZero() && now.Sub(c.keyAt) >= settle {
		c.refAt, c.ref = now, c.newest
	}
}

// rate is the media time delivered per second of wall time, from the
// first picture settle after the first keyframe (from the keyframe for a
// reader that ended sooner) to end: 1 for a reader that kept up with the
// live stream, less for one falling behind; 0 if no keyframe came.
func (c *mediaClock) rate(end time.Time) float64 {
	at, ts := c.refAt, c.ref
	if at.IsZero() {
		at, ts = c.keyAt, c.first
	}
	wall := end.Sub(at)
	if at.IsZero() || wall <= 0 {
		return 0
	}
	return float64(c.newest-ts) / 1000 / wall.Seconds()
}
