package translog

import "testing"

func TestMarksAdvanceOverContiguousRuns(t *testing.T) {
	var m marks
	m.reset(10)
	if got := m.current(); got != 10 {
		t.Fatalf("after reset(10): %d", got)
	}
	// Out of order: 12 and 11 wait for 10.
	for _, i := range []uint64{12, 11} {
		if _, ok := m.stored(i); ok {
			t.Fatalf("stored(%d) moved the watermark past the missing 10", i)
		}
	}
	if wm, ok := m.stored(10); !ok || wm != 13 {
		t.Fatalf("stored(10) = %d, %v; want 13", wm, ok)
	}
	// A record below the watermark (a catchUp rewrite) changes nothing.
	if _, ok := m.stored(3); ok || m.current() != 13 {
		t.Fatalf("stored(3) moved the watermark to %d", m.current())
	}
	// catchUp covered up to 20 while 21 was already stored: both count.
	m.stored(21)
	m.reset(21)
	if got := m.current(); got != 22 {
		t.Fatalf("after reset(21) with 21 stored: %d, want 22", got)
	}
	// A reset below the watermark never moves it back.
	m.reset(5)
	if got := m.current(); got != 22 {
		t.Fatalf("reset(5) moved the watermark to %d", got)
	}
}

func TestMarksStallBehindAHoleUntilReset(t *testing.T) {
	var m marks
	m.reset(0)
	// Entry 0 never gets its record (its caller gave up): the tracker
	// holds at most maxMarkGap others, then gives up rather than grow.
	for i := uint64(1); i <= maxMarkGap+1; i++ {
		m.stored(i)
	}
	if m.current() != 0 || m.done != nil || !m.stalled {
		t.Fatalf("not stalled: current %d, %d waiting", m.current(), len(m.done))
	}
	if _, ok := m.stored(0); ok {
		t.Fatal("a stalled tracker moved the watermark")
	}
	m.reset(maxMarkGap + 2) // catchUp re-derived it from the tree
	if wm, ok := m.stored(maxMarkGap + 2); !ok || wm != maxMarkGap+3 {
		t.Fatalf("after reset: stored = %d, %v", wm, ok)
	}
}
