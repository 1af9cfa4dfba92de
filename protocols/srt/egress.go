package srt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/internal/tsconv"
	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// readBatch is how many units a reader takes from the hub at once.
const readBatch = 256

// tsOut sends a reader's units as MPEG-TS, each access unit as whole SRT
// messages.
type tsOut struct {
	conn    messageWriter
	mux     *tsconv.Muxer
	waitKey bool      // skip to the next video keyframe (after a full send queue)
	lastOK  time.Time // last successful send
	drops   uint64
	sent    int // bytes sent
}

// messageWriter is what tsOut needs of a gosrt.Conn.
type messageWriter interface {
	Write(p []byte) (int, error)
}

// newTSOut makes the TS tracks for the hub tracks MPEG-TS can carry.
func newTSOut(conn messageWriter, tracks []*media.Track) (*tsOut, error) {
	m, err := tsconv.NewMuxer(tracks)
	if err != nil {
		return nil, fmt.Errorf("srt: %w", err)
	}
	return &tsOut{conn: conn, mux: m, lastOK: time.Now()}, nil
}

// errTooSlow ends a reader whose send queue stayed full.
var errTooSlow = errors.New("srt: reader too slow: its send queue stayed full for srt.writeTimeout")

// write muxes u and sends it. A full send queue (gosrt's Write returns EOF
// instead of blocking) drops the rest of the unit and skips to the next
// keyframe; staying full for writeTimeout ends the reader.
func (o *tsOut) write(u *media.Unit, tracks func() []*media.Track, writeTimeout time.Duration) error {
	if o.waitKey {
		if !u.Track.IsVideo() || !u.KeyFrame {
			return nil
		}
		o.waitKey = false
	}
	b, err := o.mux.Mux(u, tracks)
	if err != nil {
		return fmt.Errorf("srt: %w", err)
	}
	for len(b) > 0 {
		n := min(len(b), PayloadSize)
		if _, err := o.conn.Write(b[:n]); err != nil {
			if !errors.Is(err, io.EOF) {
				return err
			}
			o.drops++
			o.waitKey = o.mux.HasVideo()
			if time.Since(o.lastOK) > writeTimeout {
				return errTooSlow
			}
			return nil
		}
		b = b[n:]
		o.sent += n
	}
	o.lastOK = time.Now()
	return nil
}

// read sends the hub stream as MPEG-TS until the caller leaves, the stream
// ends or the reader falls too far behind.
func (c *conn) read(r *server.Reader) error {
	defer r.Close()
	r.SetPeer(server.Peer{Protocol: "srt", Remote: c.remote}, func() { c.sc.Close() })
	r.SetLinkStats(c.link)
	s := c.srv
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// A reader sends nothing but control packets; Read returns when the
	// connection closes.
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer guard.Recover(s.log, "srt reader's control loop", "remote", c.remote)
		var b [PayloadSize]byte
		for {
			if _, err := c.sc.Read(b[:]); err != nil {
				cancel()
				return
			}
		}
	}()
	defer func() {
		c.sc.Close()
		<-readDone
	}()
	out, err := newTSOut(c.sc, r.Tracks())
	if err != nil {
		return err
	}
	tracks := func() []*media.Track { return r.Stream().Tracks() }
	batch := make([]*media.Unit, 0, readBatch)
	defer func() {
		c.mu.Lock()
		c.slowDrops = out.drops
		c.mu.Unlock()
	}()
	for {
		batch, err = r.NextBatch(ctx, batch[:0])
		if err != nil {
			if ctx.Err() != nil && s.ctx.Err() == nil {
				return nil // the caller left
			}
			return fmt.Errorf("srt: %w", err)
		}
		before := out.sent
		for _, u := range batch {
			if err := out.write(u, tracks, s.conf.WriteTimeout); err != nil {
				return err
			}
		}
		r.AddBytesOut(out.sent - before)
		c.mu.Lock()
		c.slowDrops = out.drops
		c.mu.Unlock()
	}
}
