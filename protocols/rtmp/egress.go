package rtmp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/internal/flv"
)

// Chunk stream and message stream IDs used for play, as gortmplib and most
// servers use them.
const (
	csidData        = 4
	csidAudio       = 4
	csidVideo       = 6
	playStreamID    = 0x1000000 // message stream 1, little-endian on the wire
	outChunkSize    = 65536     // gortmplib's Accept announces this chunk size
	playBatch       = 256
	playWriteBuffer = 64 << 10
)

// play sends a hub stream to an RTMP player. The audio and video message
// bodies are the FLV tag bodies, made once per unit and shared with every
// RTMP and HTTP-FLV reader; only the chunking is per connection.
func (c *conn) play(sc *gortmplib.ServerConn) error {
	r, err := c.srv.hub.Read(c.path)
	if err != nil {
		c.nc.SetWriteDeadline(time.Now().Add(c.srv.conf.WriteTimeout))
		sc.Write(&message.CommandAMF0{ //nolint:errcheck // the error below is what we report
			ChunkStreamID: 5, MessageStreamID: playStreamID, Name: "onStatus",
			Arguments: []any{nil, amf0.Object{
				{Key: "level", Value: "error"},
				{Key: "code", Value: "NetStream.Play.StreamNotFound"},
				{Key: "description", Value: err.Error()},
			}},
		})
		return err
	}
	defer r.Close()

	ctx, cancel := context.WithCancel(c.srv.ctx)
	defer cancel()
	// The player sends little (acknowledgements, deleteStream); a read
	// error means it left.
	readDone := make(chan error, 1)
	go func() {
		for {
			if _, err := sc.Read(); err != nil {
				readDone <- err
				cancel()
				return
			}
		}
	}()
	defer func() {
		c.nc.Close() // unblocks the read goroutine
		<-readDone
	}()

	bw := bufio.NewWriterSize(c.w, playWriteBuffer)
	w := rawmessage.NewWriter(bw, bytecounter.NewWriter(bw), false)
	w.SetChunkSize(outChunkSize)

	mux := flv.NewMuxer(r.Tracks())
	tags := [][]byte{mux.MetadataTag()}
	batch := make([]*media.Unit, 0, playBatch)
	for {
		// Set before the tags: a tag larger than bw writes through to the
		// socket, and the previous deadline may have passed while we waited.
		c.nc.SetWriteDeadline(time.Now().Add(c.srv.conf.WriteTimeout))
		for _, tag := range tags {
			if err := writeTag(w, tag); err != nil {
				return err
			}
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("rtmp: writing to player: %w", err)
		}
		clear(tags)
		tags = tags[:0]

		batch, err = r.NextBatch(ctx, batch[:0])
		if err != nil {
			if errors.Is(err, context.Canceled) {
				select {
				case rerr := <-readDone:
					readDone <- rerr
					return fmt.Errorf("player left: %w", rerr)
				default:
				}
			}
			return err
		}
		for _, u := range batch {
			tags = mux.Append(tags, u)
		}
		clear(batch)
	}
}

// writeTag writes one FLV tag as an RTMP message; rawmessage.Writer copies
// the body into chunks, so the shared tag bytes stay untouched.
func writeTag(w *rawmessage.Writer, tag []byte) error {
	typ := tag[0]
	ts := uint32(tag[7])<<24 | uint32(tag[4])<<16 | uint32(tag[5])<<8 | uint32(tag[6])
	csid := byte(csidVideo)
	switch typ {
	case flv.TagAudio:
		csid = csidAudio
	case flv.TagScript:
		csid = csidData
	}
	err := w.Write(&rawmessage.Message{
		ChunkStreamID: csid, Timestamp: time.Duration(ts) * time.Millisecond,
		Type: typ, MessageStreamID: playStreamID, Body: flv.Body(tag),
	})
	if err != nil {
		return fmt.Errorf("rtmp: writing to player: %w", err)
	}
	return nil
}
