package hls

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/streamhub/streamhub/media"
)

// partsListed is how many of the newest segments list their parts:
// players within PART-HOLD-BACK of live need no older ones.
const partsListed = 3

// seconds formats a duration for a playlist (up to 5 decimals, trimmed).
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 5, 64)
}

// mediaPlaylist is the state a media playlist is rendered from, taken from
// a segmenter snapshot (segs is the snapshot's: read only).
type mediaPlaylist struct {
	prefix     string // unique per muxer: file names never repeat across muxers
	partTarget time.Duration
	// partHoldBack is PART-HOLD-BACK (Config.PartHoldBack part targets).
	partHoldBack time.Duration
	targetDur    int // EXT-X-TARGETDURATION, seconds
	segs         []*segment
	discSeq      int // EXT-X-DISCONTINUITY-SEQUENCE
	reports      []renditionReport
	query        string // added to every URI ("?key=..." on a path with a read key)
}

// renditionReport is one sibling variant's last segment and part.
type renditionReport struct {
	uri      string
	lastMSN  uint64
	lastPart int
}

// lastPart returns the media sequence number and part index of the newest
// part, and false when there is none.
func lastPart(segs []*segment) (uint64, int, bool) {
	for i := len(segs) - 1; i >= 0; i-- {
		if n := len(segs[i].parts); n > 0 {
			return segs[i].msn, n - 1, true
		}
	}
	return 0, 0, false
}

// holdBack is PART-HOLD-BACK: partHoldBack, never under twice PART-TARGET
// (RFC 8216bis 4.4.3.8: MUST).
func (p *mediaPlaylist) holdBack() time.Duration {
	return max(p.partHoldBack, MinPartHoldBack*p.partTarget)
}

// canSkipUntil is CAN-SKIP-UNTIL: six target durations.
func (p *mediaPlaylist) canSkipUntil() time.Duration {
	return 6 * time.Duration(p.targetDur) * time.Second
}

