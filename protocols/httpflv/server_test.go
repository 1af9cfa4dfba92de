package httpflv_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/protocols/httpflv"
	"github.com/streamhub/streamhub/protocols/internal/flv"
	"github.com/streamhub/streamhub/server"
)

var (
	sps = []byte{0x67, 0x64, 0x00, 0x0c, 0xac, 0x3b, 0x50, 0xb0, 0x4b, 0x42, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x3d, 0x08}
	pps = []byte{0x68, 0xee, 0x3c, 0x80}
)

func setup(t *testing.T) (*server.Hub, *server.Publisher, *httptest.Server) {
	t.Helper()
	hub, pub, h := setupHandler(t)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return hub, pub, ts
}

// setupHandler returns a hub with live/x published (30 units, a keyframe
// every 10) and a handler reading it; the test serves it.
func setupHandler(t *testing.T) (*server.Hub, *server.Publisher, *httpflv.Handler) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := server.NewHub(server.HubConfig{Logger: log, PathConfig: func(string) server.PathConfig {
		c := server.DefaultPathConfig()
		c.GracePeriod = 0
		return c
	}})
	tr := &media.Track{ID: 0, Codec: media.CodecH264, SPS: sps, PPS: pps}
	pub, err := hub.PublishTrusted("live/x", []*media.Track{tr}, server.PublishOptions{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		nalu := []byte{0x41, byte(i)}
		if i%10 == 0 {
			nalu = []byte{0x65, byte(i)}
		}
		pub.Write(&media.Unit{Track: tr, DTS: time.Duration(i) * 40 * time.Millisecond, PTS: time.Duration(i) * 40 * time.Millisecond,
			KeyFrame: i%10 == 0, Payload: [][]byte{sps, pps, nalu}[2-min(2, 2*(i%10)):]})
	}
	h := httpflv.New(httpflv.Config{WriteTimeout: time.Second}, hub, log)
	t.Cleanup(func() {
		pub.Close()
		hub.Close()
		h.Close()
	})
	return hub, pub, h
}

func TestStatusCodes(t *testing.T) {
	_, _, ts := setup(t)
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/live/none.flv", http.StatusNotFound},
		{http.MethodGet, "/live/x", http.StatusNotFound},
		{http.MethodGet, "/live/...flv", http.StatusBadRequest},
		{http.MethodPost, "/live/x.flv", http.StatusMethodNotAllowed},
		{http.MethodOptions, "/live/x.flv", http.StatusNoContent},
		{http.MethodHead, "/live/x.flv", http.StatusOK},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.code)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s %s: no CORS header", tc.method, tc.path)
		}
	}
}

func TestStreamStartsWithHeadersAndKeyFrame(t *testing.T) {
	_, pub, ts := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/live/x.flv", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "video/x-flv" {
		t.Fatalf("Content-Type %q", ct)
	}
	r, err := flv.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !r.HasVideo || r.HasAudio {
		t.Errorf("FLV header video %v audio %v", r.HasVideo, r.HasAudio)
	}
	var kinds []string
	var last uint32
	for len(kinds) < 12 {
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
		if tag.Type == flv.TagVideo && !tag.IsConfig() {
			if tag.Timestamp < last {
				t.Errorf("timestamp %d after %d", tag.Timestamp, last)
			}
			last = tag.Timestamp
		}
	}
	if got := strings.Join(kinds[:4], ","); got != "meta,cfg,key,v" {
		t.Errorf("first tags %s, want meta,cfg,key,v", got)
	}
	if last != 20*40+9*40 {
		t.Errorf("last timestamp %d", last)
	}
	pub.Close() // the stream ends: the response ends too
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Errorf("end of stream: %v", err)
	}
}
