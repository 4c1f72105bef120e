package translog

import "sync"

// maxMarkGap bounds how many stored index records may wait in marks.done
// behind one that never completes (an append whose caller gave up before
// Tessera assigned its index leaves such a hole). Past it the tracker
// gives up until the next catchUp, which re-derives the watermark from
// the tree.
const maxMarkGap = 1 << 16

// marks advances the watermark of a log in MySQL as Append's index
// records are stored, so a restart does not re-read every entry appended
// since the last catchUp.
// Records are written concurrently and finish out of order; the watermark
// may only claim the contiguous run of entries whose records are stored.
type marks struct {
	mu      sync.Mutex
	next    uint64              // every entry below next has its records stored
	done    map[uint64]struct{} // stored entries at or above next
	stalled bool
}

// reset restarts tracking at size, every entry below which catchUp has
// just indexed. Entries at or above size already noted as stored stay
// noted.
func (m *marks) reset(size uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stalled || m.done == nil {
		m.next, m.done, m.stalled = size, map[uint64]struct{}{}, false
		return
	}
	if size <= m.next {
		return
	}
	for k := range m.done {
		if k < size {
			delete(m.done, k)
		}
	}
	m.next = size
	m.advance()
}

func (m *marks) advance() {
	for {
		if _, ok := m.done[m.next]; !ok {
			return
		}
		delete(m.done, m.next)
		m.next++
	}
}

// stored notes that idx's records are durable and returns the watermark
// that may now be written: every entry below it is indexed. ok is false
// when the watermark did not move.
func (m *marks) stored(idx uint64) (watermark uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stalled || m.done == nil || idx < m.next {
		return 0, false
	}
	if idx > m.next {
		if len(m.done) >= maxMarkGap {
			m.stalled, m.done = true, nil
			return 0, false
		}
		m.done[idx] = struct{}{}
		return 0, false
	}
	m.next++
	m.advance()
	return m.next, true
}

// current is the watermark the tracker vouches for.
func (m *marks) current() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stalled || m.done == nil {
		return 0
	}
	return m.next
}
