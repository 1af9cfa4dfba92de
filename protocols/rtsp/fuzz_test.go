package rtsp

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/streamhub/streamhub/media"
)

// fakeSource stands in for a ServerSession or Client: it keeps the packet
// callbacks and takes PTS straight from the RTP timestamp.
type fakeSource struct {
	cbs map[*description.Media]gortsplib.OnPacketRTPFunc
}

func (f *fakeSource) OnPacketRTP(m *description.Media, _ format.Format, cb gortsplib.OnPacketRTPFunc) {
	f.cbs[m] = cb
}

func (f *fakeSource) Close() {}

func (f *fakeSource) PacketPTS(_ *description.Media, pkt *rtp.Packet) (int64, bool) {
	return int64(pkt.Timestamp), true
}

// checkWriter checks the hub's contract on what ingest writes.
type checkWriter struct {
	t       *testing.T
	lastDTS map[int]time.Duration
	units   int
}

func (w *checkWriter) Write(u *media.Unit) {
	w.units++
	if u.Track == nil || len(u.Payload) == 0 {
		w.t.Fatalf("unit without track or payload: %+v", u)
	}
	if u.Track.IsVideo() {
		if last, ok := w.lastDTS[u.Track.ID]; ok && u.DTS < last {
			w.t.Fatalf("video DTS went back: %v after %v", u.DTS, last)
		}
		w.lastDTS[u.Track.ID] = u.DTS
		if u.PTS < u.DTS {
			w.t.Fatalf("PTS %v before DTS %v", u.PTS, u.DTS)
		}
	}
	for _, p := range u.Payload {
		if len(p) == 0 {
			w.t.Fatal("empty NALU or frame in a unit")
		}
	}
}

func (w *checkWriter) UpdateTrack(t *media.Track) {}

// fuzzDesc has one media of every kind ingest takes.
func fuzzDesc() *description.Session {
	asc := &mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelConfig: 2}
	return &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}}},
		{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H265{PayloadTyp: 97}}},
		{Type: description.MediaTypeVideo, Formats: []format.Format{&format.AV1{PayloadTyp: 98}}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.MPEG4Audio{PayloadTyp: 99, Config: asc, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.MPEG4AudioLATM{PayloadTyp: 100, CPresent: false,
			StreamMuxConfig: &mpeg4audio.StreamMuxConfig{Programs: []*mpeg4audio.StreamMuxConfigProgram{{
				Layers: []*mpeg4audio.StreamMuxConfigLayer{{AudioSpecificConfig: asc, LatmBufferFullness: 255}}}}}}}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.Opus{PayloadTyp: 101, ChannelCount: 2}}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.G711{PayloadTyp: 8, SampleRate: 8000, ChannelCount: 1}}},
	}}
}

// FuzzIngest feeds arbitrary RTP packets, as a publisher or a camera could
// send them, through the depacketizers, DTS extraction and unit building.
// Input: records of [1-byte media index][2-byte length][RTP packet].
func FuzzIngest(f *testing.F) {
	// Seeds: the fixture's first access units, packetized as a publisher does.
	fx := loadFixture(f)
	d := publishDesc(fx)
	venc, _ := d.Medias[0].Formats[0].(*format.H264).CreateEncoder()
	aenc, _ := d.Medias[1].Formats[0].(*format.MPEG4Audio).CreateEncoder()
	var seed []byte
	add := func(idx byte, pkts []*rtp.Packet, ts uint32) {
		for _, p := range pkts {
			p.Timestamp = ts
			b, _ := p.Marshal()
			seed = append(seed, idx)
			seed = binary.BigEndian.AppendUint16(seed, uint16(len(b)))
			seed = append(seed, b...)
		}
	}
	for i, fr := range fx.frames[:40] {
		if fr.video {
			pkts, _ := venc.Encode(fr.au)
			for _, p := range pkts {
				p.PayloadType = 96
			}
			add(0, pkts, uint32(fr.pts))
		} else {
			pkts, _ := aenc.Encode(fr.au)
			for _, p := range pkts {
				p.PayloadType = 99
			}
			add(3, pkts, uint32(i*1024))
		}
	}
	f.Add(seed)
	f.Add([]byte{6, 0, 14, 0x80, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 1, 0xd5, 0xd5})

	f.Fuzz(fuzzOne)
}

func fuzzOne(t *testing.T, data []byte) {
	{
		desc := fuzzDesc()
		in, err := newIngest(desc)
		if err != nil {
			t.Fatal(err)
		}
		w := &checkWriter{t: t, lastDTS: map[int]time.Duration{}}
		in.pub = w
		src := &fakeSource{cbs: map[*description.Media]gortsplib.OnPacketRTPFunc{}}
		in.register(src)
		for len(data) >= 3 {
			idx := int(data[0]) % len(desc.Medias)
			n := int(binary.BigEndian.Uint16(data[1:3]))
			data = data[3:]
			if n > len(data) {
				n = len(data)
			}
			var pkt rtp.Packet
			if pkt.Unmarshal(data[:n]) == nil {
				if cb := src.cbs[desc.Medias[idx]]; cb != nil {
					pkt.PayloadType = desc.Medias[idx].Formats[0].PayloadType()
					cb(&pkt)
				}
			}
			data = data[n:]
		}
	}
}

// FuzzPacketList checks that nextPacket never reads out of bounds and
// round-trips what appendPacketList wrote.
func FuzzPacketList(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 0, 3, 'a', 'b', 'c'})
	f.Add(appendPacketList(nil, []*rtp.Packet{{Header: rtp.Header{Timestamp: 5}, Payload: []byte{1, 2}},
		{Header: rtp.Header{Timestamp: 9, Marker: true}, Payload: []byte{3}}}, 90000))
	f.Fuzz(func(t *testing.T, list []byte) {
		var pkts []*rtp.Packet
		for len(list) > 0 {
			off, marker, payload, rest, ok := nextPacket(list)
			if !ok {
				return
			}
			if len(rest) >= len(list) {
				t.Fatal("no progress")
			}
			pkts = append(pkts, &rtp.Packet{Header: rtp.Header{Timestamp: 1000 + off, Marker: marker}, Payload: payload})
			list = rest
		}
		again := appendPacketList(nil, pkts, 90000)
		for len(again) > 0 {
			if _, _, _, rest, ok := nextPacket(again); ok {
				again = rest
				continue
			}
			t.Fatal("a list we wrote does not parse")
		}
	})
}
