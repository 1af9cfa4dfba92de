package flv

import (
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
)

// BenchmarkRetimedGOP is one joiner's catch-up through a muxer: a cached
// 2 s GOP at 30 fps with B-frames (11 kB pictures, composition offsets of
// 0 to 100 ms) retimed as the hub's catch-up does, squeezing decode and
// presentation times alike, so every offset changes. Each unit's shared
// tag is made before the timer starts, as the live readers made it; what
// is left is the joiner's own cost, which should be a head per unit, not
// a copy of each picture.
func BenchmarkRetimedGOP(b *testing.B) {
	v := &media.Track{ID: 0, Codec: media.CodecH264, SPS: h264SPS, PPS: h264PPS}
	const frame = 33333 * time.Microsecond
	var gop []*media.Unit
	for i := range 60 {
		dts := 10*time.Second + time.Duration(i)*frame
		cts := time.Duration((i%4)*33) * time.Millisecond
		u := &media.Unit{Track: v, DTS: dts, PTS: dts + cts, KeyFrame: i == 0, Payload: [][]byte{make([]byte, 11000)}}
		UnitTag(u)
		gop = append(gop, u)
	}
	newest := gop[len(gop)-1].DTS
	squeeze := func(t time.Duration) time.Duration { return newest - (newest-t)/4 }
	b.ReportAllocs()
	b.ResetTimer()
	var dst [][]byte
	for range b.N {
		m := NewMuxer([]*media.Track{v})
		dst = dst[:0]
		for _, o := range gop {
			u := &media.Unit{Track: v, DTS: squeeze(o.DTS), PTS: squeeze(o.PTS), KeyFrame: o.KeyFrame, Payload: o.Payload, Orig: o}
			dst = m.Append(dst, u)
		}
	}
}
