package translog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/tessera"
)

// The integrator hands the leaves the envelope store has sequenced to
// Tessera, strictly in index order, so that each lands in the tree at the
// index the store assigned it (and its SET promised). It is the embedded
// log's counterpart of what Tessera's own database drivers do inside one
// database: sequencing is durable first, integration into the tiles
// follows asynchronously and resumes after a restart from what the
// sequencer holds.
//
// Tessera's Add guarantees that an entry added after another's Add has
// returned lands later in the log; the integrator is Tessera's only
// caller and adds one run at a time, waiting for a run's indexes before it
// adds the next, so the tree's order is the store's. It checks every index
// Tessera reports against the one assigned and stops, failing appends
// closed, if they ever differ.
type integrator struct {
	add      tessera.AddFn
	size     func(context.Context) (uint64, error)
	store    *store
	writable func() error
	logger   *slog.Logger
	run      int

	mu sync.Mutex
	// queued holds the bodies of entries the store has committed and the
	// integrator has not yet handed over, from index queuedFrom on; it
	// spares reading them back from the store.
	queued     [][]byte
	queuedFrom uint64
	wake       chan struct{}

	integrated atomic.Uint64
	// failure is the last hand-over's error, nil once one succeeds.
	failure atomic.Pointer[error]
	// fatal is set when Tessera put an entry where the store did not:
	// the log can no longer keep its SETs' promises.
	fatal atomic.Pointer[error]
	// progress is closed and replaced whenever integrated moves or a
	// hand-over fails.
	progress atomic.Pointer[chan struct{}]

	stop    chan struct{}
	stopped chan struct{}
}

// maxBacklog bounds how many sequenced entries may wait for integration
// before appends are refused: the tiles must not fall behind without
// limit while Tessera's storage is failing.
const maxBacklog = 1 << 16

func newIntegrator(add tessera.AddFn, size func(context.Context) (uint64, error), st *store, writable func() error, logger *slog.Logger, run int, from uint64) *integrator {
	in := &integrator{add: add, size: size, store: st, writable: writable, logger: logger, run: run,
		queuedFrom: from, wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	in.integrated.Store(from)
	ch := make(chan struct{})
	in.progress.Store(&ch)
	st.onSequenced = in.sequenced
	return in
}

// sequenced takes the bodies of a committed run (called by the store's
// commit loop, in index order).
func (in *integrator) sequenced(first uint64, seqs []*sequenceWrite) {
	in.mu.Lock()
	if first != in.queuedFrom+uint64(len(in.queued)) {
		// A run the queue does not continue (the queue was dropped):
		// start it afresh; what lies between is read from the store.
		in.queued, in.queuedFrom = in.queued[:0], first
	}
	for _, sw := range seqs {
		in.queued = append(in.queued, sw.rec.Body)
	}
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// healthy reports why appends must be refused: integration stopped for
// good, Tessera's storage failing, or a backlog past maxBacklog.
func (in *integrator) healthy() error {
	if p := in.fatal.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, *p)
	}
	if p := in.failure.Load(); p != nil {
		return fmt.Errorf("%w: integrating into the log's tiles failed: %w", ErrUnavailable, *p)
	}
	if backlog := in.store.sequenced() - in.integrated.Load(); backlog >= maxBacklog {
		return fmt.Errorf("%w: %d entries wait to be integrated into the tiles", ErrUnavailable, backlog)
	}
	return nil
}

func (in *integrator) signal() {
	ch := make(chan struct{})
	old := in.progress.Swap(&ch)
	close(*old)
}

