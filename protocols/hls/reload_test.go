package hls

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/streamhub/streamhub/server"
)

// SetMuxerConfig changes the settings of new muxers only, and only the
// four a reload may change.
func TestSetMuxerConfig(t *testing.T) {
	hub := server.NewHub(server.HubConfig{})
	defer hub.Close()
	conf := testConfig()
	h := New(conf, hub, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer h.Close()
	running := &muxer{h: h, conf: h.muxerConfig()}
	if running.conf.Window != conf.Window || running.conf.PartTarget != conf.PartTarget {
		t.Fatalf("before a reload: %+v, want %+v", running.conf, conf)
	}
	next := conf
	next.PartTarget, next.SegmentMin, next.Window, next.IdleTimeout = 300*time.Millisecond, 2*time.Second, 9, time.Minute
	next.BlockTimeout, next.ShareWindow = time.Hour, time.Hour // restart-only: not taken
	h.SetMuxerConfig(next)
	got := h.muxerConfig()
	if got.PartTarget != next.PartTarget || got.SegmentMin != next.SegmentMin || got.Window != 9 || got.IdleTimeout != time.Minute {
		t.Errorf("new muxers get %+v", got)
	}
	if got.BlockTimeout != conf.BlockTimeout || got.ShareWindow != conf.ShareWindow {
		t.Errorf("restart-only keys changed: %+v", got)
	}
	if running.conf.Window != conf.Window || running.conf.PartTarget != conf.PartTarget {
		t.Errorf("a running muxer's settings changed")
	}
}