// render writes the media playlist. skip asks for a delta update
// (_HLS_skip=YES): segments older than CAN-SKIP-UNTIL are left out.
func (p *mediaPlaylist) render(skip bool) []byte {
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:9\n")
	fmt.Fprintf(&b, "#EXT-X-TARGETDURATION:%d\n", p.targetDur)
	// PART-HOLD-BACK: where hls.js starts, and stays (hls.partHoldBack
	// part targets, at least the spec's two).
	fmt.Fprintf(&b, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=%s,CAN-SKIP-UNTIL=%s\n",
		seconds(p.holdBack()), seconds(p.canSkipUntil()))
	fmt.Fprintf(&b, "#EXT-X-PART-INF:PART-TARGET=%s\n", seconds(p.partTarget))
	if len(p.segs) == 0 {
		return []byte(b.String())
	}
	fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n", p.segs[0].msn)
	if p.discSeq > 0 {
		fmt.Fprintf(&b, "#EXT-X-DISCONTINUITY-SEQUENCE:%d\n", p.discSeq)
	}

	// Segments ending more than CAN-SKIP-UNTIL before the live edge may be
	// skipped in a delta update.
	skipped := 0
	if skip {
		var total time.Duration
		for _, s := range p.segs {
			total += s.dur
		}
		var acc time.Duration
		for i, s := range p.segs {
			if !s.complete || total-acc-s.dur < p.canSkipUntil() {
				break
			}
			acc += s.dur
			skipped = i + 1
		}
		// A skipped span must not hide an init change the rest needs.
		if skipped > 0 && skipped < len(p.segs) && p.segs[skipped].init != p.segs[skipped-1].init {
			skipped--
		}
		if skipped > 0 {
			fmt.Fprintf(&b, "#EXT-X-SKIP:SKIPPED-SEGMENTS=%d\n", skipped)
		}
	}
	lastInit := -1
	if skipped > 0 {
		lastInit = p.segs[skipped-1].init
		if lastInit != p.segs[skipped].init {
			lastInit = -1
		}
	}
	for i, s := range p.segs[skipped:] {
		idx := skipped + i
		if s.discontinuity && idx > 0 {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		if s.init != lastInit {
			fmt.Fprintf(&b, "#EXT-X-MAP:URI=\"%s%s\"\n", initURI(p.prefix, s.init), p.query)
			lastInit = s.init
		}
		if !s.start.IsZero() {
			fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n", s.start.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
		}
		if idx >= len(p.segs)-partsListed {
			for _, pt := range s.parts {
				fmt.Fprintf(&b, "#EXT-X-PART:DURATION=%s,URI=\"%s%s\"", seconds(pt.dur), partURI(p.prefix, s.msn, pt.index), p.query)
				if pt.independent {
					b.WriteString(",INDEPENDENT=YES")
				}
				b.WriteByte('\n')
			}
		}
		if s.complete {
			fmt.Fprintf(&b, "#EXTINF:%s,\n%s%s\n", seconds(s.dur), segURI(p.prefix, s.msn), p.query)
		}
	}
	// The next part the player should ask for before it exists.
	last := p.segs[len(p.segs)-1]
	if last.complete {
		fmt.Fprintf(&b, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"%s%s\"\n", partURI(p.prefix, last.msn+1, 0), p.query)
	} else {
		fmt.Fprintf(&b, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"%s%s\"\n", partURI(p.prefix, last.msn, len(last.parts)), p.query)
	}
	for _, r := range p.reports {
		fmt.Fprintf(&b, "#EXT-X-RENDITION-REPORT:URI=\"%s%s\",LAST-MSN=%d,LAST-PART=%d\n", r.uri, p.query, r.lastMSN, r.lastPart)
	}
	return []byte(b.String())
}

// variant is one entry of the multivariant playlist.
type variant struct {
	uri                string
	bandwidth, average int // bits per second
	codecs             []string
	width, height      int
	fps                float64
}

// renderMultivariant writes the multivariant playlist.
func renderMultivariant(vs []variant) []byte {
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	for _, v := range vs {
		fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d,AVERAGE-BANDWIDTH=%d", max(v.bandwidth, 1), max(v.average, 1))
		if len(v.codecs) > 0 {
			fmt.Fprintf(&b, ",CODECS=\"%s\"", strings.Join(v.codecs, ","))
		}
		if v.width > 0 && v.height > 0 {
			fmt.Fprintf(&b, ",RESOLUTION=%dx%d", v.width, v.height)
		}
		if v.fps > 0 {
			fmt.Fprintf(&b, ",FRAME-RATE=%.3f", v.fps)
		}
		fmt.Fprintf(&b, "\n%s\n", v.uri)
	}
	return []byte(b.String())
}

// codecString returns the RFC 6381 codec string of a track ("avc1.64001f",
// "hvc1.1.6.L93.B0", "mp4a.40.2", "opus"), or "" when unknown.
func codecString(t *media.Track) string {
	switch t.Codec {
	case media.CodecH264:
		if len(t.SPS) < 4 {
			return ""
		}
		return fmt.Sprintf("avc1.%02x%02x%02x", t.SPS[1], t.SPS[2], t.SPS[3])
	case media.CodecH265:
		var sps h265.SPS
		if t.SPS == nil || sps.Unmarshal(t.SPS) != nil {
			return ""
		}
		ptl := sps.ProfileTierLevel
		var compat uint32
		for i, f := range ptl.GeneralProfileCompatibilityFlag {
			if f {
				compat |= 1 << i // written bit-reversed, per ISO 14496-15 E.3
			}
		}
		tier := "L"
		if ptl.GeneralTierFlag == 1 {
			tier = "H"
		}
		space := ""
		if ptl.GeneralProfileSpace > 0 {
			space = string(rune('A' + ptl.GeneralProfileSpace - 1))
		}
		// The constraint byte: progressive, interlaced, non-packed and
		// frame-only flags in its top bits.
		var c byte
		for i, f := range []bool{ptl.GeneralProgressiveSourceFlag, ptl.GeneralInterlacedSourceFlag,
			ptl.GeneralNonPackedConstraintFlag, ptl.GeneralFrameOnlyConstraintFlag} {
			if f {
				c |= 0x80 >> i
			}
		}
		return fmt.Sprintf("hvc1.%s%d.%X.%s%d.%X", space, ptl.GeneralProfileIdc, compat, tier, ptl.GeneralLevelIdc, c)
	case media.CodecAAC:
		var asc mpeg4audio.AudioSpecificConfig
		if asc.Unmarshal(t.AudioConfig) != nil {
			return "mp4a.40.2"
		}
		switch asc.ExtensionType { // HE-AAC (SBR) and HE-AACv2 (PS)
		case mpeg4audio.ObjectTypeSBR, mpeg4audio.ObjectTypePS:
			return fmt.Sprintf("mp4a.40.%d", int(asc.ExtensionType))
		}
		return fmt.Sprintf("mp4a.40.%d", int(asc.Type))
	case media.CodecOpus:
		return "opus"
	}
	return ""
}

// targetDuration is EXT-X-TARGETDURATION: the longest segment, rounded up,
// at least the minimum segment length.
func targetDuration(maxDur, segmentMin time.Duration) int {
	return int(math.Ceil(max(maxDur, segmentMin).Seconds()))
}
