package units

import (
	"bytes"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
)

// Real parameter sets (from gortmplib's tests).
var (
	h264SPS = testfixtures.H264SPS
	h264PPS = testfixtures.H264PPS
	// h264SPS2 is a 1920x1080 baseline SPS.
	h264SPS2   = testfixtures.H264SPS2
	h264IDR    = []byte{0x65, 0x88, 0x84, 0x00, 0x33}
	h264NonIDR = []byte{0x41, 0x9a, 0x21, 0x6c}
	h264AUD    = []byte{0x09, 0xf0}
	h264SEI    = []byte{0x06, 0x05, 0x01, 0x00, 0x80}

	h265VPS   = testfixtures.H265VPS
	h265SPS   = testfixtures.H265SPS
	h265PPS   = testfixtures.H265PPS
	h265IDR   = []byte{0x26, 0x01, 0xaf, 0x08, 0x42} // IDR_W_RADL
	h265CRA   = []byte{0x2a, 0x01, 0xaf, 0x08}       // CRA_NUT
	h265Trail = []byte{0x02, 0x01, 0xd0, 0x09}       // TRAIL_R
	h265AUD   = []byte{0x46, 0x01, 0x50}

	// AV1 sequence header OBUs (without obu_size), from mediacommon's tests.
	av1Seq1 = testfixtures.AV1SequenceHeader
	av1Seq2 = testfixtures.AV1SequenceHeader2
	av1TD   = []byte{0x10}                   // temporal delimiter
	av1Fr   = []byte{0x30, 0x10, 0x20, 0x30} // frame OBU
)

func payloadEqual(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestVideoH264(t *testing.T) {
	tr := &media.Track{ID: 0, Codec: media.CodecH264}
	v := NewVideo(tr)

	// A parameter-set-only AU: no unit, a new generation with the params.
	u, changed := v.Unit(0, 0, [][]byte{h264AUD, h264SPS, h264PPS})
	if u != nil || !changed {
		t.Fatalf("SPS/PPS-only AU: got unit %v changed %v, want nil and true", u, changed)
	}
	g1 := v.Track()
	if g1 == tr || g1.Generation != 1 || !bytes.Equal(g1.SPS, h264SPS) || !bytes.Equal(g1.PPS, h264PPS) {
		t.Fatalf("after params: track %+v", g1)
	}
	if tr.SPS != nil || tr.Generation != 0 {
		t.Fatal("the original track was modified")
	}
	if g1.Width == 0 || g1.Height == 0 {
		t.Errorf("width/height not filled from the SPS: %dx%d", g1.Width, g1.Height)
	}

	tests := []struct {
		name    string
		au      [][]byte
		want    [][]byte
		key     bool
		changed bool
	}{
		{"IDR without params gets them prepended", [][]byte{h264IDR}, [][]byte{h264SPS, h264PPS, h264IDR}, true, false},
		{"AUD dropped", [][]byte{h264AUD, h264SEI, h264IDR}, [][]byte{h264SPS, h264PPS, h264SEI, h264IDR}, true, false},
		{"IDR with params kept as is", [][]byte{h264SPS, h264PPS, h264IDR}, [][]byte{h264SPS, h264PPS, h264IDR}, true, false},
		{"IDR with PPS only gets the full set", [][]byte{h264PPS, h264IDR}, [][]byte{h264SPS, h264PPS, h264IDR}, true, false},
		{"non-IDR", [][]byte{h264AUD, h264NonIDR}, [][]byte{h264NonIDR}, false, false},
		{"empty NALUs skipped", [][]byte{{}, h264NonIDR, nil}, [][]byte{h264NonIDR}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, changed := v.Unit(40*time.Millisecond, 20*time.Millisecond, tc.au)
			if changed != tc.changed {
				t.Errorf("changed = %v, want %v", changed, tc.changed)
			}
			if u == nil {
				t.Fatal("no unit")
			}
			if u.KeyFrame != tc.key || u.PTS != 40*time.Millisecond || u.DTS != 20*time.Millisecond || u.Track != g1 {
				t.Errorf("unit key=%v pts=%v dts=%v track gen %d", u.KeyFrame, u.PTS, u.DTS, u.Track.Generation)
			}
			if !payloadEqual(u.Payload, tc.want) {
				t.Errorf("payload = %x, want %x", u.Payload, tc.want)
			}
		})
	}

	// A new SPS: a new generation; the unit points at it and carries it.
	u, changed = v.Unit(time.Second, time.Second, [][]byte{h264SPS2, h264IDR})
	if !changed || u == nil {
		t.Fatalf("new SPS: changed %v unit %v", changed, u)
	}
	g2 := v.Track()
	if g2 == g1 || g2.Generation != 2 || !bytes.Equal(g2.SPS, h264SPS2) || !bytes.Equal(g2.PPS, h264PPS) {
		t.Fatalf("new generation: %+v", g2)
	}
	if g2.Width != 1920 || g2.Height != 1080 {
		t.Errorf("new generation size %dx%d, want 1920x1080", g2.Width, g2.Height)
	}
	if u.Track != g2 || !payloadEqual(u.Payload, [][]byte{h264SPS2, h264PPS, h264IDR}) {
		t.Errorf("unit after new SPS: track gen %d payload %x", u.Track.Generation, u.Payload)
	}
	if !bytes.Equal(g1.SPS, h264SPS) {
		t.Error("the previous generation was modified")
	}
	// The same SPS again is no change.
	if _, changed := v.Unit(2*time.Second, 2*time.Second, [][]byte{h264SPS2, h264PPS, h264IDR}); changed {
		t.Error("the same parameter sets made a new generation")
	}
}

