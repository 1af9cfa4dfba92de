package httpflv

import (
	"bytes"
	"testing"
	"time"

	"github.com/streamhub/streamhub/internal/testfixtures"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/internal/flv"
)

// A reader in step with the stream (flv.Muxer.Plain) gets from the shared
// encoders the same bytes as from its own, chunked or not.
func TestSharedEncodeMatchesOwn(t *testing.T) {
	v := &media.Track{ID: 0, Codec: media.CodecH264, SPS: testfixtures.H264SPS, PPS: testfixtures.H264PPS}
	a := &media.Track{ID: 1, Codec: media.CodecAAC, AudioConfig: []byte{0x12, 0x10}, SampleRate: 44100, Channels: 2}
	unit := func(tr *media.Track, ms int, key bool, b ...byte) *media.Unit {
		d := time.Duration(ms) * time.Millisecond
		return &media.Unit{Track: tr, PTS: d, DTS: d, KeyFrame: key, Payload: [][]byte{b}}
	}
	first := []*media.Unit{unit(v, 0, true, 0x65, 1), unit(a, 10, true, 0x21, 1)}
	live := []*media.Unit{unit(v, 33, false, 0x41, 2), unit(a, 33, true, 0x21, 2), unit(v, 66, false, 0x41, 3)}
	for _, chunked := range []bool{false, true} {
		mux := flv.NewMuxer([]*media.Track{v, a})
		var line [20]byte
		encodeBatch(nil, first, mux, chunked, line[:0])
		if !mux.Plain(live) {
			t.Fatal("a live batch after the configurations is not plain")
		}
		own := bytes.Join(encodeBatch(nil, live, mux, chunked, line[:0]), nil)
		sh := sharedFLV
		if chunked {
			sh = sharedChunked
		}
		if shared := bytes.Join(sh.Encode(nil, live), nil); !bytes.Equal(shared, own) {
			t.Errorf("chunked %v: shared bytes %q, the reader's own %q", chunked, shared, own)
		}
	}
}
