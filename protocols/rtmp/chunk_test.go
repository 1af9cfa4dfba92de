package rtmp

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"
)

// The chunker's output reads back with gortmplib's chunk reader: bodies
// split across chunks, bodies given in two parts (a retimed tag's own
// first bytes, then the shared rest; a chunk boundary inside or right
// after the first part), extended timestamps (also on type-3 chunks) and
// the 32-bit wrap.
func TestChunkerRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte{0xAB, 0xCD, 0xEF}, 50000) // 150000 bytes: three chunks
	msgs := []struct {
		csid, typ byte
		ts        uint32
		pre, body []byte
	}{
		{csidData, 18, 0, nil, []byte("onMetaData")},
		{csidVideo, 9, 40, nil, []byte{0x17, 0, 0, 0, 0, 1, 2, 3}},
		{csidVideo, 9, 41, []byte{0x17, 1, 0, 0, 0x21}, []byte{1, 2, 3}},
		{csidAudio, 8, 0xFFFFFE, nil, []byte{0xAF, 1, 9}},
		{csidVideo, 9, 0xFFFFFF, nil, big},
		{csidVideo, 9, 0xFFFFFFFF, nil, big[:70000]},
		{csidVideo, 9, 0xFFFFFFFF, big[:5], big[5:70000]},
		{csidVideo, 9, 7, big[:65536], big[65536:]}, // the first part fills the first chunk
		{csidVideo, 9, 8, big[:65540], big[65540:]}, // a chunk boundary inside the first part
		{csidAudio, 8, 5, nil, []byte{0xAF, 1}},     // after the wrap
		{csidVideo, 9, 6, nil, nil},
	}
	ch := &chunker{chunkSize: 65536}
	var bufs [][]byte
	for _, m := range msgs {
		bufs = ch.appendMessage(bufs, m.csid, m.typ, playStreamID, m.ts, m.pre, m.body)
	}
	var wire bytes.Buffer
	nb := net.Buffers(bufs)
	if _, err := nb.WriteTo(&wire); err != nil {
		t.Fatal(err)
	}

	br := bytecounter.NewReader(&wire)
	r := rawmessage.NewReader(br, br, func(uint32) error { return nil })
	if err := r.SetChunkSize(65536); err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		got, err := r.Read()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got.ChunkStreamID != m.csid || got.Type != m.typ || got.Timestamp != time.Duration(m.ts)*time.Millisecond ||
			got.MessageStreamID != 0x1000000 || !bytes.Equal(got.Body, append(append([]byte(nil), m.pre...), m.body...)) {
			t.Fatalf("message %d: got csid %d type %d ts %v stream %#x body %d bytes; want csid %d type %d ts %d ms body %d bytes",
				i, got.ChunkStreamID, got.Type, got.Timestamp, got.MessageStreamID, len(got.Body), m.csid, m.typ, m.ts, len(m.pre)+len(m.body))
		}
	}
	if wire.Len() != 0 {
		t.Fatalf("%d bytes left over", wire.Len())
	}
}
