package translog

import (
	"context"
	"errors"
	"sync"

	"github.com/transparency-dev/tessera"
)

// The sequencer hands entries to Tessera one group at a time: while a
// group is being sequenced, the entries that arrive wait here, and all of
// them go to Tessera together as soon as it is done. Tessera cuts a batch
// when it is full or its oldest entry reaches the batch age, whether or
// not the previous batch is still being written; fed entry by entry by
// callers that arrive spread out (each after its own envelope commit), it
// cut batches of five or so every few milliseconds, queued them behind
// each other, and spent most of its time on per-batch file writes. Handing
// over whole groups makes each batch everything that arrived during the
// last one (a group commit in front of Tessera's), and lets Tessera's own
// batch age be short: it only needs to cover the hand-over.
type sequencer struct {
	add     tessera.AddFn
	bg      context.Context
	max     int
	queue   chan *seqItem
	mu      sync.RWMutex // held shared while sending on queue
	closed  bool
	quit    chan struct{}
	stopped chan struct{}
}

type seqItem struct {
	ctx  context.Context
	body []byte
	done chan seqResult
}

type seqResult struct {
	index uint64
	err   error
}

// errSequencerClosed is returned to appends that arrive after Close.
var errSequencerClosed = errors.New("log is closed")

func newSequencer(bg context.Context, add tessera.AddFn, max int) *sequencer {
	s := &sequencer{add: add, bg: bg, max: max, queue: make(chan *seqItem, 4*max),
		quit: make(chan struct{}), stopped: make(chan struct{})}
	go s.loop()
	return s
}

// sequence adds body to the log and returns its index once Tessera has
// durably assigned it. When ctx ends first it returns ctx's error; the
// entry may still be sequenced if it was already handed over.
func (s *sequencer) sequence(ctx context.Context, body []byte) (uint64, error) {
	it := &seqItem{ctx: ctx, body: body, done: make(chan seqResult, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return 0, errSequencerClosed
	}
	select {
	case s.queue <- it:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return 0, ctx.Err()
	}
	select {
	case r := <-it.done:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (s *sequencer) loop() {
	defer close(s.stopped)
	group := make([]*seqItem, 0, s.max)
	futures := make([]tessera.IndexFuture, 0, s.max)
	for {
		var first *seqItem
		select {
		case first = <-s.queue:
		case <-s.quit:
			// No sender is left (close holds the lock): finish what is queued.
			select {
			case first = <-s.queue:
			default:
				return
			}
		}
		group = append(group[:0], first)
	gather:
		for len(group) < s.max {
			select {
			case it := <-s.queue:
				group = append(group, it)
			default:
				break gather
			}
		}
		futures = futures[:0]
		for _, it := range group {
			if it.ctx.Err() != nil {
				// Its caller gave up before the hand-over: nothing was
				// added, so nothing is left half done.
				futures = append(futures, nil)
				continue
			}
			futures = append(futures, s.add(s.bg, tessera.NewEntry(it.body)))
		}
		for i, it := range group {
			if futures[i] == nil {
				it.done <- seqResult{err: it.ctx.Err()}
				continue
			}
			idx, err := futures[i]()
			it.done <- seqResult{index: idx.Index, err: err}
		}
		clear(group)
	}
}

// close stops taking entries, hands over the ones queued and waits for
// their indexes.
func (s *sequencer) close() {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		return
	}
	close(s.quit)
	<-s.stopped
}
