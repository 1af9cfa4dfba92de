package api

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ReloadStatus is the outcome of a configuration reload.
type ReloadStatus struct {
	// Trigger is who asked: signal (SIGHUP), api or file (the watcher);
	// "" before the first reload.
	Trigger string    `json:"trigger,omitempty"`
	At      time.Time `json:"at,omitzero"`
	// OK is false when the new file was refused; the running config stayed.
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Applied lists the keys changed without a restart; NeedsRestart the
	// changed keys that keep their running value until a restart.
	Applied      []string `json:"applied,omitempty"`
	NeedsRestart []string `json:"needsRestart,omitempty"`
	// Successes and Failures count the reloads since the start.
	Successes uint64 `json:"successes"`
	Failures  uint64 `json:"failures"`
}

// Reloader reloads the configuration file.
type Reloader interface {
	// Reload reads the file again now and applies it, or refuses it.
	Reload(trigger string) ReloadStatus
	// LastReload returns the outcome of the last reload.
	LastReload() ReloadStatus
}

// reloadConfig serves POST /api/v1/config/reload: 200 and the status when
// the file was applied, 422 and the status (with the error) when refused.
func (h *Handler) reloadConfig(w http.ResponseWriter, _ *http.Request) {
	if h.conf.Reloader == nil {
		fail(w, http.StatusNotFound, "config reload is not available")
		return
	}
	st := h.conf.Reloader.Reload("api")
	if !st.OK {
		reply(w, http.StatusUnprocessableEntity, st)
		return
	}
	reply(w, http.StatusOK, st)
}

// lastReload serves GET /api/v1/config/reload: the last reload's status.
func (h *Handler) lastReload(w http.ResponseWriter, _ *http.Request) {
	if h.conf.Reloader == nil {
		fail(w, http.StatusNotFound, "config reload is not available")
		return
	}
	reply(w, http.StatusOK, h.conf.Reloader.LastReload())
}

var (
	descReloadOK = prometheus.NewDesc("streamhub_config_reload_success",
		"1 when the last config reload was applied (or none was tried), 0 when the new file was refused and the running config stayed.", nil, nil)
	descReloads = prometheus.NewDesc("streamhub_config_reloads_total",
		"Config reloads tried, by result (ok, error).", []string{"result"}, nil)
	descReloadAt = prometheus.NewDesc("streamhub_config_last_reload_timestamp_seconds",
		"Unix time of the last config reload tried; 0 before the first.", nil, nil)
)

// ReloadMetrics returns the collector of the config reload figures, for
// Metrics.
func ReloadMetrics(r Reloader) prometheus.Collector { return reloadCollector{r} }

type reloadCollector struct{ r Reloader }

// Describe sends every descriptor.
func (c reloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descReloadOK
	ch <- descReloads
	ch <- descReloadAt
}

// Collect sends the last reload's figures.
func (c reloadCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.r.LastReload()
	ok, at := 0.0, 0.0
	if st.OK {
		ok = 1
	}
	if !st.At.IsZero() {
		at = float64(st.At.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(descReloadOK, prometheus.GaugeValue, ok)
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(st.Successes), "ok")
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(st.Failures), "error")
	ch <- prometheus.MustNewConstMetric(descReloadAt, prometheus.GaugeValue, at)
}
