package flv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/abema/go-mp4"
	"github.com/bluenviron/gortmplib/pkg/amf0"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
)

var (
	h264SPS  = testfixtures.H264SPS
	h264PPS  = testfixtures.H264PPS
	h264SPS2 = testfixtures.H264SPS2
	h265VPS  = testfixtures.H265VPS
	h265SPS  = testfixtures.H265SPS
	h265PPS  = testfixtures.H265PPS
	av1Seq   = testfixtures.AV1SequenceHeader
	aacASC   = []byte{0x12, 0x10} // AAC-LC 44.1 kHz stereo
)

func readAll(t *testing.T, b []byte) (*Reader, []Tag) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	var tags []Tag
	for {
		tag, err := r.Read()
		if errors.Is(err, io.EOF) {
			return r, tags
		}
		if err != nil {
			t.Fatalf("Read after %d tags: %v", len(tags), err)
		}
		tag.Body = append([]byte(nil), tag.Body...)
		tags = append(tags, tag)
	}
}

func TestUnitTagsRoundTrip(t *testing.T) {
	h264 := &media.Track{ID: 0, Codec: media.CodecH264, SPS: h264SPS, PPS: h264PPS}
	h265 := &media.Track{ID: 0, Codec: media.CodecH265, VPS: h265VPS, SPS: h265SPS, PPS: h265PPS}
	av1 := &media.Track{ID: 0, Codec: media.CodecAV1, AV1SequenceHeader: av1Seq}
	aac := &media.Track{ID: 1, Codec: media.CodecAAC, AudioConfig: aacASC, SampleRate: 44100, Channels: 2}
	opus := &media.Track{ID: 1, Codec: media.CodecOpus, SampleRate: 48000, Channels: 2}
	mp3 := &media.Track{ID: 1, Codec: media.CodecMP3}
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

	idr := []byte{0x65, 1, 2, 3}
	tests := []struct {
		name       string
		u          *media.Unit
		typ        byte
		ts         uint32
		key        bool
		wantHeader []byte // body prefix
		wantRest   []byte // body after the prefix
	}{
		{"h264 key", &media.Unit{Track: h264, DTS: ms(1000), PTS: ms(1040), KeyFrame: true, Payload: [][]byte{h264SPS, idr}},
			TagVideo, 1000, true, []byte{0x17, 1, 0, 0, 40},
			append(append([]byte{0, 0, 0, byte(len(h264SPS))}, h264SPS...), 0, 0, 0, 4, 0x65, 1, 2, 3)},
		{"h264 inter, negative cts", &media.Unit{Track: h264, DTS: ms(1080), PTS: ms(1040), Payload: [][]byte{{0x41, 9}}},
			TagVideo, 1080, false, []byte{0x27, 1, 0xff, 0xff, 0xd8}, []byte{0, 0, 0, 2, 0x41, 9}},
		{"h264 past 2^24 ms", &media.Unit{Track: h264, DTS: ms(1<<24 + 5), PTS: ms(1<<24 + 5), Payload: [][]byte{{0x41, 9}}},
			TagVideo, 1<<24 + 5, false, []byte{0x27, 1, 0, 0, 0}, []byte{0, 0, 0, 2, 0x41, 9}},
		{"h264 past 2^31 ms", &media.Unit{Track: h264, DTS: ms(1<<31 + 7), PTS: ms(1<<31 + 7), Payload: [][]byte{{0x41, 9}}},
			TagVideo, 1<<31 + 7, false, []byte{0x27, 1, 0, 0, 0}, []byte{0, 0, 0, 2, 0x41, 9}},
		{"h264 wraps at 2^32 ms", &media.Unit{Track: h264, DTS: ms(1<<32 + 3), PTS: ms(1<<32 + 3), Payload: [][]byte{{0x41, 9}}},
			TagVideo, 3, false, []byte{0x27, 1, 0, 0, 0}, []byte{0, 0, 0, 2, 0x41, 9}},
		{"h265 key", &media.Unit{Track: h265, DTS: ms(20), PTS: ms(100), KeyFrame: true, Payload: [][]byte{{0x26, 1, 7}}},
			TagVideo, 20, true, []byte{0x80 | 0x10 | 1, 'h', 'v', 'c', '1', 0, 0, 80}, []byte{0, 0, 0, 3, 0x26, 1, 7}},
		{"h265 inter", &media.Unit{Track: h265, DTS: ms(60), PTS: ms(60), Payload: [][]byte{{0x02, 1, 7}}},
			TagVideo, 60, false, []byte{0x80 | 0x20 | 1, 'h', 'v', 'c', '1', 0, 0, 0}, []byte{0, 0, 0, 3, 0x02, 1, 7}},
		{"av1 key", &media.Unit{Track: av1, DTS: ms(5), PTS: ms(5), KeyFrame: true, Payload: [][]byte{av1Seq, {0x30, 1}}},
			TagVideo, 5, true, []byte{0x80 | 0x10 | 1, 'a', 'v', '0', '1'},
			append(append([]byte{av1Seq[0] | 2, byte(len(av1Seq) - 1)}, av1Seq[1:]...), 0x32, 1, 1)},
		{"aac", &media.Unit{Track: aac, DTS: ms(23), PTS: ms(23), KeyFrame: true, Payload: [][]byte{{0x21, 0x10}}},
			TagAudio, 23, false, []byte{0xAF, 1}, []byte{0x21, 0x10}},
		{"opus", &media.Unit{Track: opus, DTS: ms(20), PTS: ms(20), KeyFrame: true, Payload: [][]byte{{0xfc, 0xff}}},
			TagAudio, 20, false, []byte{0x91, 'O', 'p', 'u', 's'}, []byte{0xfc, 0xff}},
		{"mp3", &media.Unit{Track: mp3, DTS: ms(26), PTS: ms(26), KeyFrame: true, Payload: [][]byte{{0xff, 0xfb, 0x90}}},
			TagAudio, 26, false, []byte{0x2F}, []byte{0xff, 0xfb, 0x90}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := AppendUnitTag(nil, tc.u, tc.u.DTS)
			if shared := UnitTag(tc.u); !bytes.Equal(shared, raw) || &UnitTag(tc.u)[0] != &shared[0] {
				t.Errorf("UnitTag differs from AppendUnitTag or is not memoized")
			}
			body := Body(raw)
			want := append(append([]byte(nil), tc.wantHeader...), tc.wantRest...)
			if !bytes.Equal(body, want) {
				t.Errorf("Body = %x\nwant   %x", body, want)
			}
			if tc.ts >= 1<<24 && raw[7] != byte(tc.ts>>24) {
				t.Errorf("extended timestamp byte = %#x, want %#x", raw[7], byte(tc.ts>>24))
			}
			file := append(FileHeader(true, true), raw...)
			r, tags := readAll(t, file)
			if !r.HasAudio || !r.HasVideo {
				t.Errorf("HasAudio/HasVideo = %v/%v", r.HasAudio, r.HasVideo)
			}
			if len(tags) != 1 {
				t.Fatalf("read %d tags, want 1", len(tags))
			}
			tag := tags[0]
			if tag.Type != tc.typ || tag.Timestamp != tc.ts || !bytes.Equal(tag.Body, body) {
				t.Errorf("tag type %d ts %d body %x; want %d %d", tag.Type, tag.Timestamp, tag.Body, tc.typ, tc.ts)
			}
			if tag.IsVideoKeyFrame() != tc.key {
				t.Errorf("IsVideoKeyFrame = %v, want %v", tag.IsVideoKeyFrame(), tc.key)
			}
			if tag.IsConfig() {
				t.Error("a unit tag reads as a sequence header")
			}
		})
	}
}