// loop integrates until stop is closed.
func (in *integrator) loop(ctx context.Context) {
	defer close(in.stopped)
	backoff := 10 * time.Millisecond
	for {
		next := in.integrated.Load()
		if in.store.sequenced() <= next {
			select {
			case <-in.stop:
				return
			case <-in.wake:
				continue
			}
		}
		err := in.handOver(ctx, next)
		if in.fatal.Load() != nil {
			in.signal()
			return
		}
		if err == nil {
			backoff = 10 * time.Millisecond
			continue
		}
		if in.failure.Swap(&err) == nil {
			in.logger.Error("integrating sequenced entries into the tiles failed; appends are refused until it succeeds", "from", next, "err", err)
		}
		in.signal()
		select {
		case <-in.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
		// Where the tree really is: a failed run may have been partly
		// integrated in an earlier batch of Tessera's.
		if n, serr := in.size(ctx); serr == nil && n > next {
			in.integrated.Store(n)
			in.dropQueued(n)
			if n >= in.store.sequenced() {
				// Nothing is left to hand over, so nothing can succeed
				// and clear the failure: the tree has everything.
				in.failure.Store(nil)
				in.signal()
			}
		}
	}
}

// handOver adds the next run of sequenced entries, from index next, and
// waits for Tessera to integrate them.
func (in *integrator) handOver(ctx context.Context, next uint64) error {
	bodies, err := in.bodies(next)
	if err != nil {
		return err
	}
	// Tessera's POSIX driver panics when it cannot open its lock file;
	// a log directory that became read-only is caught here instead.
	if err := in.writable(); err != nil {
		return err
	}
	futures := make([]tessera.IndexFuture, len(bodies))
	for i, b := range bodies {
		futures[i] = in.add(ctx, tessera.NewEntry(b))
	}
	var failed error
	done := next
	for i, f := range futures {
		// Every future is waited for, failed or not: none may still be
		// on its way into the tree when the next run is handed over.
		idx, err := f()
		if err != nil {
			failed = errors.Join(failed, err)
			continue
		}
		if want := next + uint64(i); idx.Index != want {
			ferr := fmt.Errorf("tessera integrated the entry sequenced at %d at index %d; integration stopped", want, idx.Index)
			in.fatal.Store(&ferr)
			in.logger.Error("log integration out of order", "err", ferr)
			return ferr
		}
		if failed == nil {
			done = idx.Index + 1
		}
	}
	if done > next {
		in.integrated.Store(done)
		in.dropQueued(done)
	}
	if failed != nil {
		return failed
	}
	in.failure.Store(nil)
	in.signal()
	return nil
}

// bodies returns the run to hand over from index next: from the queue
// when it holds next, else read back from the store.
func (in *integrator) bodies(next uint64) ([][]byte, error) {
	in.mu.Lock()
	if next >= in.queuedFrom && next < in.queuedFrom+uint64(len(in.queued)) {
		q := in.queued[next-in.queuedFrom:]
		out := append([][]byte(nil), q[:min(len(q), in.run)]...)
		in.mu.Unlock()
		return out, nil
	}
	in.mu.Unlock()
	end := min(in.store.sequenced(), next+uint64(in.run))
	out := make([][]byte, 0, end-next)
	for i := next; i < end; i++ {
		rec, ok, err := in.store.record(i)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: entry %d is sequenced but the store holds no record of it", ErrCorrupt, i)
		}
		out = append(out, rec.Body)
	}
	return out, nil
}

func (in *integrator) dropQueued(to uint64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if to <= in.queuedFrom {
		return
	}
	n := min(to-in.queuedFrom, uint64(len(in.queued)))
	clear(in.queued[:n])
	in.queued = in.queued[n:]
	in.queuedFrom += n
	if len(in.queued) == 0 {
		// Let the backing array go rather than creep along it.
		in.queued = nil
		in.queuedFrom = to
	}
}

// drain waits until everything sequenced is integrated, then stops the
// loop; it gives up when ctx ends or a hand-over fails (the rest is
// integrated at the next start).
func (in *integrator) drain(ctx context.Context) error {
	var err error
	n := in.store.sequenced()
	for err == nil && in.integrated.Load() < n {
		ch := in.progress.Load()
		if p := in.failure.Load(); p != nil {
			err = *p
		} else if p := in.fatal.Load(); p != nil {
			err = *p
		} else if in.integrated.Load() < n {
			select {
			case <-*ch:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
	}
	close(in.stop)
	<-in.stopped
	if err != nil {
		return fmt.Errorf("entries %d..%d not integrated into the tiles at shutdown (they are at the next start): %w", in.integrated.Load(), n-1, err)
	}
	return nil
}
