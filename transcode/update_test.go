package transcode

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/streamhub/streamhub/server"
)

// Update takes every key but the FFmpeg binary, resolved at New.
func TestUpdate(t *testing.T) {
	hub := server.NewHub(server.HubConfig{})
	defer hub.Close()
	c := Config{FFmpeg: "ffmpeg", Threads: 1, IdleTimeout: time.Minute, Watchdog: 10 * time.Second,
		Ladder: []Rung{{Name: "240p", Height: 240}}}
	m := New(c, hub, slog.New(slog.NewTextHandler(io.Discard, nil)), func(string) Plan { return Plan{} })
	defer m.Close()
	n := c
	n.FFmpeg, n.Threads, n.IdleTimeout, n.Watchdog, n.MaxWorkers, n.VAAPIDevice = "/elsewhere/ffmpeg", 4, time.Hour, time.Minute, 2, "/dev/dri/renderD129"
	m.Update(n)
	got := m.cfg()
	if got.FFmpeg != "ffmpeg" || got.Threads != 4 || got.IdleTimeout != time.Hour || got.Watchdog != time.Minute ||
		got.MaxWorkers != 2 || got.VAAPIDevice != "/dev/dri/renderD129" {
		t.Errorf("after Update: %+v", got)
	}
	if a := Args(*got, c.Ladder, Input{}); !containsPair(a, "-filter_complex_threads", "4") {
		t.Errorf("new processes do not get the new threads: %v", a)
	}
}

func containsPair(args []string, k, v string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == k && args[i+1] == v {
			return true
		}
	}
	return false
}
