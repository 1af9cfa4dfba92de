package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/streamhub/streamhub/media"
	"github.com/streamhub/streamhub/server"
)

// scrape returns the value of metric name with the label path=path.
func scrape(t *testing.T, srv string, name, path string) (float64, bool) {
	t.Helper()
	resp, err := httpGet(srv + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(resp))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.Metric {
		for _, l := range m.Label {
			if l.GetName() == "path" && l.GetValue() == path {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue(), true
				case m.Gauge != nil:
					return m.Gauge.GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// The figures move while a stream plays; Go runtime metrics are there.
func TestMetrics(t *testing.T) {
	hub := server.NewHub(server.HubConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer hub.Close()
	srv := httptest.NewServer(Metrics(hub, nil, func() (map[string]uint64, uint64) { return map[string]uint64{"part": 3}, 2 }))
	defer srv.Close()
	v := &media.Track{ID: 0, Codec: media.CodecH264}
	pub, err := hub.PublishTrusted("live/m", []*media.Track{v}, server.PublishOptions{Protocol: "srt"})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := hub.ReadTrusted(context.Background(), "live/m", server.ReadOptions{})
	defer r.Close()
	write := func(n int) {
		for i := range n {
			d := time.Duration(i) * 40 * time.Millisecond
			pub.Write(&media.Unit{Track: v, PTS: d, DTS: d, KeyFrame: i == 0, Payload: [][]byte{make([]byte, 100)}})
		}
	}
	write(10)
	b1, ok := scrape(t, srv.URL, "streamhub_stream_bytes_in_total", "live/m")
	if !ok || b1 != 1000 {
		t.Fatalf("bytes_in %v %v, want 1000", b1, ok)
	}
	write(5)
	if b2, _ := scrape(t, srv.URL, "streamhub_stream_bytes_in_total", "live/m"); b2 != 1500 {
		t.Fatalf("bytes_in after more units: %v, want 1500", b2)
	}
	if n, _ := scrape(t, srv.URL, "streamhub_stream_frames_in_total", "live/m"); n != 15 {
		t.Fatalf("frames_in %v", n)
	}
	if n, _ := scrape(t, srv.URL, "streamhub_stream_readers", "live/m"); n != 1 {
		t.Fatalf("readers %v", n)
	}
	body, _ := httpGet(srv.URL + "/metrics")
	for _, want := range []string{`streamhub_stream_publisher_up{path="live/m",protocol="srt"} 1`, "go_goroutines", "process_resident_memory_bytes", "streamhub_panics_total ", `streamhub_hls_responses_total{kind="part"} 3`, "streamhub_hls_playlist_renders_total 2"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// A path with standby on shows its standbys and takeovers in /metrics and
// in the stream view.
func TestMetricsStandby(t *testing.T) {
	pc := server.DefaultPathConfig()
	pc.Standby = server.StandbyTakeover
	hub := server.NewHub(server.HubConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		PathConfig: func(string) server.PathConfig { return pc }})
	defer hub.Close()
	srv := httptest.NewServer(Metrics(hub, nil, nil))
	defer srv.Close()
	publish := func(query string) *server.Publisher {
		c, err := hub.Publish(context.Background(), "live/sb", server.PublishRequest{Peer: server.Peer{Protocol: "rtmp", Remote: "192.0.2.1:1", Query: query}})
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.Publish([]*media.Track{{ID: 0, Codec: media.CodecH264}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	main := publish("")
	publish("role=backup")
	if n, ok := scrape(t, srv.URL, "streamhub_stream_standby_publishers", "live/sb"); !ok || n != 1 {
		t.Fatalf("standby_publishers %v %v, want 1", n, ok)
	}
	h := New(Config{Version: "test"}, hub, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if f := h.figures(hub.Stream("live/sb")); len(f.Standbys) != 1 || f.Standbys[0].Role != server.RoleBackup || f.PublisherRole != server.RoleMain {
		t.Fatalf("figures %+v", f)
	}
	main.Close()
	if n, _ := scrape(t, srv.URL, "streamhub_stream_standby_takeovers_total", "live/sb"); n != 1 {
		t.Fatalf("takeovers %v, want 1", n)
	}
	if n, _ := scrape(t, srv.URL, "streamhub_stream_standby_publishers", "live/sb"); n != 0 {
		t.Fatalf("standby_publishers after the takeover %v, want 0", n)
	}
	if f := h.figures(hub.Stream("live/sb")); f.Takeovers != 1 || f.PublisherRole != server.RoleBackup || !f.Publishing {
		t.Fatalf("figures after the takeover %+v", f)
	}
}
