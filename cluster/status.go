package cluster

import (
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Status is what the API shows of the node (GET /api/v1/cluster).
type Status struct {
	Role  string       `json:"role"`
	Node  string       `json:"node,omitempty"`
	Relay string       `json:"relayAddress,omitempty"`
	Redis *RedisStatus `json:"redis,omitempty"`
	// Paths are the paths this origin holds in the live map.
	Paths []PathStatus `json:"paths,omitempty"`
	// Upstreams are the streams this edge pulls.
	Upstreams []UpstreamStatus `json:"upstreams,omitempty"`
}

// RedisStatus is Redis's health as this node saw it last.
type RedisStatus struct {
	Up        bool      `json:"up"`
	Since     time.Time `json:"since"`
	LastError string    `json:"lastError,omitempty"`
	Errors    uint64    `json:"errors"`
}

// PathStatus is one path an origin holds.
type PathStatus struct {
	Path       string    `json:"path"`
	Registered bool      `json:"registered"` // the map holds this origin's entry
	Conflict   string    `json:"conflict,omitempty"`
	Since      time.Time `json:"since"`
}

// UpstreamStatus is one pull of an edge.
type UpstreamStatus struct {
	Path     string    `json:"path"`
	Origin   string    `json:"origin"`
	Relay    string    `json:"relay"`
	Since    time.Time `json:"since"`
	Switches int       `json:"switches"` // times it followed the stream to another origin
}

// Status returns the node's role, Redis's health and its paths or pulls.
func (n *Node) Status() Status {
	st := Status{Role: n.conf.Role}
	if !n.conf.Enabled() {
		return st
	}
	st.Node, st.Relay = n.conf.Node, n.conf.RelayAddress
	if n.lm != nil {
		known, up, lastErr, since, errs := n.health.get()
		st.Redis = &RedisStatus{Up: known && up, Since: since, LastError: lastErr, Errors: errs}
	}
	n.mu.Lock()
	for p, l := range n.leases {
		st.Paths = append(st.Paths, PathStatus{Path: p, Registered: l.registered, Conflict: l.conflict, Since: l.since})
	}
	for _, p := range n.pulls {
		if p.origin.Relay != "" {
			st.Upstreams = append(st.Upstreams, UpstreamStatus{Path: p.path, Origin: p.origin.Node, Relay: p.origin.Relay,
				Since: p.since, Switches: p.switches})
		}
	}
	n.mu.Unlock()
	slices.SortFunc(st.Paths, func(a, b PathStatus) int { return strings.Compare(a.Path, b.Path) })
	slices.SortFunc(st.Upstreams, func(a, b UpstreamStatus) int { return strings.Compare(a.Path, b.Path) })
	return st
}

var (
	descRole      = prometheus.NewDesc("streamhub_cluster_role", "1 for this node's cluster role.", []string{"role", "node"}, nil)
	descRedisUp   = prometheus.NewDesc("streamhub_cluster_redis_up", "1 while the live map's Redis answers (absent without Redis).", nil, nil)
	descRedisErrs = prometheus.NewDesc("streamhub_cluster_redis_errors_total", "Redis calls that failed or timed out.", nil, nil)
	descPaths     = prometheus.NewDesc("streamhub_cluster_paths", "Paths this origin holds in the live map, by whether the map has its entry now.", []string{"registered"}, nil)
	descUpstreams = prometheus.NewDesc("streamhub_cluster_upstreams", "Streams this edge pulls from origins.", nil, nil)
	descSwitches  = prometheus.NewDesc("streamhub_cluster_upstream_switches", "Times this edge's current pulls followed their stream to another origin.", nil, nil)
)

var _ prometheus.Collector = (*Node)(nil)

// Describe sends the cluster's descriptors.
func (n *Node) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRole, descRedisUp, descRedisErrs, descPaths, descUpstreams, descSwitches} {
		ch <- d
	}
}

// Collect sends the cluster's figures at scrape time (the relays of each
// path are the hub's: streamhub_stream_relays).
func (n *Node) Collect(ch chan<- prometheus.Metric) {
	st := n.Status()
	ch <- prometheus.MustNewConstMetric(descRole, prometheus.GaugeValue, 1, st.Role, st.Node)
	if st.Redis != nil {
		up := 0.0
		if st.Redis.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descRedisUp, prometheus.GaugeValue, up)
		ch <- prometheus.MustNewConstMetric(descRedisErrs, prometheus.CounterValue, float64(st.Redis.Errors))
	}
	if st.Role == RoleOrigin {
		reg := 0
		for _, p := range st.Paths {
			if p.Registered {
				reg++
			}
		}
		ch <- prometheus.MustNewConstMetric(descPaths, prometheus.GaugeValue, float64(reg), "true")
		ch <- prometheus.MustNewConstMetric(descPaths, prometheus.GaugeValue, float64(len(st.Paths)-reg), "false")
	}
	if st.Role == RoleEdge {
		sw := 0
		for _, u := range st.Upstreams {
			sw += u.Switches
		}
		ch <- prometheus.MustNewConstMetric(descUpstreams, prometheus.GaugeValue, float64(len(st.Upstreams)))
		ch <- prometheus.MustNewConstMetric(descSwitches, prometheus.GaugeValue, float64(sw))
	}
}
