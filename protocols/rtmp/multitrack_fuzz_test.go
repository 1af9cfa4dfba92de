package rtmp

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/abema/go-mp4"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/server"
)

// msgConn is a publisher whose messages are made up in advance.
type msgConn struct{ msgs []message.Message }

func (c *msgConn) BytesReceived() uint64       { return 0 }
func (c *msgConn) BytesSent() uint64           { return 0 }
func (c *msgConn) Write(message.Message) error { return nil }
func (c *msgConn) Read() (message.Message, error) {
	if len(c.msgs) == 0 {
		return nil, io.EOF
	}
	m := c.msgs[0]
	c.msgs = c.msgs[1:]
	return m, nil
}

var fuzzSPS = [][]byte{
	testfixtures.H264SPS2,
	{0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0xa4, 0x80},
	{0x67, 0x42, 0xc0, 0x0b, 0xd9, 0x02, 0x84, 0x7e, 0x5c, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0c, 0x83, 0xc5, 0x0a, 0x92},
}

func avcC(sps []byte) *mp4.AVCDecoderConfiguration {
	return &mp4.AVCDecoderConfiguration{
		ConfigurationVersion: 1, Profile: sps[1], ProfileCompatibility: sps[2], Level: sps[3],
		LengthSizeMinusOne: 3, NumOfSequenceParameterSets: 1, NumOfPictureParameterSets: 1,
		SequenceParameterSets: []mp4.AVCParameterSet{{Length: uint16(len(sps)), NALUnit: sps}},
		PictureParameterSets:  []mp4.AVCParameterSet{{Length: 4, NALUnit: testfixtures.H264PPS}},
	}
}

// fuzzMessages makes a publisher's messages from data, 4 bytes each: what
// (legacy or multitrack video, sequence start or end, frames, audio), the
// track id, the time step (100 ms units, back when the flag says) and a
// flag.
func fuzzMessages(data []byte) []message.Message {
	var out []message.Message
	dts := time.Duration(0)
	for ; len(data) >= 4; data = data[4:] {
		kind, id, step, flag := data[0]%10, data[1], time.Duration(data[2]%32)*100*time.Millisecond, data[3]
		if flag&0x80 != 0 && dts >= step {
			dts -= step
		} else {
			dts += step
		}
		idr := flag&1 == 1
		nalu := []byte{0, 0, 0, 3, 0x41, 0x9a, flag}
		if idr {
			nalu = []byte{0, 0, 0, 3, 0x65, 0x88, flag}
		}
		sps := fuzzSPS[int(flag>>1)%len(fuzzSPS)]
		const cs, ms = message.VideoChunkStreamID, 0x1000000
		switch kind {
		case 0:
			out = append(out, &message.Video{ChunkStreamID: cs, MessageStreamID: ms, Codec: message.CodecH264, IsKeyFrame: true,
				Type: message.VideoTypeConfig, DTS: dts, AVCConfig: avcC(sps)})
		case 1:
			out = append(out, &message.VideoExMultitrack{TrackID: id, Wrapped: &message.VideoExSequenceStart{ChunkStreamID: cs,
				MessageStreamID: ms, FourCC: message.FourCCAVC, AVCConfig: avcC(sps)}})
		case 2, 3:
			out = append(out, &message.VideoExMultitrack{TrackID: id, Wrapped: &message.VideoExCodedFrames{ChunkStreamID: cs,
				MessageStreamID: ms, FourCC: message.FourCCAVC, DTS: dts, Payload: nalu}})
		case 4:
			out = append(out, &message.Video{ChunkStreamID: cs, MessageStreamID: ms, Codec: message.CodecH264, IsKeyFrame: idr,
				Type: message.VideoTypeAU, DTS: dts, AU: nalu})
		case 5:
			out = append(out, &message.VideoExMultitrack{TrackID: id, Wrapped: &message.VideoExSequenceEnd{ChunkStreamID: cs,
				MessageStreamID: ms, FourCC: message.FourCCAVC}})
		case 6:
			out = append(out, &message.Audio{ChunkStreamID: message.AudioChunkStreamID, MessageStreamID: ms, Codec: message.CodecMPEG4Audio,
				Rate: message.AudioRate44100, Depth: message.AudioDepth16, IsStereo: true, AACType: message.AudioAACTypeConfig, DTS: dts,
				AACConfig: &mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 44100, ChannelCount: 2}})
		case 7:
			out = append(out, &message.Audio{ChunkStreamID: message.AudioChunkStreamID, MessageStreamID: ms, Codec: message.CodecMPEG4Audio,
				Rate: message.AudioRate44100, Depth: message.AudioDepth16, IsStereo: true, AACType: message.AudioAACTypeAU, DTS: dts, AU: []byte{0x21, flag}})
		case 8:
			out = append(out, &message.AudioExMultitrack{TrackID: id, Wrapped: &message.AudioExCodedFrames{ChunkStreamID: message.AudioChunkStreamID,
				MessageStreamID: ms, FourCC: message.FourCCMP3, DTS: dts, Payload: []byte{0xff, 0xfb, flag}}})
		case 9:
			out = append(out, &message.AudioExMultitrack{TrackID: id, Wrapped: &message.AudioExSequenceStart{ChunkStreamID: message.AudioChunkStreamID,
				MessageStreamID: ms, FourCC: message.FourCCMP4A,
				AACConfig: &mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 48000, ChannelCount: 2}}})
		}
	}
	return out
}

