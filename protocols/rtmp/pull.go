package rtmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/bluenviron/gortmplib"

	"github.com/streamhub/streamhub/internal/units"
	"github.com/streamhub/streamhub/media"
)

// Upstream is a pull of one stream from another streamhub node (an edge's
// pull from its origin, package cluster): an RTMP player whose media goes
// into this node's hub with the timestamps the origin sent, which are the
// stream's own (the origin lets a relay read without catch-up). RTMP with
// Enhanced RTMP carries every codec the hub takes from publishers (H264,
// H265, AV1; AAC, Opus, MP3) with each picture's DTS and composition
// offset, so B-frames keep their order; its clock is the millisecond.
type Upstream struct {
	c       *gortmplib.Client
	r       *gortmplib.Reader
	in      *ingest
	timeout time.Duration
}

// DialUpstream connects to the RTMP server at addr (HOST:PORT), plays path
// with key (?key=...) and reads the stream's tracks, all within timeout
// per step; ctx ends the dial. readTimeout ends Run when nothing comes for
// that long.
func DialUpstream(ctx context.Context, addr, path, key string, readTimeout time.Duration) (*Upstream, error) {
	u := &url.URL{Scheme: "rtmp", Host: addr, Path: "/" + path}
	if key != "" {
		u.RawQuery = url.Values{"key": {key}}.Encode()
	}
	c := &gortmplib.Client{URL: u, DialContext: (&net.Dialer{Timeout: readTimeout}).DialContext}
	ictx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	if err := c.Initialize(ictx); err != nil {
		return nil, fmt.Errorf("rtmp upstream %s: %w", addr, err)
	}
	// Until the tracks are known, ctx ending closes the connection.
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()
	c.NetConn().SetDeadline(time.Now().Add(readTimeout + trackProbe))
	r := &gortmplib.Reader{Conn: c}
	if err := r.Initialize(); err != nil {
		c.Close()
		return nil, fmt.Errorf("rtmp upstream %s: reading the tracks: %w", addr, err)
	}
	in, err := newIngest(r.Tracks())
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("rtmp upstream %s: %w", addr, err)
	}
	if ctx.Err() != nil {
		c.Close()
		return nil, ctx.Err()
	}
	return &Upstream{c: c, r: r, in: in, timeout: readTimeout}, nil
}

// Tracks returns the stream's tracks, for the publisher of the pull.
func (u *Upstream) Tracks() []*media.Track { return u.in.tracks }

// Run writes the stream's units into w until the connection fails, the
// origin ends the stream, or Close; it always returns a non-nil error.
func (u *Upstream) Run(w units.Writer) error {
	u.in.pub = w
	u.in.register(u.r)
	for {
		u.c.NetConn().SetDeadline(time.Now().Add(u.timeout))
		if err := u.r.Read(); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return errors.New("rtmp upstream: closed")
			}
			return fmt.Errorf("rtmp upstream: %w", err)
		}
	}
}

// Close ends the connection; a Run in progress returns.
func (u *Upstream) Close() { u.c.Close() }
