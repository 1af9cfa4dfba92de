package record

import "github.com/prometheus/client_golang/prometheus"

var (
	descSegments  = prometheus.NewDesc("streamhub_record_segments_total", "Recording segments started.", nil, nil)
	descBytes     = prometheus.NewDesc("streamhub_record_bytes_total", "Bytes written to recording segments.", nil, nil)
	descDiskFull  = prometheus.NewDesc("streamhub_record_disk_full_total", "Recordings stopped because the disk was full (live viewers are not affected).", nil, nil)
	descWriteErrs = prometheus.NewDesc("streamhub_record_write_errors_total", "Recordings stopped by another write error.", nil, nil)
	descDeleted   = prometheus.NewDesc("streamhub_record_deleted_segments_total", "Segments deleted by record.maxAge and record.diskBudget.", nil, nil)
	descHookFails = prometheus.NewDesc("streamhub_record_hook_failures_total", "record.onSegmentComplete runs that failed or were dropped.", nil, nil)
	descDiskUse   = prometheus.NewDesc("streamhub_record_disk_bytes", "Bytes the indexed recordings take.", nil, nil)
	descActive    = prometheus.NewDesc("streamhub_record_active", "Paths being recorded now.", nil, nil)
)

// Describe implements prometheus.Collector.
func (r *Recorder) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSegments, descBytes, descDiskFull, descWriteErrs, descDeleted, descHookFails, descDiskUse, descActive} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (r *Recorder) Collect(ch chan<- prometheus.Metric) {
	c := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	c(descSegments, r.segments.Load())
	c(descBytes, r.bytes.Load())
	c(descDiskFull, r.diskFull.Load())
	c(descWriteErrs, r.writeErrors.Load())
	c(descDeleted, r.deleted.Load())
	c(descHookFails, r.hookFailures.Load())
	ch <- prometheus.MustNewConstMetric(descDiskUse, prometheus.GaugeValue, float64(r.diskUse.Load()))
	r.mu.Lock()
	n := len(r.active)
	r.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(n))
}

var _ prometheus.Collector = (*Recorder)(nil)