// FuzzMultitrackPublisher drives a publisher's whole ingest (the probe,
// the track filter, the rungs, the source) with made-up Enhanced RTMP
// messages: tracks announced or not, garbage track ids, sequence ends,
// timestamps that jump and go back. It must not panic, and when the
// publisher ends, nothing it published stays published.
func FuzzMultitrackPublisher(f *testing.F) {
	seed := func(words ...[4]byte) []byte {
		var b []byte
		for _, w := range words {
			b = append(b, w[:]...)
		}
		return b
	}
	// Source (legacy) + two multitrack rungs + audio, 3 s of frames.
	var good [][4]byte
	good = append(good, [4]byte{0, 0, 0, 0}, [4]byte{1, 1, 0, 2}, [4]byte{1, 2, 0, 4}, [4]byte{6, 0, 0, 0})
	for i := range 12 {
		flag := byte(0)
		if i%5 == 0 {
			flag = 1
		}
		good = append(good, [4]byte{4, 0, 3, flag}, [4]byte{2, 1, 0, flag}, [4]byte{3, 2, 0, flag}, [4]byte{7, 0, 0, 0})
	}
	f.Add(seed(good...))
	// A rung that ends, a garbage id, a jump and a step back.
	bad := append(append([][4]byte{}, good...), [4]byte{5, 1, 0, 0}, [4]byte{2, 77, 1, 1}, [4]byte{3, 2, 31, 1}, [4]byte{4, 0, 5, 0x81}, [4]byte{8, 9, 1, 0})
	f.Add(seed(bad...))
	f.Add(seed([4]byte{2, 5, 30, 1}, [4]byte{2, 5, 30, 1}, [4]byte{1, 5, 0, 0}, [4]byte{9, 3, 0, 0}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4*512 {
			return
		}
		log := slog.New(slog.NewTextHandler(fuzzLogOut, nil))
		hub := server.NewHub(server.HubConfig{Logger: log})
		defer hub.Close()
		claim, err := hub.Publish(context.Background(), "live/fz", server.PublishRequest{Peer: server.Peer{Protocol: "rtmp", Remote: "192.0.2.1:1"}})
		if err != nil {
			t.Fatal(err)
		}
		pump(&msgConn{msgs: fuzzMessages(data)}, claim, hub, log, "192.0.2.1:1", pumpHooks{
			probed: func() {}, reading: func() {}, refuse: func(_ string, err error) error { return err },
		})
		for _, s := range hub.Streams() {
			if s.Publishing() {
				t.Fatalf("%s still published after its publisher ended", s.Path())
			}
		}
	})
}

// fuzzLogOut is where the fuzz target logs (io.Discard; a debugging test may
// point it at os.Stdout).
var fuzzLogOut io.Writer = io.Discard
