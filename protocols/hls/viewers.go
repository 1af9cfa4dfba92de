package hls

import (
	"net"
	"sync"
	"time"

	"github.com/streamhub/streamhub/internal/guard"
)

// viewerWindow is how recently a client must have asked for something to
// count as a viewer: an LL-HLS player asks several times a second, a plain
// HLS player at least once per target duration.
const viewerWindow = 10 * time.Second

// maxViewersPerPath bounds the clients remembered per path, maxPaths the
// paths.
const (
	maxViewersPerPath = 100000
	maxPaths          = 10000
)

// viewers counts the distinct clients (address and User-Agent) that asked
// for a path's playlists or media lately. The URIs carry nothing per
// viewer, so that a shared cache keeps one entry per part: the client is
// known by what it sends anyway. A player behind a cache counts once per
// cache, which is all the origin sees.
type viewers struct {
	window time.Duration // viewerWindow
	mu     sync.Mutex    // mu guards byPath
	byPath map[string]map[string]time.Time
}

func newViewers() *viewers {
	return &viewers{window: viewerWindow, byPath: map[string]map[string]time.Time{}}
}

// seen records a request of the client (remote address, User-Agent).
func (v *viewers) seen(path, remote, userAgent string) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	key := host + "\x00" + guard.Truncate(userAgent)
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	m := v.byPath[path]
	if m == nil {
		if len(v.byPath) >= maxPaths {
			for p, pm := range v.byPath { // paths no longer asked for
				if v.sweep(pm, now); len(pm) == 0 {
					delete(v.byPath, p)
				}
			}
			if len(v.byPath) >= maxPaths {
				return
			}
		}
		m = map[string]time.Time{}
		v.byPath[path] = m
	}
	if _, ok := m[key]; !ok && len(m) >= maxViewersPerPath {
		v.sweep(m, now)
		if len(m) >= maxViewersPerPath {
			return
		}
	}
	m[key] = now
}

// count returns the clients of path seen within viewerWindow, forgetting
// the others.
func (v *viewers) count(path string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	m := v.byPath[path]
	if m == nil {
		return 0
	}
	v.sweep(m, time.Now())
	if len(m) == 0 {
		delete(v.byPath, path)
	}
	return len(m)
}

func (v *viewers) sweep(m map[string]time.Time, now time.Time) {
	for k, at := range m {
		if now.Sub(at) > v.window {
			delete(m, k)
		}
	}
}
