// Package audit keeps the audit index following the log and answers the
// audit API's questions from it: a search (with, on request, every
// result's receipt proved against one checkpoint), counts, a rebuild.
// The index is derived data (translog/index); what it answers is only a
// pointer into the log until the client verifies the receipts.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatelog/gatelog/daemon/api"
	"github.com/gatelog/gatelog/record"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/index"
)

// ErrUnavailable wraps every failure that is not the caller's (a bad
// query is index.ErrBadQuery).
var ErrUnavailable = errors.New("audit index unavailable")

// Config configures an Index.
type Config struct {
	// Index is the opened audit index; Log the log it follows.
	Index *index.Index
	Log   *translog.Log
	// Shared says the index is shared by several daemons (PostgreSQL): one
	// built from another log is then left alone, not rebuilt.
	Shared bool
	// Every is how often to look for new entries (default 1s).
	Every time.Duration
	// OnIndexed, if set, sees every batch of newly indexed rows before
	// they are committed (the daemon queues their alerts); an error leaves
	// the batch unindexed until the next catch-up.
	OnIndexed func([]index.Row) error
	Logger    *slog.Logger
}

// Index is the audit index, following the log.
type Index struct {
	cfg       Config
	src       *translog.Reader
	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	// notFollowing is set when the index is not following this log (a
	// shared index of another log): records are not handed to it.
	notFollowing atomic.Bool
}

// Open starts following the log.
func Open(ctx context.Context, cfg Config) *Index {
	if cfg.Every <= 0 {
		cfg.Every = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OnIndexed != nil {
		cfg.Index.OnIndexed(cfg.OnIndexed)
	}
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &Index{cfg: cfg, src: cfg.Log.Reader(), stop: cancel, done: make(chan struct{})}
	ix, logger := cfg.Index, cfg.Logger
	go func() {
		defer close(a.done)
		if _, err := ix.CatchUp(fctx, a.src, logger); errors.Is(err, index.ErrOtherLog) && cfg.Shared {
			// A shared index is never dropped: the other daemons may be
			// right and this one pointed at the wrong log.
			logger.Error("shared audit index belongs to another log; not following it", "err", err)
			a.notFollowing.Store(true)
			return
		} else if errors.Is(err, index.ErrOtherLog) {
			// The index is derived data: one built from another log is
			// dropped and rebuilt from this one.
			logger.Warn("audit index was built from another log; rebuilding it", "err", err)
			if err := ix.Reset(fctx); err != nil {
				logger.Error("audit index: reset failed", "err", err)
			}
		}
		ix.Follow(fctx, a.src, cfg.Every, logger)
	}()
	return a
}

// Recorded hands the index a record the daemon logged (the Recorder's
// outcome): once a checkpoint covers it, it is indexed from the record at
// hand instead of being read back from the log and decoded again. An
// outcome whose append failed holds no entry and is ignored.
func (a *Index) Recorded(out record.Outcome) {
	if out.Stage == record.StageSign || out.Stage == record.StageAppend || a.notFollowing.Load() {
		return
	}
	a.cfg.Index.Sequenced(out.Entry, out.Record)
}

// Close stops following and closes the index; it is safe to call more
// than once and concurrently with queries.
func (a *Index) Close() error {
	a.closeOnce.Do(func() {
		a.stop()
		<-a.done
		a.closeErr = a.cfg.Index.Close()
	})
	return a.closeErr
}

// Indexed is how many log entries the index covers.
func (a *Index) Indexed(ctx context.Context) (int64, error) { return a.cfg.Index.Next(ctx) }

// caughtUp brings the index up to the latest checkpoint, as far as ctx's
// time allows (a lagging index is still answered from, and says how far
// it got), and returns how many entries it covers.
func (a *Index) caughtUp(ctx context.Context) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := a.cfg.Index.CatchUp(cctx, a.src, a.cfg.Logger); err != nil {
		a.cfg.Logger.Warn("audit index lags the log", "err", err)
	}
	next, err := a.cfg.Index.Next(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return next, nil
}

// Search answers GET /v1/audit/search; with receipts, each result's
// receipt proved against one checkpoint.
func (a *Index) Search(ctx context.Context, q index.Query, receipts bool) (api.SearchResponse, error) {
	next, err := a.caughtUp(ctx)
	if err != nil {
		return api.SearchResponse{}, err
	}
	p, err := a.cfg.Index.Search(ctx, q)
	if err != nil {
		return api.SearchResponse{}, queryError(err)
	}
	resp := api.SearchResponse{Page: p, Indexed: next}
	if receipts {
		if resp.Receipts, err = a.receiptsFor(ctx, p.Results); err != nil {
			return api.SearchResponse{}, fmt.Errorf("%w: receipts: %w", ErrUnavailable, err)
		}
	}
	return resp, nil
}

// Counts answers GET /v1/audit/counts.
func (a *Index) Counts(ctx context.Context, q index.Query, by string) (api.CountsResponse, error) {
	next, err := a.caughtUp(ctx)
	if err != nil {
		return api.CountsResponse{}, err
	}
	cs, err := a.cfg.Index.Counts(ctx, q, by)
	if err != nil {
		return api.CountsResponse{}, queryError(err)
	}
	return api.CountsResponse{By: by, Counts: cs, Indexed: next}, nil
}

// Rebuild empties the index and rebuilds it from the log, returning how
// many entries it indexed.
func (a *Index) Rebuild(ctx context.Context) (int, error) {
	if err := a.cfg.Index.Reset(ctx); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	n, err := a.cfg.Index.CatchUp(ctx, a.src, a.cfg.Logger)
	if err != nil {
		return n, fmt.Errorf("%w: rebuilt %d entries, then: %w", ErrUnavailable, n, err)
	}
	return n, nil
}

func queryError(err error) error {
	if errors.Is(err, index.ErrBadQuery) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// receiptsFor builds the receipts of rows, as GET /v1/decisions/{id} would,
// but proves them all against one checkpoint with one proof builder.
func (a *Index) receiptsFor(ctx context.Context, rows []index.Row) ([]*decision.Receipt, error) {
	raw, cp, err := a.src.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*decision.Receipt, len(rows))
	var idxs []int64
	var pos []int
	for i, row := range rows {
		if row.Kind == index.KindUnreadable {
			continue
		}
		e, err := a.cfg.Log.Lookup(row.ID)
		if err != nil || e.Index < 0 || uint64(e.Index) >= cp.Size {
			continue // the client sees no receipt and reports the row unverified
		}
		st, err := receipt.ReadStatement(e.Envelope)
		if err != nil {
			continue
		}
		rc := record.Receipt(e, st.Predicate, a.cfg.Log.LogID())
		out[i] = &rc
		idxs, pos = append(idxs, e.Index), append(pos, i)
	}
	proofs, err := a.src.InclusionProofs(ctx, cp.Size, idxs)
	if err != nil {
		return nil, err
	}
	for k, i := range pos {
		out[i].InclusionProof = record.ProofJSON(translog.Proof{Index: idxs[k], TreeSize: int64(cp.Size), RootHash: cp.Hash, Hashes: proofs[k], Checkpoint: raw})
	}
	return out, nil
}
