// Package m3u8 reads HLS media playlists (RFC 8216 with the low-latency
// tags): the one parser of the tests and the bench tools. Parts and
// segments are numbered by the playlist's structure (EXT-X-MEDIA-SEQUENCE,
// EXT-X-SKIP, EXTINF), never by their names.
package m3u8

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Media is a media playlist.
type Media struct {
	MediaSequence uint64  // EXT-X-MEDIA-SEQUENCE
	Skipped       uint64  // EXT-X-SKIP SKIPPED-SEGMENTS (a delta update)
	Map           string  // the URI of the last EXT-X-MAP
	PartTarget    float64 // EXT-X-PART-INF PART-TARGET, seconds
	CanBlock      bool    // EXT-X-SERVER-CONTROL CAN-BLOCK-RELOAD=YES
	CanSkip       bool    // EXT-X-SERVER-CONTROL CAN-SKIP-UNTIL given
	// Segments are the complete segments listed (an EXTINF and a URI).
	Segments []Segment
	// Parts are every EXT-X-PART, in order: of complete segments and of
	// the growing one.
	Parts []Part
	// Hint is the EXT-X-PRELOAD-HINT of TYPE=PART, nil if none.
	Hint *Part
}

// Segment is one complete segment.
type Segment struct {
	MSN           uint64
	URI           string
	Duration      float64   // EXTINF, seconds
	Map           string    // the EXT-X-MAP in effect
	PDT           time.Time // EXT-X-PROGRAM-DATE-TIME, zero if none
	Discontinuity bool      // an EXT-X-DISCONTINUITY before it
}

// Part is one part (or the preload hint).
type Part struct {
	MSN         uint64 // of the segment it belongs to
	Index       int    // within that segment
	URI         string
	Duration    float64 // seconds (0 for the hint)
	Independent bool
	// Avail is the segment's PROGRAM-DATE-TIME plus the parts up to this
	// one's end: when its last frame was live. Zero if unknown.
	Avail time.Time
}

// End returns the media sequence number after the last complete segment.
func (m *Media) End() uint64 { return m.MediaSequence + m.Skipped + uint64(len(m.Segments)) }

// ParseMedia reads a media playlist.
func ParseMedia(b []byte) (*Media, error) {
	m := &Media{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var (
		msn   uint64
		idx   int
		pdt   time.Time
		off   time.Duration
		first = true
		inf   = -1.0 // the EXTINF of the segment being read
		disc  bool
	)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if first {
			if l != "#EXTM3U" {
				return nil, errors.New("m3u8: the playlist does not start with #EXTM3U")
			}
			first = false
			continue
		}
		tag, val, _ := strings.Cut(l, ":")
		switch {
		case l == "":
		case tag == "#EXT-X-MEDIA-SEQUENCE":
			n, err := strconv.ParseUint(val, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("m3u8: bad EXT-X-MEDIA-SEQUENCE %q", val)
			}
			m.MediaSequence, msn = n, n
		case tag == "#EXT-X-SKIP":
			n, err := strconv.ParseUint(Attr(val, "SKIPPED-SEGMENTS"), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("m3u8: bad EXT-X-SKIP %q", val)
			}
			m.Skipped = n
			msn += n
		case tag == "#EXT-X-SERVER-CONTROL":
			m.CanSkip = Attr(val, "CAN-SKIP-UNTIL") != ""
			m.CanBlock = Attr(val, "CAN-BLOCK-RELOAD") == "YES"
		case tag == "#EXT-X-PART-INF":
			m.PartTarget, _ = strconv.ParseFloat(Attr(val, "PART-TARGET"), 64)
		case tag == "#EXT-X-MAP":
			m.Map = Attr(val, "URI")
		case tag == "#EXT-X-DISCONTINUITY":
			disc = true
		case tag == "#EXT-X-PROGRAM-DATE-TIME":
			t, err := time.Parse(time.RFC3339Nano, val)
			if err != nil {
				return nil, fmt.Errorf("m3u8: bad EXT-X-PROGRAM-DATE-TIME %q", val)
			}
			pdt, off = t, 0
		case tag == "#EXT-X-PART":
			d, err := strconv.ParseFloat(Attr(val, "DURATION"), 64)
			uri := Attr(val, "URI")
			if err != nil || uri == "" {
				return nil, fmt.Errorf("m3u8: bad EXT-X-PART %q", val)
			}
			off += time.Duration(d * float64(time.Second))
			p := Part{MSN: msn, Index: idx, URI: uri, Duration: d, Independent: Attr(val, "INDEPENDENT") == "YES"}
			if !pdt.IsZero() {
				p.Avail = pdt.Add(off)
			}
			m.Parts = append(m.Parts, p)
			idx++
		case tag == "#EXTINF":
			v, _, _ := strings.Cut(val, ",")
			d, err := strconv.ParseFloat(v, 64)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("m3u8: bad EXTINF %q", val)
			}
			inf = d
		case tag == "#EXT-X-PRELOAD-HINT":
			if Attr(val, "TYPE") == "PART" {
				m.Hint = &Part{MSN: msn, Index: idx, URI: Attr(val, "URI")}
			}
		case !strings.HasPrefix(l, "#"): // a segment URI
			if inf < 0 {
				return nil, fmt.Errorf("m3u8: segment %q without EXTINF", l)
			}
			m.Segments = append(m.Segments, Segment{MSN: msn, URI: l, Duration: inf, Map: m.Map, PDT: pdt, Discontinuity: disc})
			msn++
			idx, inf, disc = 0, -1, false
			pdt, off = time.Time{}, 0
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("m3u8: %w", err)
	}
	if first {
		return nil, errors.New("m3u8: empty playlist")
	}
	return m, nil
}

// Attr returns the attribute name of an attribute list, quotes removed
// ("" if absent).
func Attr(list, name string) string {
	for list != "" {
		inq, i := false, 0
		for ; i < len(list); i++ {
			if list[i] == '"' {
				inq = !inq
			} else if list[i] == ',' && !inq {
				break
			}
		}
		kv := list[:i]
		list = list[min(i+1, len(list)):]
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}
