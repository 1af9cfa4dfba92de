package httpflv_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/httpflv"
	"github.com/streamhub/streamhub/protocols/internal/flv"
	"github.com/streamhub/streamhub/server"
)

// wsStream reads the binary messages of a WebSocket-FLV session as one
// byte stream, as mpegts.js does; it fails on any other message type.
type wsStream struct {
	c    *websocket.Conn
	cur  io.Reader
	msgs int
}

func (s *wsStream) Read(p []byte) (int, error) {
	for {
		if s.cur != nil {
			n, err := s.cur.Read(p)
			if n > 0 || !errors.Is(err, io.EOF) {
				return n, err
			}
		}
		typ, r, err := s.c.NextReader()
		if err != nil {
			return 0, err
		}
		if typ != websocket.BinaryMessage {
			return 0, errors.New("a message that is not binary")
		}
		s.cur = r
		s.msgs++
	}
}

// readWSFLV checks the stream starts with the metadata, the sequence
// header and a keyframe, and reads n tags.
func readWSFLV(t *testing.T, s *wsStream, n int) {
	t.Helper()
	r, err := flv.NewReader(s)
	if err != nil {
		t.Fatal(err)
	}
	if !r.HasVideo || r.HasAudio {
		t.Errorf("FLV header video %v audio %v", r.HasVideo, r.HasAudio)
	}
	var kinds []string
	for len(kinds) < n {
		tag, err := r.Read()
		if err != nil {
			t.Fatalf("after %v: %v", kinds, err)
		}
		switch {
		case tag.Type == flv.TagScript:
			kinds = append(kinds, "meta")
		case tag.IsConfig():
			kinds = append(kinds, "cfg")
		case tag.IsVideoKeyFrame():
			kinds = append(kinds, "key")
		default:
			kinds = append(kinds, "v")
		}
	}
	if got := strings.Join(kinds[:4], ","); got != "meta,cfg,key,v" {
		t.Errorf("first tags %s, want meta,cfg,key,v", got)
	}
}

// TestWebSocketFLV plays over ws:// (written by the stream's pass) and
// wss:// (a *tls.Conn: the per-reader loop), then ends the stream: the
// viewer gets a normal close frame.
func TestWebSocketFLV(t *testing.T) {
	for _, secure := range []bool{false, true} {
		name := "ws"
		if secure {
			name = "wss"
		}
		t.Run(name, func(t *testing.T) {
			hub, pub, h := setupHandler(t)
			var ts *httptest.Server
			d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
			if secure {
				ts = httptest.NewTLSServer(h)
				d.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the test's own certificate
			} else {
				ts = httptest.NewServer(h)
			}
			t.Cleanup(ts.Close)
			url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/live/x.flv"
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, resp, err := d.DialContext(ctx, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d", resp.StatusCode)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			s := &wsStream{c: c}
			readWSFLV(t, s, 12)
			if got := hub.Stream("live/x").Stats().ReadersByProtocol["wsflv"]; got != 1 {
				t.Errorf("wsflv readers %d, want 1", got)
			}
			// Live units keep coming after the catch-up.
			tr := pub.Stream().Tracks()[0]
			for i := 30; i < 40; i++ {
				pub.Write(&media.Unit{Track: tr, DTS: time.Duration(i) * 40 * time.Millisecond, PTS: time.Duration(i) * 40 * time.Millisecond,
					Payload: [][]byte{{0x41, byte(i)}}})
			}
			pub.Close()
			_, err = io.Copy(io.Discard, s)
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				t.Errorf("end of stream: %v, want a normal close", err)
			}
			if s.msgs < 2 {
				t.Errorf("%d messages", s.msgs)
			}
		})
	}
}

// TestWebSocketFLVRefused: the guarded door answers before the upgrade,
// with the HTTP status of the refusal.
func TestWebSocketFLVRefused(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := server.NewHub(server.HubConfig{Logger: log, PathConfig: func(string) server.PathConfig {
		c := server.DefaultPathConfig()
		c.ReadKey = "rk"
		return c
	}, ReadToken: func(path, key string) (bool, error) { // a signed link: "signed-<path>"
		return key == "signed-"+path, nil
	}})
	tr := &media.Track{ID: 0, Codec: media.CodecH264, SPS: sps, PPS: pps}
	pub, err := hub.PublishTrusted("live/x", []*media.Track{tr}, server.PublishOptions{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	pub.Write(&media.Unit{Track: tr, KeyFrame: true, Payload: [][]byte{sps, pps, {0x65, 1}}})
	h := httpflv.New(httpflv.Config{WriteTimeout: time.Second}, hub, log)
	ts := httptest.NewServer(h)
	t.Cleanup(func() { pub.Close(); hub.Close(); h.Close(); ts.Close() })
	url := "ws" + strings.TrimPrefix(ts.URL, "http")
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/live/x.flv", http.StatusUnauthorized},
		{"/live/x.flv?key=wrong", http.StatusUnauthorized},
		{"/live/x.flv?key=signed-live/y", http.StatusUnauthorized},
		{"/live/none.flv?key=rk", http.StatusNotFound},
		{"/live/...flv", http.StatusBadRequest},
	} {
		c, resp, err := websocket.DefaultDialer.Dial(url+tc.path, nil)
		if err == nil {
			c.Close()
			t.Errorf("%s: upgraded", tc.path)
			continue
		}
		if resp == nil || resp.StatusCode != tc.code {
			t.Errorf("%s: %v %v, want %d", tc.path, resp, err, tc.code)
		}
	}
	for _, key := range []string{"rk", "signed-live/x"} {
		c, _, err := websocket.DefaultDialer.Dial(url+"/live/x.flv?key="+key, nil)
		if err != nil {
			t.Fatalf("with the key %s: %v", key, err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := flv.NewReader(&wsStream{c: c}); err != nil {
			t.Error(err)
		}
		c.Close()
	}
}

// TestWebSocketFLVPeerLeaves: a viewer that closes its side (a close
// frame, or a message of garbage too big) is let go while the stream
// sends nothing.
func TestWebSocketFLVPeerLeaves(t *testing.T) {
	hub, _, h := setupHandler(t)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/live/x.flv"
	for _, leave := range []func(*websocket.Conn) error{
		func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		},
		func(c *websocket.Conn) error {
			// The server hangs up at 4 KiB: the rest of the write may meet a reset.
			c.WriteMessage(websocket.BinaryMessage, make([]byte, 64<<10)) //nolint:errcheck // see above
			return nil
		},
		func(c *websocket.Conn) error { return c.UnderlyingConn().Close() },
	} {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := flv.NewReader(&wsStream{c: c}); err != nil {
			t.Fatal(err)
		}
		if err := leave(c); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for hub.Stream("live/x").Stats().ReadersByProtocol["wsflv"] != 0 {
			if time.Now().After(deadline) {
				t.Fatal("the reader is still attached 5 s after its viewer left")
			}
			time.Sleep(10 * time.Millisecond)
		}
		c.Close()
	}
}
