// Package stats holds what the load tools share to summarize samples.
package stats

import "slices"

// Pct returns the p-th percentile (nearest rank) of v, 0 for none. It
// sorts v.
func Pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	i := int(p / 100 * float64(len(v)-1))
	return v[i]
}
