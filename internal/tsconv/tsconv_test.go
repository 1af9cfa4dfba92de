package tsconv

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/internal/units"
	"github.com/streamhub/streamhub/media"
)

func fixtureTS(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../testfixtures/bframes.ts")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkWriter checks what ingest hands the hub.
type checkWriter struct {
	t       *testing.T
	lastDTS map[int]time.Duration
}

func (w *checkWriter) Write(u *media.Unit) {
	if u.Track == nil || len(u.Payload) == 0 {
		w.t.Fatalf("unit without track or payload")
	}
	if last, ok := w.lastDTS[u.Track.ID]; ok && u.DTS < last {
		w.t.Fatalf("track %d DTS went back: %v after %v", u.Track.ID, u.DTS, last)
	}
	w.lastDTS[u.Track.ID] = u.DTS
	for _, p := range u.Payload {
		if len(p) == 0 {
			w.t.Fatal("empty NALU or frame")
		}
	}
}

func (w *checkWriter) UpdateTrack(*media.Track) {}

// FuzzTSIngest feeds arbitrary MPEG-TS, as an SRT publisher could send it,
// through the demuxer and the unit building.
func FuzzTSIngest(f *testing.F) {
	ts := fixtureTS(f)
	f.Add(ts[:min(len(ts), 188*60)])
	f.Add(ts[188*10 : 188*40])
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &mpegts.Reader{R: bytes.NewReader(data)}
		if r.Initialize() != nil {
			return
		}
		in, err := NewIngest(r, func(error) {})
		if err != nil {
			return
		}
		in.SetWriter(&checkWriter{t: t, lastDTS: map[int]time.Duration{}})
		r.OnDecodeError(func(error) {})
		for r.Read() == nil {
		}
	})
}

type collect struct{ units []*media.Unit }

func (c *collect) Write(u *media.Unit)        { c.units = append(c.units, u) }
func (c *collect) UpdateTrack(t *media.Track) {}

// MPEG-TS timestamps wrap at 2^33 (26.5 hours at 90 kHz): the hub's
// timeline goes on increasing.
func TestPTSWrap(t *testing.T) {
	v := &media.Track{ID: 0, Codec: media.CodecH264}
	a := &media.Track{ID: 1, Codec: media.CodecAAC, SampleRate: 48000}
	in := newIngest(func(err error) { t.Log(err) })
	in.video[0] = units.NewVideo(v)
	in.tracks = []*media.Track{v, a}
	out := &collect{}
	in.pub = out
	const wrap = int64(1) << 33
	start := wrap - 10*3600
	for i := int64(0); i < 20; i++ {
		ts := (start + i*3600) % wrap
		au := [][]byte{{0x41, 0x9a, byte(i)}}
		if i == 0 {
			au = [][]byte{testfixtures.H264SPS, testfixtures.H264PPS, {0x65, 0x88, 0x84}}
		}
		in.videoAU(0, ts, ts, au)
		in.audio(1, ts, [][]byte{{1, 2, 3}}, func([]byte) int64 { return 1024 }, 48000)
	}
	var lastV, lastA time.Duration = -1, -1
	nv := 0
	for _, u := range out.units {
		last := &lastA
		if u.Track.IsVideo() {
			last = &lastV
			nv++
		}
		if *last >= 0 && u.DTS <= *last {
			t.Fatalf("%s DTS %v after %v across the 33-bit wrap", u.Track.Codec, u.DTS, *last)
		}
		if u.Track.IsVideo() && *last >= 0 && u.DTS-*last != 40*time.Millisecond {
			t.Fatalf("video step %v, want 40ms", u.DTS-*last)
		}
		*last = u.DTS
	}
	if nv != 20 {
		t.Fatalf("%d video units, want 20", nv)
	}
}

