// Package gopcache keeps the latest group of pictures of a stream, so that a
// new reader can start decoding at once instead of waiting for the next
// keyframe.
package gopcache

import (
	"time"

	"github.com/streamhub/streamhub/media"
)

// Limits bound what a Cache holds.
type Limits struct {
	// MaxFrames and MaxBytes bound one GOP (all tracks counted). A GOP that
	// grows past either is dropped whole and caching resumes at the next
	// keyframe, so a source that never sends a keyframe cannot exhaust memory.
	MaxFrames int
	MaxBytes  int
	// AudioOnlyWindow is how much trailing audio an audio-only stream keeps
	// (every audio unit is a random access point, so there is no GOP).
	AudioOnlyWindow time.Duration
	// Backlog keeps earlier complete GOPs, so that the cache reaches back
	// at least this far before its newest keyframe (AppendBacklog); the
	// GOPs kept count against MaxFrames and MaxBytes. 0 keeps only the
	// latest GOP.
	Backlog time.Duration
}

// Cache holds the units since the latest video keyframe (or, for an
// audio-only stream, the last AudioOnlyWindow of audio). It is not safe for
// concurrent use: the owning stream's lock guards it.
type Cache struct {
	limits   Limits
	hasVideo bool
	units    []*media.Unit
	bytes    int
	overflow int // GOPs dropped for exceeding the limits

	// hist holds the earlier GOPs kept for Backlog, oldest first, and
	// histUnits, histBytes what they hold.
	hist                 [][]*media.Unit
	histUnits, histBytes int
}

// New returns an empty cache for a stream with or without video.
func New(l Limits, hasVideo bool) *Cache {
	return &Cache{limits: l, hasVideo: hasVideo}
}

// Reset empties the cache, e.g. when a new publisher takes over the stream,
// and sets whether the stream has video.
func (c *Cache) Reset(hasVideo bool) {
	c.clear()
	c.hasVideo = hasVideo
}

func (c *Cache) clear() {
	clear(c.units) // let the GC have the payloads
	c.units = c.units[:0]
	c.bytes = 0
	c.hist, c.histUnits, c.histBytes = nil, 0, 0
}

// pushHistory moves the current GOP into the history (a new keyframe came)
// and drops the GOPs no longer needed to reach back Backlog from dts, the
// new keyframe's, or past the limits.
func (c *Cache) pushHistory(dts time.Duration) {
	if len(c.units) > 0 {
		c.hist = append(c.hist, c.units)
		c.histUnits += len(c.units)
		c.histBytes += c.bytes
		c.units, c.bytes = nil, 0
	}
	for len(c.hist) > 0 {
		// The GOP after the oldest reaches back far enough by itself, or
		// the history is over the limits: drop the oldest.
		enough := len(c.hist) > 1 && dts-c.hist[1][0].DTS >= c.limits.Backlog
		full := (c.limits.MaxFrames > 0 && c.histUnits > c.limits.MaxFrames) ||
			(c.limits.MaxBytes > 0 && c.histBytes > c.limits.MaxBytes)
		if len(c.hist) == 1 {
			enough = dts-c.hist[0][0].DTS > 0 && c.limits.Backlog <= 0
		}
		if !enough && !full {
			break
		}
		c.histUnits -= len(c.hist[0])
		c.histBytes -= sizeOf(c.hist[0])
		c.hist[0] = nil
		c.hist = c.hist[1:]
	}
}

func sizeOf(us []*media.Unit) int {
	n := 0
	for _, u := range us {
		n += u.Size
	}
	return n
}

// Add offers u to the cache. It never blocks and allocates only when the
// cache grows past its previous high-water mark.
func (c *Cache) Add(u *media.Unit) {
	if !c.hasVideo {
		c.addAudioOnly(u)
		return
	}
	if u.KeyFrame && u.Track.IsVideo() {
		if c.limits.Backlog > 0 {
			c.pushHistory(u.DTS)
		} else {
			c.clear()
		}
	} else if len(c.units) == 0 {
		return // no keyframe to start from yet
	}
	c.units = append(c.units, u)
	c.bytes += u.Size
	if (c.limits.MaxFrames > 0 && len(c.units) > c.limits.MaxFrames) ||
		(c.limits.MaxBytes > 0 && c.bytes > c.limits.MaxBytes) {
		c.clear()
		c.overflow++
	}
}

func (c *Cache) addAudioOnly(u *media.Unit) {
	c.units = append(c.units, u)
	c.bytes += u.Size
	drop := 0
	for drop < len(c.units)-1 && (u.DTS-c.units[drop].DTS > c.limits.AudioOnlyWindow ||
		(c.limits.MaxFrames > 0 && len(c.units)-drop > c.limits.MaxFrames) ||
		(c.limits.MaxBytes > 0 && c.bytes > c.limits.MaxBytes)) {
		c.bytes -= c.units[drop].Size
		drop++
	}
	if drop > 0 {
		n := copy(c.units, c.units[drop:])
		clear(c.units[n:])
		c.units = c.units[:n]
	}
}

// AppendTo appends the cached units, oldest first, to dst and returns it. The
// first video unit appended is a keyframe.
func (c *Cache) AppendTo(dst []*media.Unit) []*media.Unit {
	return append(dst, c.units...)
}

// AppendBacklog appends, oldest first, the cached units from the newest
// keyframe at least d before the newest unit (or from the oldest kept),
// to dst and returns it: what a reader that needs d of media at once gets.
// The first video unit appended is a keyframe.
func (c *Cache) AppendBacklog(dst []*media.Unit, d time.Duration) []*media.Unit {
	if len(c.units) == 0 || len(c.hist) == 0 {
		return c.AppendTo(dst)
	}
	newest := c.units[len(c.units)-1].DTS
	from := 0
	for i := len(c.hist) - 1; i >= 0; i-- {
		if newest-c.hist[i][0].DTS >= d {
			from = i
			break
		}
	}
	for _, g := range c.hist[from:] {
		dst = append(dst, g...)
	}
	return append(dst, c.units...)
}

// Len returns the number of cached units.
func (c *Cache) Len() int { return len(c.units) }

// Bytes returns the payload bytes held.
func (c *Cache) Bytes() int { return c.bytes }

// Overflows returns how many GOPs were dropped for exceeding the limits.
func (c *Cache) Overflows() int { return c.overflow }
