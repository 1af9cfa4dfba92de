package srt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// readBatch is how many units a reader takes from the hub at once.
const readBatch = 256

// tsOut muxes a reader's units to MPEG-TS and sends each access unit as
// whole SRT messages.
type tsOut struct {
	conn    messageWriter
	w       *mpegts.Writer
	buf     []byte          // the TS packets of the unit being muxed
	byID    []*mpegts.Track // hub track ID → TS track; nil: not carried
	codecs  []media.Codec   // what byID was made for
	session uint64
	waitKey bool // skip to the next video keyframe (after a full send queue)
	hasVid  bool
	lastOK  time.Time // last successful send
	drops   uint64
}

// messageWriter is what tsOut needs of a gosrt.Conn.
type messageWriter interface {
	Write(p []byte) (int, error)
}

// Write collects the muxer's output; tsOut sends it per access unit.
func (o *tsOut) Write(p []byte) (int, error) {
	o.buf = append(o.buf, p...)
	return len(p), nil
}

// newTSOut makes the TS tracks for the hub tracks MPEG-TS can carry.
func newTSOut(conn messageWriter, tracks []*media.Track) (*tsOut, error) {
	o := &tsOut{conn: conn, lastOK: time.Now()}
	if err := o.setup(tracks); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *tsOut) setup(tracks []*media.Track) error {
	o.byID, o.codecs = make([]*mpegts.Track, len(tracks)), make([]media.Codec, len(tracks))
	var list []*mpegts.Track
	o.hasVid = false
	for _, t := range tracks {
		var c tscodecs.Codec
		switch t.Codec {
		case media.CodecH264:
			c = &tscodecs.H264{}
		case media.CodecH265:
			c = &tscodecs.H265{}
		case media.CodecAAC:
			var asc mpeg4audio.AudioSpecificConfig
			if asc.Unmarshal(t.AudioConfig) != nil {
				continue
			}
			c = &tscodecs.MPEG4Audio{Config: asc}
		case media.CodecOpus:
			c = &tscodecs.Opus{ChannelCount: max(t.Channels, 1)}
		case media.CodecMP3:
			c = &tscodecs.MPEG1Audio{}
		default:
			continue // AV1 and G.711 have no MPEG-TS mapping here
		}
		if t.ID < 0 || t.ID >= len(tracks) {
			continue
		}
		tt := &mpegts.Track{Codec: c}
		o.byID[t.ID], o.codecs[t.ID] = tt, t.Codec
		o.hasVid = o.hasVid || t.IsVideo()
		list = append(list, tt)
	}
	if len(list) == 0 {
		return errors.New("srt: no track of the stream fits MPEG-TS (H264, H265, AAC, Opus, MP3)")
	}
	o.w = &mpegts.Writer{W: o, Tracks: list}
	if err := o.w.Initialize(); err != nil {
		return err
	}
	return nil
}

// errTooSlow ends a reader whose send queue stayed full.
var errTooSlow = errors.New("srt: reader too slow: its send queue stayed full for srt.writeTimeout")

// write muxes u and sends it. A full send queue (gosrt's Write returns EOF
// instead of blocking) drops the rest of the unit and skips to the next
// keyframe; staying full for writeTimeout ends the reader.
func (o *tsOut) write(u *media.Unit, tracks func() []*media.Track, writeTimeout time.Duration) error {
	id := u.Track.ID
	if u.Track.Session != o.session {
		// A new publisher may lay its tracks out differently.
		if o.session != 0 && !sameCodecs(o.codecs, tracks()) {
			o.buf = o.buf[:0]
			if err := o.setup(tracks()); err != nil {
				return err
			}
		}
		o.session = u.Track.Session
	}
	if id < 0 || id >= len(o.byID) || o.byID[id] == nil || o.codecs[id] != u.Track.Codec {
		return nil
	}
	if o.waitKey {
		if !u.Track.IsVideo() || !u.KeyFrame {
			return nil
		}
		o.waitKey = false
	}
	tt := o.byID[id]
	pts, dts := tsTime(u.PTS), tsTime(u.DTS)
	o.buf = o.buf[:0]
	var err error
	switch u.Track.Codec {
	case media.CodecH264:
		err = o.w.WriteH264(tt, pts, dts, u.Payload)
	case media.CodecH265:
		err = o.w.WriteH265(tt, pts, dts, u.Payload)
	case media.CodecAAC:
		err = o.w.WriteMPEG4Audio(tt, pts, u.Payload)
	case media.CodecOpus:
		err = o.w.WriteOpus(tt, pts, u.Payload)
	case media.CodecMP3:
		err = o.w.WriteMPEG1Audio(tt, pts, u.Payload)
	}
	if err != nil {
		return nil // a unit the muxer cannot take is skipped
	}
	for b := o.buf; len(b) > 0; {
		n := min(len(b), PayloadSize)
		if _, err := o.conn.Write(b[:n]); err != nil {
			if !errors.Is(err, io.EOF) {
				return err
			}
			o.drops++
			o.waitKey = o.hasVid
			if time.Since(o.lastOK) > writeTimeout {
				return errTooSlow
			}
			return nil
		}
		b = b[n:]
	}
	o.lastOK = time.Now()
	return nil
}

// tsTime converts hub time to the 90 kHz TS clock (the writer wraps it).
func tsTime(d time.Duration) int64 {
	return int64(d/time.Second)*tsClock + int64(d%time.Second)*tsClock/int64(time.Second)
}

func sameCodecs(c []media.Codec, tracks []*media.Track) bool {
	if len(c) != len(tracks) {
		return false
	}
	for i, t := range tracks {
		if c[i] != t.Codec {
			return false
		}
	}
	return true
}

// read sends the hub stream as MPEG-TS until the caller leaves, the stream
// ends or the reader falls too far behind.
func (c *conn) read(r *server.Reader) error {
	defer r.Close()
	s := c.srv
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// A reader sends nothing but control packets; Read returns when the
	// connection closes.
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
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
		for _, u := range batch {
			if err := out.write(u, tracks, s.conf.WriteTimeout); err != nil {
				return err
			}
		}
		c.mu.Lock()
		c.slowDrops = out.drops
		c.mu.Unlock()
	}
}