func TestVideoH264NoParamsYet(t *testing.T) {
	v := NewVideo(&media.Track{Codec: media.CodecH264})
	u, changed := v.Unit(0, 0, [][]byte{h264IDR})
	if changed || u == nil || !u.KeyFrame || !payloadEqual(u.Payload, [][]byte{h264IDR}) {
		t.Fatalf("IDR with no known params: changed %v unit %+v", changed, u)
	}
}

func TestVideoH265(t *testing.T) {
	v := NewVideo(&media.Track{Codec: media.CodecH265, VPS: h265VPS, SPS: h265SPS, PPS: h265PPS})
	g0 := v.Track()
	if g0.Width == 0 {
		t.Errorf("NewVideo did not fill the size from the SPS")
	}
	tests := []struct {
		name string
		au   [][]byte
		want [][]byte
		key  bool
	}{
		{"IDR without params", [][]byte{h265AUD, h265IDR}, [][]byte{h265VPS, h265SPS, h265PPS, h265IDR}, true},
		{"CRA without params", [][]byte{h265CRA}, [][]byte{h265VPS, h265SPS, h265PPS, h265CRA}, true},
		{"IDR with SPS and PPS but no VPS", [][]byte{h265SPS, h265PPS, h265IDR}, [][]byte{h265VPS, h265SPS, h265PPS, h265IDR}, true},
		{"trail", [][]byte{h265AUD, h265Trail}, [][]byte{h265Trail}, false},
		{"1-byte NALU skipped", [][]byte{{0x26}, h265Trail}, [][]byte{h265Trail}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, changed := v.Unit(0, 0, tc.au)
			if changed || u == nil {
				t.Fatalf("changed %v unit %v", changed, u)
			}
			if u.KeyFrame != tc.key || !payloadEqual(u.Payload, tc.want) {
				t.Errorf("key %v payload %x, want %v %x", u.KeyFrame, u.Payload, tc.key, tc.want)
			}
		})
	}
	// Params only: nil unit; a changed PPS is a new generation.
	pps2 := []byte{0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40}
	u, changed := v.Unit(0, 0, [][]byte{h265VPS, h265SPS, pps2})
	if u != nil || !changed {
		t.Fatalf("params-only AU: unit %v changed %v", u, changed)
	}
	g1 := v.Track()
	if g1 == g0 || g1.Generation != g0.Generation+1 || !bytes.Equal(g1.PPS, pps2) || !bytes.Equal(g1.VPS, h265VPS) {
		t.Fatalf("new generation %+v", g1)
	}
	u, _ = v.Unit(0, 0, [][]byte{h265IDR})
	if !payloadEqual(u.Payload, [][]byte{h265VPS, h265SPS, pps2, h265IDR}) || u.Track != g1 {
		t.Errorf("IDR after new PPS: %x", u.Payload)
	}
}

