// Package conf helps a component check its config section: every problem
// names its full key (the section's prefix and the field's yaml name) and
// what is allowed, and all of them are reported at once.
package conf

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Problems collects the problems of one section.
type Problems struct {
	prefix string
	errs   []error
}

// New starts collecting the problems of the section at prefix ("rtmp",
// "paths.overrides[2]").
func New(prefix string) *Problems { return &Problems{prefix: prefix} }

// Bad records a problem with the key under the prefix.
func (p *Problems) Bad(key, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s.%s: %s", p.prefix, key, fmt.Sprintf(format, args...)))
}

// Address checks a listen address: HOST:PORT or :PORT, or "" when off is
// allowed (the listener is then switched off). example is a valid value.
func (p *Problems) Address(key, addr string, offOK bool, example string) {
	if addr == "" && offOK {
		return
	}
	if _, err := Port(addr); err != nil {
		off := ""
		if offOK {
			off = ", or empty to switch it off"
		}
		p.Bad(key, "must be HOST:PORT or :PORT, e.g. %q%s (got %q)", example, off, addr)
	}
}

// Duration checks that d is within [lo, hi].
func (p *Problems) Duration(key string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		p.Bad(key, "must be between %s and %s (got %s)", short(lo), short(hi), d)
	}
}

// Errs returns the problems recorded, nil for none.
func (p *Problems) Errs() []error { return p.errs }

// Port returns the port of a HOST:PORT or :PORT address.
func Port(addr string) (int, error) {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return 0, fmt.Errorf("bad port %q", ps)
	}
	return port, nil
}

// short writes a duration as a config file would: 100ms, 10m, 1h.
func short(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d >= time.Minute && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d >= time.Second && d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}
