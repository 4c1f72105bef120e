package alert

import (
	"sync"
	"time"
)

// BurstDetector notices one subject being denied again and again: Count
// denies within Window fire once, and again only after a quiet Window.
// It is fed decisions in log order, so replaying the log fires the same
// bursts at the same entries.
type BurstDetector struct {
	count  int
	window time.Duration
	mu     sync.Mutex
	denies map[string][]time.Time
	fired  map[string]time.Time
}

// NewBurstDetector fires at count denies within window; count 0 never fires.
func NewBurstDetector(count int, window time.Duration) *BurstDetector {
	return &BurstDetector{count: count, window: window, denies: map[string][]time.Time{}, fired: map[string]time.Time{}}
}

// Deny records a deny for subject at t and reports whether it completes a
// burst, with the number of denies in the window.
func (b *BurstDetector) Deny(subject string, t time.Time) (bool, int) {
	if b.count <= 0 {
		return false, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cutoff := t.Add(-b.window)
	ts := b.denies[subject]
	i := 0
	for i < len(ts) && !ts[i].After(cutoff) {
		i++
	}
	ts = append(ts[i:], t)
	b.denies[subject] = ts
	if len(ts) < b.count {
		return false, len(ts)
	}
	if last, ok := b.fired[subject]; ok && last.After(cutoff) {
		return false, len(ts)
	}
	b.fired[subject] = t
	return true, len(ts)
}
