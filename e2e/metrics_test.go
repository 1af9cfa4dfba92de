//go:build e2e

package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricValue scrapes url and returns the value of name for the series
// whose labels include all of labels.
func metricValue(t testing.TB, url, name string, labels map[string]string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	f := fams[name]
	if f == nil {
		t.Fatalf("/metrics has no %s", name)
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		if m.Counter != nil {
			return m.Counter.GetValue()
		}
		return m.Gauge.GetValue()
	}
	t.Fatalf("/metrics has no %s%v", name, labels)
	return 0
}

// /metrics parses as Prometheus text and its figures move while a stream
// plays.
func TestMetricsMove(t *testing.T) {
	s := startServer(t, "")
	pub := startPublisher(t, s.rtmpURL("live/metrics"))
	waitLive(t, s, "live/metrics", pub)
	player := openFLV(t, s.flvURL("live/metrics"))
	player.waitTags(t, 10*time.Second, "pictures", func(tags []flvTag) bool { return countVideo(tags) > 10 })
	url := "http://" + s.httpAddr + "/metrics"
	path := map[string]string{"path": "live/metrics"}
	in1, out1 := metricValue(t, url, "streamhub_stream_bytes_in_total", path), metricValue(t, url, "streamhub_stream_bytes_out_total", path)
	time.Sleep(1500 * time.Millisecond)
	in2, out2 := metricValue(t, url, "streamhub_stream_bytes_in_total", path), metricValue(t, url, "streamhub_stream_bytes_out_total", path)
	if in2 <= in1 || out2 <= out1 {
		t.Fatalf("bytes in %v → %v, out %v → %v: the figures do not move", in1, in2, out1, out2)
	}
	if n := metricValue(t, url, "streamhub_stream_protocol_readers", map[string]string{"path": "live/metrics", "protocol": "httpflv"}); n != 1 {
		t.Fatalf("httpflv readers %v, want 1", n)
	}
	if up := metricValue(t, url, "streamhub_stream_publisher_up", map[string]string{"path": "live/metrics", "protocol": "rtmp"}); up != 1 {
		t.Fatalf("publisher_up %v", up)
	}
	if g := metricValue(t, url, "go_goroutines", nil); g < 1 {
		t.Fatalf("go_goroutines %v", g)
	}
}
