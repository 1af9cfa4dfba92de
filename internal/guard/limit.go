package guard

import (
	"sync"
	"time"
)

// maxKeys bounds the addresses a Summary or Budget remembers; past it,
// entries that no longer matter are swept, and if none can be, the oldest
// window is forgotten (an attacker with many addresses gets no memory
// growth, only fewer summaries).
const maxKeys = 10000

// Summary turns repeated log lines about one key (a remote address) into
// a few lines per window and then a count.
type Summary struct {
	window time.Duration
	burst  int

	mu sync.Mutex // mu guards m
	m  map[string]*summaryEntry
}

type summaryEntry struct {
	start      time.Time // when the current window began
	logged     int       // lines written in it
	suppressed int
}

// NewSummary returns a Summary that lets burst lines about a key through
// per window (at least one).
func NewSummary(window time.Duration, burst int) *Summary {
	return &Summary{window: window, burst: max(burst, 1), m: map[string]*summaryEntry{}}
}

// Note records an event about key and reports whether to log it now: the
// first burst events of a window are logged, the first of them with
// suppressed, the events left unlogged in the window before; the others
// are counted.
func (s *Summary) Note(key string) (log bool, suppressed int) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key]
	if e != nil && now.Sub(e.start) < s.window {
		if e.logged < s.burst {
			e.logged++
			return true, 0
		}
		e.suppressed++
		return false, 0
	}
	if e == nil {
		if len(s.m) >= maxKeys {
			s.sweepLocked(now)
		}
		e = &summaryEntry{}
		s.m[key] = e
	}
	suppressed, e.start, e.suppressed, e.logged = e.suppressed, now, 0, 1
	return true, suppressed
}

func (s *Summary) sweepLocked(now time.Time) {
	for k, e := range s.m {
		if now.Sub(e.start) >= s.window {
			delete(s.m, k)
		}
	}
	if len(s.m) >= maxKeys {
		clear(s.m)
	}
}

// Budget throttles failures per key (a remote address): a token bucket of
// Burst failures that refills at Burst per Per. Once it is empty, Allow
// refuses the key until a token comes back.
type Budget struct {
	burst float64
	rate  float64 // tokens per second

	mu sync.Mutex // mu guards m
	m  map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewBudget returns a Budget of burst failures refilling over per; burst
// <= 0 returns nil, which allows everything.
func NewBudget(burst int, per time.Duration) *Budget {
	if burst <= 0 || per <= 0 {
		return nil
	}
	return &Budget{burst: float64(burst), rate: float64(burst) / per.Seconds(), m: map[string]*bucket{}}
}

// Allow reports whether key has failures left to spend.
func (b *Budget) Allow(key string) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.m[key]
	if k == nil {
		return true
	}
	b.refillLocked(k, time.Now())
	return k.tokens >= 1
}

// Fail spends one of key's failures.
func (b *Budget) Fail(key string) {
	if b == nil {
		return
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.m[key]
	if k == nil {
		if len(b.m) >= maxKeys {
			b.sweepLocked(now)
		}
		k = &bucket{tokens: b.burst, at: now}
		b.m[key] = k
	}
	b.refillLocked(k, now)
	k.tokens = max(k.tokens-1, 0)
}

func (b *Budget) refillLocked(k *bucket, now time.Time) {
	k.tokens = min(b.burst, k.tokens+now.Sub(k.at).Seconds()*b.rate)
	k.at = now
}

// sweepLocked forgets buckets that are full again (they hold nothing).
func (b *Budget) sweepLocked(now time.Time) {
	for key, k := range b.m {
		if b.refillLocked(k, now); k.tokens >= b.burst {
			delete(b.m, key)
		}
	}
	if len(b.m) >= maxKeys {
		clear(b.m)
	}
}