func TestVideoAV1(t *testing.T) {
	v := NewVideo(&media.Track{Codec: media.CodecAV1})
	u, changed := v.Unit(0, 0, [][]byte{av1TD, av1Seq1, av1Fr})
	if !changed || u == nil || !u.KeyFrame {
		t.Fatalf("first TU with sequence header: changed %v unit %+v", changed, u)
	}
	g1 := v.Track()
	if g1.Generation != 1 || !bytes.Equal(g1.AV1SequenceHeader, av1Seq1) || g1.Width != 1920 || g1.Height != 804 {
		t.Fatalf("generation 1: %+v", g1)
	}
	if !payloadEqual(u.Payload, [][]byte{av1Seq1, av1Fr}) {
		t.Errorf("temporal delimiter not dropped: %x", u.Payload)
	}
	u, changed = v.Unit(0, 0, [][]byte{av1TD, av1Fr})
	if changed || u == nil || u.KeyFrame || u.Track != g1 {
		t.Fatalf("TU without sequence header: changed %v unit %+v", changed, u)
	}
	if _, changed = v.Unit(0, 0, [][]byte{av1Seq1, av1Fr}); changed {
		t.Error("the same sequence header made a new generation")
	}
	if u, changed = v.Unit(0, 0, [][]byte{av1Seq2, av1Fr}); !changed || v.Track().Generation != 2 || u.Track != v.Track() {
		t.Errorf("a new sequence header: changed %v gen %d", changed, v.Track().Generation)
	}
	if u, _ := v.Unit(0, 0, [][]byte{av1TD}); u != nil {
		t.Errorf("a TU of only a temporal delimiter gave a unit: %+v", u)
	}
}

func TestUnwrapper(t *testing.T) {
	const P = time.Duration(1<<32) * time.Millisecond
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	w := Unwrapper{Period: P}
	steps := []struct{ in, want time.Duration }{
		{P - ms(2000), P - ms(2000)},
		{P - ms(1000), P - ms(1000)},
		{P - ms(1040), P - ms(1040)}, // slightly out of order: no wrap
		{P - ms(1), P - ms(1)},
		{ms(39), P + ms(39)},     // wrapped forward
		{P - ms(20), P - ms(20)}, // a late value from before the wrap
		{ms(79), P + ms(79)},
		{ms(1000), P + ms(1000)},
		{P/2 - ms(1000), P + P/2 - ms(1000)}, // forward by less than half a period
		{P - ms(1000), 2*P - ms(1000)},
		{ms(10), 2*P + ms(10)}, // second wrap
	}
	for i, s := range steps {
		if got := w.Unwrap(s.in); got != s.want {
			t.Fatalf("step %d: Unwrap(%v) = %v, want %v", i, s.in, got, s.want)
		}
	}
}

func TestUnwrapperStartsAtZero(t *testing.T) {
	w := Unwrapper{Period: 1 << 33}
	prev := time.Duration(-1)
	for v := time.Duration(0); v < 10*(1<<33); v += 1 << 28 {
		got := w.Unwrap(v % (1 << 33))
		if got != v || got <= prev {
			t.Fatalf("Unwrap(%v) = %v, want %v", v%(1<<33), got, v)
		}
		prev = got
	}
}
