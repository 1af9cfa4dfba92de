package api

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/streamhub/streamhub/internal/guard"
	"github.com/streamhub/streamhub/registry"
	"github.com/streamhub/streamhub/server"
)

// Metrics returns the /metrics handler: per-stream figures read from the
// hub at each scrape (nothing is counted twice on the hot path), the
// ladder's, the LL-HLS responses by kind (hls, nil: none), the Go
// runtime's and the process's, and extra collectors (the stream registry's
// health: RegistryCollector; reloads: ReloadMetrics; the cluster's:
// cluster.Node).
func Metrics(hub *server.Hub, ladder Ladder, hls HLSResponses, extra ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&hubCollector{hub: hub, ladder: ladder}, hlsCollector(hls),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "streamhub_panics_total",
			Help: "Panics caught in a session, request or worker: each ended that one session (the stack is in the log)."},
			func() float64 { return float64(guard.Panics()) }))
	reg.MustRegister(extra...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

var (
	labels       = []string{"path"}
	descUp       = prometheus.NewDesc("streamhub_stream_publisher_up", "1 while the path has a publisher (0 in the grace period).", []string{"path", "protocol"}, nil)
	descReaders  = prometheus.NewDesc("streamhub_stream_readers", "Readers of the path now (players; an HLS muxer, a ladder counts as one; relays apart).", labels, nil)
	descRelays   = prometheus.NewDesc("streamhub_stream_relays", "Edges of the cluster reading the path now (relays, not viewers).", labels, nil)
	descBytesIn  = prometheus.NewDesc("streamhub_stream_bytes_in_total", "Payload bytes the publishers of the path sent.", labels, nil)
	descUnitsIn  = prometheus.NewDesc("streamhub_stream_frames_in_total", "Access units (video frames and audio frames) the publishers of the path sent.", labels, nil)
	descDrops    = prometheus.NewDesc("streamhub_stream_reader_drops_total", "Units slow readers of the path skipped.", labels, nil)
	descUptime   = prometheus.NewDesc("streamhub_stream_uptime_seconds", "Time since the path's stream started.", labels, nil)
	descPubs     = prometheus.NewDesc("streamhub_stream_publishes_total", "Publishers the path has had (republishes included).", labels, nil)
	descRestarts = prometheus.NewDesc("streamhub_transcoder_restarts_total", "Restarts of the path's FFmpeg ladder process.", labels, nil)
	descTxUp     = prometheus.NewDesc("streamhub_transcoder_up", "1 while the path's FFmpeg ladder process runs.", labels, nil)
	descStreams  = prometheus.NewDesc("streamhub_streams", "Live paths (ladder rungs included).", nil, nil)
	descByProto  = prometheus.NewDesc("streamhub_stream_protocol_readers", "Players of the path per protocol (hls: the distinct clients, by address and User-Agent, seen in the last 10 s).", []string{"path", "protocol"}, nil)
	descLinkRTT  = prometheus.NewDesc("streamhub_stream_link_rtt_seconds", "The largest round-trip time of the path's SRT sessions.", labels, nil)
	descLinkLost = prometheus.NewDesc("streamhub_stream_link_lost_packets", "Packets lost, summed over the path's current SRT sessions.", labels, nil)
	descLinkRetx = prometheus.NewDesc("streamhub_stream_link_retransmitted_packets", "Packets retransmitted, summed over the path's current SRT sessions.", labels, nil)
	descBytesOut = prometheus.NewDesc("streamhub_stream_bytes_out_total", "Bytes written to the path's players over HTTP-FLV, RTMP and SRT (RTSP and HLS are not counted).", labels, nil)
	descStandbys = prometheus.NewDesc("streamhub_stream_standby_publishers", "Publishers waiting as hot standbys on the path (paths.*.standby on).", labels, nil)
	descTakeover = prometheus.NewDesc("streamhub_stream_standby_takeovers_total", "Times a standby took over the path from a publisher that left, or was promoted (paths.*.standby on).", labels, nil)
	descFailback = prometheus.NewDesc("streamhub_stream_standby_failbacks_total", "Times the main publisher took the path back from a backup at its keyframe (paths.*.standby: failback).", labels, nil)
)

var descRegistryUp = prometheus.NewDesc("streamhub_registry_up",
	"1 while the stream registry's database answers (bbolt: always; postgres: the last query or ping, every 5 s, succeeded within streams.databaseTimeout).",
	[]string{"backend"}, nil)

// RegistryCollector sends streamhub_registry_up at scrape time, from
// reg.Health (no query of its own: a scrape never waits for PostgreSQL).
func RegistryCollector(reg registry.Registry) prometheus.Collector { return registryCollector{reg} }

type registryCollector struct{ reg registry.Registry }

// Describe sends the descriptor.
func (c registryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descRegistryUp }

// Collect sends the registry's health.
func (c registryCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.reg.Health()
	up := 0.0
	if h.Up {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descRegistryUp, prometheus.GaugeValue, up, h.Backend)
}

// HLSResponses returns the LL-HLS responses written, by kind, and the
// media playlists rendered (hls.Handler.Responses).
type HLSResponses func() (byKind map[string]uint64, renders uint64)

var (
	descHLSResponses = prometheus.NewDesc("streamhub_hls_responses_total", "LL-HLS responses written, by kind (multivariant, playlist, playlist_blocking, init, part, segment, error, refused): behind a cache, what reached the origin.", []string{"kind"}, nil)
	descHLSRenders   = prometheus.NewDesc("streamhub_hls_playlist_renders_total", "Media playlists rendered: one per playlist version, delta flag and share value, however many players asked.", nil, nil)
)

// hlsCollector sends the LL-HLS counters at scrape time.
type hlsCollector HLSResponses

var _ prometheus.Collector = hlsCollector(nil)

// Describe sends every descriptor.
func (c hlsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descHLSResponses
	ch <- descHLSRenders
}

// Collect sends the counters; nothing when there is no HLS handler.
func (c hlsCollector) Collect(ch chan<- prometheus.Metric) {
	if c == nil {
		return
	}
	byKind, renders := c()
	for k, n := range byKind {
		ch <- prometheus.MustNewConstMetric(descHLSResponses, prometheus.CounterValue, float64(n), k)
	}
	ch <- prometheus.MustNewConstMetric(descHLSRenders, prometheus.CounterValue, float64(renders))
}

// hubCollector reads the hub at scrape time.
type hubCollector struct {
	hub    *server.Hub
	ladder Ladder
}

var _ prometheus.Collector = (*hubCollector)(nil)

// Describe sends every descriptor.
func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descReaders, descRelays, descBytesIn, descUnitsIn, descDrops, descUptime, descPubs, descRestarts, descTxUp, descStreams, descByProto, descBytesOut, descLinkRTT, descLinkLost, descLinkRetx,
		descStandbys, descTakeover, descFailback} {
		ch <- d
	}
}

