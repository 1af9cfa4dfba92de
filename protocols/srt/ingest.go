package srt

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/streamhub/streamhub/internal/tsconv"
	"github.com/streamhub/streamhub/server"
)

// deadlineReader sets a read deadline before every read, so a publisher
// that stops sending is dropped after timeout.
type deadlineReader struct {
	c       interface{ SetReadDeadline(time.Time) error }
	r       io.Reader
	timeout time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	d.c.SetReadDeadline(time.Now().Add(d.timeout))
	return d.r.Read(p)
}

// publish reads the caller's MPEG-TS into the hub until it ends.
func (c *conn) publish(claim *server.Claim) error {
	s := c.srv
	r := &mpegts.Reader{R: &deadlineReader{c: c.sc, r: c.sc, timeout: s.conf.ReadTimeout}}
	// Initialize reads until the PMT: bounded by the read deadline.
	if err := r.Initialize(); err != nil {
		return fmt.Errorf("srt: reading the MPEG-TS tables: %w", err)
	}
	onError := func(err error) {
		c.mu.Lock()
		c.decodeErrors++
		c.lastDecodeErr = err.Error()
		c.mu.Unlock()
	}
	r.OnDecodeError(onError)
	in, err := tsconv.NewIngest(r, onError)
	if err != nil {
		return fmt.Errorf("srt: %w", err)
	}
	claim.SetKick(func() { c.sc.Close() })
	pub, err := claim.Publish(in.Tracks())
	if err != nil {
		return err
	}
	pub.SetLinkStats(c.link)
	defer pub.Close()
	in.SetWriter(pub)
	for {
		if err := r.Read(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("srt: publisher: %w", err)
		}
	}
}