// SetTimeBase gives back absolute times: a muxed stream read with the
// time base of its first unit has the very timestamps it was muxed with,
// also across the 33-bit wrap.
func TestTimeBaseRoundTrip(t *testing.T) {
	v := &media.Track{ID: 0, Codec: media.CodecH264, SPS: testfixtures.H264SPS, PPS: testfixtures.H264PPS}
	m, err := NewMuxer([]*media.Track{v})
	if err != nil {
		t.Fatal(err)
	}
	start := Ticks(1<<33 - Clock/2) // half a second before the wrap, on the 90 kHz clock
	var ts []byte
	var want []time.Duration
	for i := range 30 {
		d := start + time.Duration(i)*33*time.Millisecond
		au := [][]byte{{0x41, 0x9a, byte(i)}}
		if i%10 == 0 {
			au = [][]byte{testfixtures.H264SPS, testfixtures.H264PPS, {0x65, 0x88, 0x84}}
		}
		b, err := m.Mux(&media.Unit{Track: v, PTS: d, DTS: d, KeyFrame: i%10 == 0, Payload: au}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, b...)
		want = append(want, d)
	}
	r := &mpegts.Reader{R: bytes.NewReader(ts)}
	if err := r.Initialize(); err != nil {
		t.Fatal(err)
	}
	in, err := NewIngest(r, func(err error) { t.Log(err) })
	if err != nil {
		t.Fatal(err)
	}
	in.SetTimeBase(start)
	out := &collect{}
	in.SetWriter(out)
	for r.Read() == nil {
	}
	if len(out.units) < 25 {
		t.Fatalf("%d units back of 30", len(out.units))
	}
	for i, u := range out.units {
		if u.DTS != want[i] {
			t.Fatalf("unit %d: DTS %v, want %v", i, u.DTS, want[i])
		}
	}
}

// TestVideoPESLength: a picture's PES says its length when it fits 16
// bits (a demuxer then has the picture without waiting for the next one),
// and says 0 when it does not; the pictures read back whole.
func TestVideoPESLength(t *testing.T) {
	v := &media.Track{ID: 0, Codec: media.CodecH264, SPS: testfixtures.H264SPS, PPS: testfixtures.H264PPS}
	a := &media.Track{ID: 1, Codec: media.CodecAAC, AudioConfig: []byte{0x12, 0x10}, SampleRate: 44100, Channels: 2}
	m, err := NewMuxer([]*media.Track{v, a})
	if err != nil {
		t.Fatal(err)
	}
	tracks := func() []*media.Track { return []*media.Track{v, a} }
	var ts []byte
	sizes := []int{200, 5000, 70000, 900}
	for i, n := range sizes {
		d := time.Duration(i) * 33 * time.Millisecond
		body := bytes.Repeat([]byte{byte(i + 1)}, n)
		au := [][]byte{{0x41, 0x9a}, body}
		if i == 0 {
			au = [][]byte{testfixtures.H264SPS, testfixtures.H264PPS, append([]byte{0x65, 0x88}, body...)}
		}
		b, err := m.Mux(&media.Unit{Track: v, PTS: d, DTS: d, KeyFrame: i == 0, Payload: au}, tracks)
		if err != nil || len(b) == 0 {
			t.Fatalf("picture %d: %v", i, err)
		}
		// The PES header follows the first packet's header (and its
		// adaptation field) of the video PID with the unit start set.
		var pesLen, payload int
		found := false
		for off := 0; off+188 <= len(b); off += 188 {
			pkt := b[off : off+188]
			if uint16(pkt[1]&0x1f)<<8|uint16(pkt[2]) != 256 {
				continue
			}
			p := 4
			if pkt[3]&0x20 != 0 {
				p += 1 + int(pkt[4])
			}
			if pkt[1]&0x40 != 0 {
				pesLen, found = int(pkt[p+4])<<8|int(pkt[p+5]), true
			}
			payload += 188 - p
		}
		want := payload - 6
		if want > 0xffff {
			want = 0
		}
		if !found || pesLen != want {
			t.Errorf("picture %d (%d bytes): PES_packet_length %d, want %d", i, n, pesLen, want)
		}
		ts = append(ts, b...)
		ab, _ := m.Mux(&media.Unit{Track: a, PTS: d, DTS: d, KeyFrame: true, Payload: [][]byte{{0x21, 0x10, byte(i)}}}, tracks)
		ts = append(ts, ab...)
	}
	r := &mpegts.Reader{R: bytes.NewReader(ts)}
	if err := r.Initialize(); err != nil {
		t.Fatal(err)
	}
	var got []int
	r.OnDataH264(r.Tracks()[0], func(_, _ int64, au [][]byte) error {
		got = append(got, len(au[len(au)-1]))
		return nil
	})
	for r.Read() == nil {
	}
	if len(got) != len(sizes) {
		t.Fatalf("%d pictures read back, want %d", len(got), len(sizes))
	}
	for i, n := range sizes {
		if i == 0 {
			n += 2 // the IDR's NALU header
		}
		if got[i] != n {
			t.Errorf("picture %d read back with a last NALU of %d bytes, want %d", i, got[i], n)
		}
	}
}