func TestUnitTagSkipsWhatFLVCannotCarry(t *testing.T) {
	aac := &media.Track{Codec: media.CodecAAC}
	if b := AppendUnitTag([]byte{1}, &media.Unit{Track: aac, Payload: [][]byte{{1}, {2}}}, 0); !bytes.Equal(b, []byte{1}) {
		t.Errorf("audio unit with two frames: %x", b)
	}
	if b := AppendUnitTag(nil, &media.Unit{Track: &media.Track{Codec: media.CodecUnknown}, Payload: [][]byte{{1}}}, 0); b != nil {
		t.Errorf("unknown codec: %x", b)
	}
	if Timestamp(-time.Second) != 0 {
		t.Error("negative time not clamped")
	}
}

func TestConfigTags(t *testing.T) {
	tests := []struct {
		name   string
		track  *media.Track
		typ    byte
		prefix []byte
		check  func(t *testing.T, rec []byte)
	}{
		{"h264", &media.Track{Codec: media.CodecH264, SPS: h264SPS, PPS: h264PPS}, TagVideo, []byte{0x17, 0, 0, 0, 0},
			func(t *testing.T, rec []byte) {
				box := mp4.AVCDecoderConfiguration{AnyTypeBox: mp4.AnyTypeBox{Type: mp4.BoxTypeAvcC()}}
				if _, err := mp4.Unmarshal(bytes.NewReader(rec), uint64(len(rec)), &box, mp4.Context{}); err != nil {
					t.Fatalf("avcC does not parse: %v", err)
				}
				if box.Profile != h264SPS[1] || box.Level != h264SPS[3] || box.LengthSizeMinusOne != 3 ||
					len(box.SequenceParameterSets) != 1 || !bytes.Equal(box.SequenceParameterSets[0].NALUnit, h264SPS) ||
					len(box.PictureParameterSets) != 1 || !bytes.Equal(box.PictureParameterSets[0].NALUnit, h264PPS) {
					t.Errorf("avcC = %+v", box)
				}
			}},
		{"h265", &media.Track{Codec: media.CodecH265, VPS: h265VPS, SPS: h265SPS, PPS: h265PPS}, TagVideo,
			[]byte{0x90, 'h', 'v', 'c', '1'},
			func(t *testing.T, rec []byte) {
				var box mp4.HvcC
				if _, err := mp4.Unmarshal(bytes.NewReader(rec), uint64(len(rec)), &box, mp4.Context{}); err != nil {
					t.Fatalf("hvcC does not parse: %v", err)
				}
				if box.LengthSizeMinusOne != 3 || len(box.NaluArrays) != 3 {
					t.Fatalf("hvcC = %+v", box)
				}
				for i, want := range [][]byte{h265VPS, h265SPS, h265PPS} {
					if len(box.NaluArrays[i].Nalus) != 1 || !bytes.Equal(box.NaluArrays[i].Nalus[0].NALUnit, want) {
						t.Errorf("hvcC array %d = %+v", i, box.NaluArrays[i])
					}
				}
				if box.GeneralProfileIdc != 2 || box.GeneralLevelIdc != 123 { // Main 10, level 4.1
					t.Errorf("hvcC profile %d level %d", box.GeneralProfileIdc, box.GeneralLevelIdc)
				}
			}},
		{"av1", &media.Track{Codec: media.CodecAV1, AV1SequenceHeader: av1Seq}, TagVideo, []byte{0x90, 'a', 'v', '0', '1'},
			func(t *testing.T, rec []byte) {
				var box mp4.Av1C
				if _, err := mp4.Unmarshal(bytes.NewReader(rec), uint64(len(rec)), &box, mp4.Context{}); err != nil {
					t.Fatalf("av1C does not parse: %v", err)
				}
				if box.Marker != 1 || box.Version != 1 || box.SeqLevelIdx0 != 8 || box.ChromaSubsamplingX != 1 ||
					box.ChromaSubsamplingY != 1 || len(box.ConfigOBUs) != len(av1Seq)+1 {
					t.Errorf("av1C = %+v", box)
				}
			}},
		{"aac", &media.Track{Codec: media.CodecAAC, AudioConfig: aacASC}, TagAudio, []byte{0xAF, 0},
			func(t *testing.T, rec []byte) {
				if !bytes.Equal(rec, aacASC) {
					t.Errorf("ASC = %x", rec)
				}
			}},
		{"opus", &media.Track{Codec: media.CodecOpus, Channels: 1}, TagAudio, []byte{0x90, 'O', 'p', 'u', 's'},
			func(t *testing.T, rec []byte) {
				if len(rec) != 19 || string(rec[:8]) != "OpusHead" || rec[9] != 1 ||
					binary.LittleEndian.Uint32(rec[12:16]) != 48000 {
					t.Errorf("OpusHead = %x", rec)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := ConfigTag(tc.track, 1<<24+1)
			if err != nil || raw == nil {
				t.Fatalf("ConfigTag: %v %v", raw, err)
			}
			_, tags := readAll(t, append(FileHeader(true, true), raw...))
			if len(tags) != 1 {
				t.Fatalf("%d tags", len(tags))
			}
			tag := tags[0]
			if tag.Type != tc.typ || tag.Timestamp != 1<<24+1 || !tag.IsConfig() || tag.IsVideoKeyFrame() {
				t.Errorf("type %d ts %d IsConfig %v IsVideoKeyFrame %v", tag.Type, tag.Timestamp, tag.IsConfig(), tag.IsVideoKeyFrame())
			}
			if !bytes.HasPrefix(tag.Body, tc.prefix) {
				t.Fatalf("body %x does not start with %x", tag.Body, tc.prefix)
			}
			tc.check(t, tag.Body[len(tc.prefix):])
		})
	}

	// No parameters yet: no tag, no error. MP3 needs none.
	for _, tr := range []*media.Track{{Codec: media.CodecH264}, {Codec: media.CodecH265, SPS: h265SPS}, {Codec: media.CodecAV1},
		{Codec: media.CodecAAC}, {Codec: media.CodecMP3}} {
		if raw, err := ConfigTag(tr, 0); raw != nil || err != nil {
			t.Errorf("%s without params: %x %v", tr.Codec, raw, err)
		}
	}
	if _, err := ConfigTag(&media.Track{Codec: media.CodecUnknown}, 0); !errors.Is(err, ErrUnsupportedCodec) {
		t.Errorf("unknown codec: %v", err)
	}
	if _, err := ConfigTag(&media.Track{Codec: media.CodecH265, VPS: h265VPS, SPS: []byte{0x42, 1, 2}, PPS: h265PPS}, 0); err == nil {
		t.Error("bad H265 SPS accepted")
	}
	if _, err := ConfigTag(&media.Track{Codec: media.CodecH264, SPS: []byte{0x67}, PPS: h264PPS}, 0); err == nil {
		t.Error("short H264 SPS accepted")
	}
	if _, err := ConfigTag(&media.Track{Codec: media.CodecAV1, AV1SequenceHeader: []byte{0x30, 1}}, 0); err == nil {
		t.Error("AV1 frame OBU accepted as a sequence header")
	}
}

func TestMetadataBody(t *testing.T) {
	tracks := []*media.Track{
		{ID: 0, Codec: media.CodecH264, Width: 1280, Height: 720, FPS: 30},
		{ID: 1, Codec: media.CodecAAC, SampleRate: 44100, Channels: 2},
	}
	raw := AppendTag(nil, TagScript, 0, MetadataBody(tracks))
	_, tags := readAll(t, append(FileHeader(true, true), raw...))
	if len(tags) != 1 || tags[0].Type != TagScript || tags[0].IsConfig() || tags[0].IsVideoKeyFrame() {
		t.Fatalf("tags %+v", tags)
	}
	data, err := amf0.Unmarshal(tags[0].Body)
	if err != nil {
		t.Fatalf("AMF0: %v", err)
	}
	if len(data) != 2 || data[0] != "onMetaData" {
		t.Fatalf("AMF0 data %#v", data)
	}
	arr, ok := data[1].(amf0.ECMAArray)
	if !ok {
		t.Fatalf("second value is %T, want an ECMA array", data[1])
	}
	obj := amf0.Object(arr)
	for key, want := range map[string]any{
		"videocodecid": float64(7), "width": float64(1280), "height": float64(720), "framerate": float64(30),
		"audiocodecid": float64(10), "audiosamplerate": float64(44100), "stereo": true, "encoder": "streamhub",
	} {
		if got, ok := obj.Get(key); !ok || got != want {
			t.Errorf("%s = %v (%v), want %v", key, got, ok, want)
		}
	}

	// Enhanced codecs are announced by their FourCC.
	data, err = amf0.Unmarshal(MetadataBody([]*media.Track{{Codec: media.CodecH265}, {Codec: media.CodecOpus}}))
	if err != nil {
		t.Fatal(err)
	}
	obj = amf0.Object(data[1].(amf0.ECMAArray))
	if v, _ := obj.Get("videocodecid"); v != float64(binary.BigEndian.Uint32([]byte("hvc1"))) {
		t.Errorf("H265 videocodecid = %v", v)
	}
	if v, _ := obj.Get("audiocodecid"); v != float64(binary.BigEndian.Uint32([]byte("Opus"))) {
		t.Errorf("Opus audiocodecid = %v", v)
	}
}

func TestReaderErrors(t *testing.T) {
	if _, err := NewReader(bytes.NewReader([]byte("GIF89a......."))); !errors.Is(err, ErrBadHeader) {
		t.Errorf("not FLV: %v", err)
	}
	if _, err := NewReader(bytes.NewReader([]byte("FLV"))); err == nil {
		t.Error("short header accepted")
	}
	h := FileHeader(true, false)
	binary.BigEndian.PutUint32(h[5:9], 5)
	if _, err := NewReader(bytes.NewReader(h)); err == nil {
		t.Error("header size 5 accepted")
	}
	// A header with a larger data offset: the extra bytes are skipped.
	h = append(FileHeader(false, true)[:9], 0xAA, 0xBB, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(h[5:9], 11)
	r, tags := readAll(t, append(h, AppendTag(nil, TagAudio, 9, []byte{0xAF, 1, 2})...))
	if r.HasVideo || !r.HasAudio || len(tags) != 1 || tags[0].Timestamp != 9 {
		t.Errorf("offset header: video %v audio %v tags %+v", r.HasVideo, r.HasAudio, tags)
	}

	good := AppendTag(nil, TagVideo, 0, []byte{0x27, 1, 0, 0, 0})
	bad := append([]byte(nil), good...)
	bad[len(bad)-1]++ // PreviousTagSize mismatch
	r, _ = NewReader(bytes.NewReader(append(FileHeader(true, false), bad...)))
	if _, err := r.Read(); err == nil {
		t.Error("a wrong PreviousTagSize was accepted")
	}
	r, _ = NewReader(bytes.NewReader(append(FileHeader(true, false), good[:len(good)-3]...)))
	if _, err := r.Read(); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("truncated tag: %v, want an error other than EOF", err)
	}
	huge := []byte{TagVideo, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0}
	r, _ = NewReader(bytes.NewReader(append(FileHeader(true, false), huge...)))
	if _, err := r.Read(); err == nil {
		t.Error("a tag over MaxTagSize was accepted")
	}
}

func TestIsVideoKeyFrameAndIsConfig(t *testing.T) {
	tests := []struct {
		typ         byte
		body        []byte
		key, config bool
	}{
		{TagVideo, []byte{0x17, 0}, false, true},           // AVC sequence header
		{TagVideo, []byte{0x17, 1}, true, false},           // AVC key NALUs
		{TagVideo, []byte{0x17, 2}, false, false},          // AVC end of sequence
		{TagVideo, []byte{0x27, 1}, false, false},          // AVC inter
		{TagVideo, []byte{0x12, 0}, true, false},           // Sorenson key frame
		{TagVideo, []byte{0x90, 'h'}, false, true},         // enhanced sequence start
		{TagVideo, []byte{0x91, 'h'}, true, false},         // enhanced coded frames key
		{TagVideo, []byte{0x93, 'h'}, true, false},         // enhanced frames X key
		{TagVideo, []byte{0xA1, 'h'}, false, false},        // enhanced inter
		{TagVideo, []byte{0x17}, false, false},             // too short
		{TagAudio, []byte{0xAF, 0}, false, true},           // AAC sequence header
		{TagAudio, []byte{0xAF, 1}, false, false},          // AAC raw
		{TagAudio, []byte{0x90, 'O', 'p'}, false, true},    // enhanced audio sequence start
		{TagAudio, []byte{0x91, 'O', 'p'}, false, false},   // enhanced audio coded frames
		{TagScript, []byte{0x17, 0}, false, false},         // script
		{TagAudio, []byte{0x2F, 0xff, 0xfb}, false, false}, // MP3
	}
	for _, tc := range tests {
		tag := Tag{Type: tc.typ, Body: tc.body}
		if tag.IsVideoKeyFrame() != tc.key || tag.IsConfig() != tc.config {
			t.Errorf("type %d body %x: key %v config %v, want %v %v", tc.typ, tc.body, tag.IsVideoKeyFrame(), tag.IsConfig(), tc.key, tc.config)
		}
	}
}

func TestMuxer(t *testing.T) {
	v0 := &media.Track{ID: 0, Codec: media.CodecH264, SPS: h264SPS, PPS: h264PPS}
	a0 := &media.Track{ID: 1, Codec: media.CodecAAC, AudioConfig: aacASC, SampleRate: 44100, Channels: 2}
	v2 := &media.Track{ID: 2, Codec: media.CodecH264, SPS: h264SPS, PPS: h264PPS} // a second video track: skipped
	m := NewMuxer([]*media.Track{v0, a0, v2})
	if !m.HasVideo() || !m.HasAudio() {
		t.Fatal("HasVideo/HasAudio")
	}
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	vu := func(tr *media.Track, dts int64, key bool) *media.Unit {
		return &media.Unit{Track: tr, DTS: ms(dts), PTS: ms(dts), KeyFrame: key, Payload: [][]byte{{0x65, 1}}}
	}
	au := func(tr *media.Track, dts int64) *media.Unit {
		return &media.Unit{Track: tr, DTS: ms(dts), PTS: ms(dts), KeyFrame: true, Payload: [][]byte{{0x21}}}
	}
	kinds := func(tags [][]byte) []string {
		var out []string
		for _, raw := range tags {
			tag := Tag{Type: raw[0], Body: Body(raw)}
			switch {
			case tag.IsConfig() && tag.Type == TagVideo:
				out = append(out, "vcfg")
			case tag.IsConfig():
				out = append(out, "acfg")
			case tag.Type == TagVideo:
				out = append(out, "v")
			default:
				out = append(out, "a")
			}
		}
		return out
	}
	step := func(u *media.Unit, want ...string) {
		t.Helper()
		got := kinds(m.Append(nil, u))
		if len(got) != len(want) || (len(want) > 0 && string(bytes.Join(toBytes(got), nil)) != string(bytes.Join(toBytes(want), nil))) {
			t.Errorf("Append(%s dts %v) = %v, want %v", u.Track.Codec, u.DTS, got, want)
		}
	}
	if meta := m.MetadataTag(); meta[0] != TagScript {
		t.Errorf("MetadataTag type %d", meta[0])
	}
	step(vu(v0, 0, true), "vcfg", "v")
	step(au(a0, 0), "acfg", "a")
	step(vu(v0, 40, false), "v")
	step(au(a0, 23), "a")
	step(vu(v2, 40, true)) // not carried
	// A new generation with the same parameters: no new sequence header.
	v0b := *v0
	v0b.Generation = 1
	step(vu(&v0b, 80, true), "v")
	// New parameters: a new sequence header, once.
	v0c := v0b
	v0c.Generation, v0c.SPS = 2, h264SPS2
	step(vu(&v0c, 120, true), "vcfg", "v")
	step(vu(&v0c, 160, false), "v")
	a0b := *a0
	a0b.Generation, a0b.AudioConfig = 1, []byte{0x11, 0x90}
	step(au(&a0b, 46), "acfg", "a")
	step(au(&a0b, 69), "a")

	// The sequence header carries the unit's timestamp.
	tags := m.Append(nil, vu(&media.Track{ID: 0, Codec: media.CodecH264, SPS: h264SPS, PPS: h264PPS, Generation: 3}, 1<<24+10, true))
	first := Tag{Type: tags[0][0], Body: Body(tags[0])}
	if len(tags) != 2 || !first.IsConfig() {
		t.Fatalf("tags %v", kinds(tags))
	}
	if ts := uint32(tags[0][7])<<24 | uint32(tags[0][4])<<16 | uint32(tags[0][5])<<8 | uint32(tags[0][6]); ts != 1<<24+10 {
		t.Errorf("sequence header timestamp %d", ts)
	}
}

func TestMuxerVideoWithoutParams(t *testing.T) {
	noParams := &media.Track{ID: 0, Codec: media.CodecH264}
	m := NewMuxer([]*media.Track{noParams})
	if tags := m.Append(nil, &media.Unit{Track: noParams, KeyFrame: true, Payload: [][]byte{{0x65}}}); len(tags) != 0 {
		t.Errorf("video before its parameters gave %d tags", len(tags))
	}
	withParams := &media.Track{ID: 0, Codec: media.CodecH264, SPS: h264SPS, PPS: h264PPS, Generation: 1}
	if tags := m.Append(nil, &media.Unit{Track: withParams, KeyFrame: true, Payload: [][]byte{{0x65}}}); len(tags) != 2 {
		t.Errorf("first unit with parameters gave %d tags, want 2", len(tags))
	}

	// Audio-only muxer: a video track that appears after a republish is taken.
	a := &media.Track{ID: 0, Codec: media.CodecOpus, Channels: 2}
	m = NewMuxer([]*media.Track{a})
	if m.HasVideo() || !m.HasAudio() {
		t.Error("HasVideo/HasAudio for an audio-only stream")
	}
	if tags := m.Append(nil, &media.Unit{Track: a, KeyFrame: true, Payload: [][]byte{{1}}}); len(tags) != 2 {
		t.Errorf("first Opus unit gave %d tags, want 2", len(tags))
	}
	v := &media.Track{ID: 1, Codec: media.CodecAV1, AV1SequenceHeader: av1Seq}
	if tags := m.Append(nil, &media.Unit{Track: v, KeyFrame: true, Payload: [][]byte{av1Seq}}); len(tags) != 2 {
		t.Errorf("late video track gave %d tags, want 2", len(tags))
	}
}

func toBytes(s []string) [][]byte {
	out := make([][]byte, len(s))
	for i, v := range s {
		out[i] = []byte(v + ",")
	}
	return out
}

// TestUnitPartsOfRetimedUnits: a retimed unit's parts (its own head, the
// original's shared rest) are exactly the tag serialized for it alone,
// a changed composition time included; the rest is the original's own
// bytes; IsHead tells the head from a whole tag.
func TestUnitPartsOfRetimedUnits(t *testing.T) {
	v := &media.Track{ID: 0, Codec: media.CodecH264, SPS: []byte{0x67, 0x42, 0, 0x1e}, PPS: []byte{0x68, 0xce}}
	hv := &media.Track{ID: 0, Codec: media.CodecH265, VPS: h265VPS, SPS: h265SPS, PPS: h265PPS}
	a := &media.Track{ID: 1, Codec: media.CodecAAC, AudioConfig: aacASC, SampleRate: 44100, Channels: 2}
	ms := time.Millisecond
	for _, tc := range []struct {
		name         string
		orig, retime *media.Unit
		shared       bool
	}{
		{"picture", &media.Unit{Track: v, DTS: 2000 * ms, PTS: 2000 * ms, KeyFrame: true, Payload: [][]byte{{0x65, 1, 2, 3}}},
			&media.Unit{Track: v, DTS: 1950 * ms, PTS: 1950 * ms, KeyFrame: true, Payload: [][]byte{{0x65, 1, 2, 3}}}, true},
		{"B-frame order kept", &media.Unit{Track: v, DTS: 2000 * ms, PTS: 2066 * ms, Payload: [][]byte{{0x41, 9}}},
			&media.Unit{Track: v, DTS: 1990 * ms, PTS: 2056 * ms, Payload: [][]byte{{0x41, 9}}}, true},
		{"B-frame squeezed", &media.Unit{Track: v, DTS: 2000 * ms, PTS: 2066 * ms, Payload: [][]byte{{0x41, 9}}},
			&media.Unit{Track: v, DTS: 1990 * ms, PTS: 1995 * ms, Payload: [][]byte{{0x41, 9}}}, true},
		{"B-frame squeezed below its decode time", &media.Unit{Track: v, DTS: 2000 * ms, PTS: 2066 * ms, Payload: [][]byte{{0x41, 9}}},
			&media.Unit{Track: v, DTS: 1990 * ms, PTS: 1980 * ms, Payload: [][]byte{{0x41, 9}}}, true},
		{"H.265 squeezed", &media.Unit{Track: hv, DTS: 2000 * ms, PTS: 2066 * ms, Payload: [][]byte{{0x02, 1, 9}}},
			&media.Unit{Track: hv, DTS: 1990 * ms, PTS: 2023 * ms, Payload: [][]byte{{0x02, 1, 9}}}, true},
		{"keyframe flag changed", &media.Unit{Track: v, DTS: 2000 * ms, PTS: 2000 * ms, Payload: [][]byte{{0x41, 9}}},
			&media.Unit{Track: v, DTS: 1990 * ms, PTS: 1990 * ms, KeyFrame: true, Payload: [][]byte{{0x41, 9}}}, false},
		{"sound", &media.Unit{Track: a, DTS: 2000 * ms, PTS: 2000 * ms, Payload: [][]byte{{0x21, 0x10}}},
			&media.Unit{Track: a, DTS: 16777300 * ms, PTS: 16777300 * ms, Payload: [][]byte{{0x21, 0x10}}}, true}, // extended timestamp byte
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.retime.Orig = tc.orig
			head, rest := UnitParts(tc.retime)
			whole := AppendUnitTag(nil, tc.retime, tc.retime.DTS)
			if got := append(append([]byte(nil), head...), rest...); !bytes.Equal(got, whole) {
				t.Fatalf("parts % x | % x\nwant % x", head, rest, whole)
			}
			if tc.shared != (rest != nil) {
				t.Fatalf("shared %v, want %v", rest != nil, tc.shared)
			}
			if rest != nil && &rest[0] != &UnitTag(tc.orig)[len(head)] {
				t.Fatal("the rest is a copy, not the original's bytes")
			}
			if IsHead(head) != tc.shared || IsHead(whole) {
				t.Fatalf("IsHead(head) %v, IsHead(whole tag) %v; want %v, false", IsHead(head), IsHead(whole), tc.shared)
			}
		})
	}
}

