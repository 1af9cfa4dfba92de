package rtmp

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/bluenviron/gortmplib"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/internal/fanout"
	"github.com/streamhub/streamhub/protocols/internal/flv"
	"github.com/streamhub/streamhub/server"
)

// Chunk stream and message stream IDs used for play, as gortmplib and most
// servers use them.
const (
	csidData     = 4
	csidAudio    = 4
	csidVideo    = 6
	playStreamID = 1     // the message stream gortmplib's createStream hands out
	outChunkSize = 65536 // gortmplib's Accept announces this chunk size
	playBatch    = 256
	// libPlayStreamID is playStreamID as gortmplib's message writer takes
	// it: it writes the little-endian field big-endian.
	libPlayStreamID = 0x1000000
)

// play sends a hub stream to an RTMP player. The audio and video message
// bodies are the FLV tag bodies, made once per unit and shared with every
// RTMP and HTTP-FLV reader; only the chunking is per connection. (Sharing
// whole messages, chunk headers included, one iovec a message instead of
// two, was measured at 1000 players: no difference.)
func (c *conn) play(sc *gortmplib.ServerConn, key string) (err error) {
	r, err := c.srv.hub.Read(c.srv.ctx, c.path, server.ReadRequest{Peer: c.peer(sc), Key: key, Wait: true,
		Kick: func() { c.nc.Close() }})
	if err != nil {
		return c.refuse(sc, refusalCode(err, false), err)
	}
	defer r.Close()

	pe := newPlayEncoder(r.Tracks())
	defer func() {
		if merr := pe.mux.Err(); merr != nil {
			err = fmt.Errorf("%w (a track was dropped: %v)", err, merr)
		}
	}()
	// The metadata goes first, framed with a chunker of its own: the
	// encoder's header bytes are reused by every batch.
	first := appendTag(&chunker{chunkSize: outChunkSize}, nil, pe.mux.MetadataTag())
	encode := pe.encode
	if _, ok := c.nc.(syscall.Conn); ok {
		// The stream's pass writes this player with the others (fanout);
		// this goroutine only writes what its socket could not take, and
		// otherwise waits in a read of the socket that drops what comes.
		// A player sends little after play (acknowledgements, its buffer
		// length, deleteStream before it hangs up) and nothing that needs
		// an answer (a ping request would go unanswered: players answer
		// pings, they send none), so gortmplib's reader and writer are
		// let go here, with their buffers, and no second goroutine reads
		// for them.
		_, err = c.srv.passes.Serve(c.srv.ctx, &fanout.Sink{Reader: r, Conn: c.nc, Encode: encode,
			Shared: sharedPlay, Plain: pe.mux.Plain, SoleWriter: true,
			WriteTimeout: c.srv.conf.WriteTimeout, WatchClose: true}, first)
		if errors.Is(err, fanout.ErrWrite) {
			return fmt.Errorf("rtmp: writing to player: %w", err)
		}
		return err
	}
	return c.playLocked(sc, r, first, encode)
}

// playLocked is play over TLS, which the pass cannot write without
// blocking: this goroutine writes the player, and a second one reads it
// through gortmplib (its writes, such as acknowledgements, take c.w's
// lock).
func (c *conn) playLocked(sc *gortmplib.ServerConn, r *server.Reader, first [][]byte,
	encode func(dst [][]byte, batch []*media.Unit) [][]byte) error {
	ctx, cancel := context.WithCancel(c.srv.ctx)
	defer cancel()
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
	bufs := first
	batch := make([]*media.Unit, 0, playBatch)
	for {
		c.nc.SetWriteDeadline(time.Now().Add(c.srv.conf.WriteTimeout))
		n := 0
		for _, b := range bufs {
			n += len(b)
		}
		r.AddBytesOut(n)
		if err := c.w.writev(bufs); err != nil {
			return fmt.Errorf("rtmp: writing to player: %w", err)
		}
		clear(bufs)
		bufs = bufs[:0]

		var err error
		batch, err = r.NextBatch(ctx, batch[:0])
		if err != nil {
			return c.playEnded(err, readDone)
		}
		bufs = encode(bufs, batch)
		clear(batch)
	}
}

// playEnded names why a play ended: the player's own leaving when ctx was
// canceled by its read loop.
func (c *conn) playEnded(err error, readDone chan error) error {
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

// playEncoder frames a player's batches.
type playEncoder struct {
	ch   *chunker
	mux  *flv.Muxer
	tags [][]byte
}

func newPlayEncoder(tracks []*media.Track) *playEncoder {
	return &playEncoder{ch: &chunker{chunkSize: outChunkSize}, mux: flv.NewMuxer(tracks)}
}

// encode appends the messages of batch to dst (a fanout.Sink's Encode).
func (e *playEncoder) encode(dst [][]byte, batch []*media.Unit) [][]byte {
	e.ch.reset()
	for _, u := range batch {
		n := len(e.tags)
		e.tags = e.mux.Append(e.tags, u)
		dst = appendUnitTags(e.ch, dst, e.tags[n:])
	}
	clear(e.tags)
	e.tags = e.tags[:0]
	return dst
}

// sharedPlay frames a batch once for every player the pass finds in step
// with the stream (flv.Muxer.Plain): every message has a type-0 header
// with the stream's own timestamp, so a plain batch's chunks are the same
// for all of them.
var sharedPlay = &fanout.Shared{Encode: encodeShared}

// encodeShared frames batch's units, each its own tag (flv.AppendUnit), in
// a new header buffer.
func encodeShared(dst [][]byte, batch []*media.Unit) [][]byte {
	ch := &chunker{chunkSize: outChunkSize, hdr: make([]byte, 0, 16*len(batch))}
	var tags [2][]byte
	for _, u := range batch {
		dst = appendUnitTags(ch, dst, flv.AppendUnit(tags[:0], u))
	}
	return dst
}

// appendUnitTags frames the FLV tags a muxer gave for one unit: a retimed
// unit (a joiner's catch-up) as its own head, then the shared body and
// trailer (flv.UnitParts); any other tag whole, its body shared.
func appendUnitTags(ch *chunker, dst [][]byte, tags [][]byte) [][]byte {
	for i := 0; i < len(tags); i++ {
		tag := tags[i]
		if flv.IsHead(tag) && i+1 < len(tags) {
			rest := tags[i+1]
			dst = appendMessage(ch, dst, tag[0], flv.TagTime(tag), tag[flv.HeaderSize:], rest[:len(rest)-flv.TrailerSize])
			i++
			continue
		}
		dst = appendTag(ch, dst, tag)
	}
	return dst
}

// appendTag frames one FLV tag as an RTMP message: the message body is the
// tag body, shared, not copied.
func appendTag(ch *chunker, bufs [][]byte, tag []byte) [][]byte {
	return appendMessage(ch, bufs, tag[0], flv.TagTime(tag), nil, flv.Body(tag))
}

// appendMessage frames one FLV tag's body (pre then body) of type typ as
// an RTMP message.
func appendMessage(ch *chunker, bufs [][]byte, typ byte, ts uint32, pre, body []byte) [][]byte {
	csid := byte(csidVideo)
	switch typ {
	case flv.TagAudio:
		csid = csidAudio
	case flv.TagScript:
		csid = csidData
	}
	return ch.appendMessage(bufs, csid, typ, playStreamID, ts, pre, body)
}