// Collect sends the figures of every live path.
func (c *hubCollector) Collect(ch chan<- prometheus.Metric) {
	streams := c.hub.Streams()
	ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(len(streams)))
	for _, s := range streams {
		st := s.Stats()
		up, proto := 0.0, ""
		if st.Publishing {
			up = 1
			proto, _, _ = strings.Cut(st.Publisher, " ")
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, st.Path, proto)
		ch <- prometheus.MustNewConstMetric(descReaders, prometheus.GaugeValue, float64(st.Readers-st.Relays), st.Path)
		ch <- prometheus.MustNewConstMetric(descRelays, prometheus.GaugeValue, float64(st.Relays), st.Path)
		ch <- prometheus.MustNewConstMetric(descBytesIn, prometheus.CounterValue, float64(st.BytesIn), st.Path)
		ch <- prometheus.MustNewConstMetric(descUnitsIn, prometheus.CounterValue, float64(st.UnitsIn), st.Path)
		ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(st.DropsTotal), st.Path)
		ch <- prometheus.MustNewConstMetric(descUptime, prometheus.GaugeValue, st.Uptime.Seconds(), st.Path)
		ch <- prometheus.MustNewConstMetric(descPubs, prometheus.CounterValue, float64(st.Publishes), st.Path)
		ch <- prometheus.MustNewConstMetric(descBytesOut, prometheus.CounterValue, float64(st.BytesOut), st.Path)
		if st.Link != (server.LinkStats{}) {
			ch <- prometheus.MustNewConstMetric(descLinkRTT, prometheus.GaugeValue, st.Link.RTTMs/1000, st.Path)
			ch <- prometheus.MustNewConstMetric(descLinkLost, prometheus.GaugeValue, float64(st.Link.LostPackets), st.Path)
			ch <- prometheus.MustNewConstMetric(descLinkRetx, prometheus.GaugeValue, float64(st.Link.Retransmitted), st.Path)
		}
		if s.Config().Standby != server.StandbyOff {
			ch <- prometheus.MustNewConstMetric(descStandbys, prometheus.GaugeValue, float64(len(st.Standbys)), st.Path)
			ch <- prometheus.MustNewConstMetric(descTakeover, prometheus.CounterValue, float64(st.Takeovers), st.Path)
			ch <- prometheus.MustNewConstMetric(descFailback, prometheus.CounterValue, float64(st.Failbacks), st.Path)
		}
		for proto, n := range st.ReadersByProtocol {
			ch <- prometheus.MustNewConstMetric(descByProto, prometheus.GaugeValue, float64(n), st.Path, proto)
		}
		if c.ladder == nil || st.Derived {
			continue
		}
		if ts, ok := c.ladder.Status(st.Path); ok {
			running := 0.0
			if ts.State == "running" {
				running = 1
			}
			ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(ts.Restarts), st.Path)
			ch <- prometheus.MustNewConstMetric(descTxUp, prometheus.GaugeValue, running, st.Path)
		}
	}
}
