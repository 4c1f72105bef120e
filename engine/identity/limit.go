package identity

import (
	"maps"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Counters counts authentication outcomes by credential kind and outcome
// ("ok" or a Reason). It is an Observer; a metrics exporter can read
// Snapshot or wrap it.
type Counters struct {
	mu sync.Mutex
	m  map[string]uint64
}

// ObserveAuth counts one outcome.
func (c *Counters) ObserveAuth(kind, outcome string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]uint64{}
	}
	c.m[kind+"/"+outcome]++
}

// Snapshot returns the counts keyed "kind/outcome", e.g. "oidc/replayed".
func (c *Counters) Snapshot() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m)
}

// Observers fans one observation out to several observers.
type Observers []Observer

// ObserveAuth tells every observer.
func (o Observers) ObserveAuth(kind, outcome string) {
	for _, x := range o {
		x.ObserveAuth(kind, outcome)
	}
}

// Limiter rate-limits each caller separately with a token bucket.
type Limiter struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

// limiterSweep is the number of callers above which idle buckets are dropped.
const limiterSweep = 10_000

// NewLimiter allows each caller perSecond requests on average and bursts
// of burst.
func NewLimiter(perSecond float64, burst int) *Limiter {
	return &Limiter{limit: rate.Limit(perSecond), burst: max(burst, 1), m: map[string]*bucket{}}
}

// Allow reports whether caller may make a request at now.
func (l *Limiter) Allow(caller string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[caller]
	if !ok {
		if len(l.m) >= limiterSweep {
			l.sweep(now)
		}
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[caller] = b
	}
	b.last = now
	return b.lim.AllowN(now, 1)
}

// sweep drops buckets idle long enough to have refilled completely.
func (l *Limiter) sweep(now time.Time) {
	idle := time.Minute
	if l.limit > 0 {
		idle = max(idle, time.Duration(float64(l.burst)/float64(l.limit)*float64(time.Second)))
	}
	for k, b := range l.m {
		if now.Sub(b.last) > idle {
			delete(l.m, k)
		}
	}
}