// Plain holds only once every track of the batch has been started by the
// muxer, and not across a republish or for a track it does not carry.
func TestMuxerPlain(t *testing.T) {
	v := &media.Track{ID: 0, Codec: media.CodecH264, SPS: testfixtures.H264SPS, PPS: testfixtures.H264PPS, Session: 1}
	a := &media.Track{ID: 1, Codec: media.CodecAAC, AudioConfig: []byte{0x12, 0x10}, SampleRate: 44100, Channels: 2, Session: 1}
	vu := &media.Unit{Track: v, KeyFrame: true, Payload: [][]byte{{0x65, 1}}}
	au := &media.Unit{Track: a, KeyFrame: true, Payload: [][]byte{{0x21, 1}}}
	m := NewMuxer([]*media.Track{v, a})
	if m.Plain([]*media.Unit{vu}) {
		t.Error("plain before the video's sequence header")
	}
	m.Append(nil, vu)
	if !m.Plain([]*media.Unit{vu, vu}) {
		t.Error("not plain once the video started")
	}
	if m.Plain([]*media.Unit{vu, au}) {
		t.Error("plain before the audio's sequence header")
	}
	m.Append(nil, au)
	if !m.Plain([]*media.Unit{au, vu}) {
		t.Error("not plain once both started")
	}
	v2 := *v
	v2.SPS = testfixtures.H264SPS2
	if m.Plain([]*media.Unit{{Track: &v2, Payload: [][]byte{{0x41}}}}) {
		t.Error("plain for a new track (its sequence header is due)")
	}
	v3 := *v
	v3.Session = 2
	if m.Plain([]*media.Unit{{Track: &v3, Payload: [][]byte{{0x41}}}}) {
		t.Error("plain across a republish")
	}
	a2 := *a
	a2.ID = 5
	if m.Plain([]*media.Unit{{Track: &a2, Payload: [][]byte{{0x21}}}}) {
		t.Error("plain for an audio track the muxer does not carry")
	}
}
