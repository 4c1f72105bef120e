package index

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/transparency-dev/formats/log"

	"github.com/gatelog/gatelog/translog"
)

// Source is what the index reads from the log (translog.Reader).
type Source interface {
	TreeID() int64
	Checkpoint(ctx context.Context) ([]byte, *log.Checkpoint, error)
	Entries(ctx context.Context, from, to uint64) iter.Seq2[translog.Entry, error]
}

// batchSize is how many entries one index transaction holds.
const batchSize = 512

// CatchUp indexes every entry that the latest checkpoint covers and the
// index does not hold yet, and returns how many it added. Entries handed
// over with Sequenced are indexed from their records; the others are read
// from src. An entry the index cannot read is indexed as KindUnreadable
// (and logged), so one bad entry never stops the index.
func (ix *Index) CatchUp(ctx context.Context, src Source, logger *slog.Logger) (int, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ix.catchingUp.Lock()
	defer ix.catchingUp.Unlock()
	next, err := ix.Next(ctx)
	if err != nil {
		return 0, err
	}
	if err := ix.checkTree(ctx, src.TreeID()); err != nil {
		return 0, err
	}
	_, cp, err := src.Checkpoint(ctx)
	if err != nil {
		return 0, err
	}
	if uint64(next) > cp.Size {
		return 0, fmt.Errorf("%w: index holds %d entries but the log's checkpoint only %d (rebuild the index)", ErrOtherLog, next, cp.Size)
	}
	added := 0
	// Sized for what the checkpoint adds: the follower catches up after
	// every checkpoint, most often by a second's entries or fewer, and a
	// full batch of rows is 192 KB.
	batch := make([]Row, 0, min(batchSize, int(cp.Size-uint64(next))))
	flush := func() error {
		ix.mu.Lock()
		f := ix.onIndexed
		ix.mu.Unlock()
		// f sees the rows before they are committed: a crash between the
		// two repeats them after the restart instead of skipping them. A
		// failed commit does not show them to f a second time. When f
		// fails, nothing is committed, and the next CatchUp shows the rows
		// again: what f does with them (queue their alerts) is not lost.
		if f != nil && len(batch) > 0 {
			fresh := slices.DeleteFunc(slices.Clone(batch), func(r Row) bool { return r.LogIndex <= ix.shown })
			if len(fresh) > 0 {
				if err := f(fresh); err != nil {
					return fmt.Errorf("entries %d to %d not indexed: %w", fresh[0].LogIndex, fresh[len(fresh)-1].LogIndex, err)
				}
				ix.shown = fresh[len(fresh)-1].LogIndex
			}
		}
		if err := ix.Add(ctx, src.TreeID(), batch); err != nil {
			return err
		}
		added += len(batch)
		batch = batch[:0]
		return nil
	}
	add := func(row Row, err error) error {
		if err != nil {
			logger.Warn("audit index: entry is unreadable; indexed as such", "log_index", row.LogIndex, "err", err)
			row.Reasons = []string{err.Error()}
		}
		batch = append(batch, row)
		if len(batch) == batchSize {
			return flush()
		}
		return nil
	}
	// The entries this process appended come from what it handed over
	// (Sequenced); the runs between them are read from the log.
	for i, size := next, int64(cp.Size); i < size; {
		if s, ok := ix.takeSequenced(i); ok {
			if err := add(RowOf(s.e, s.rec)); err != nil {
				return added, err
			}
			i++
			continue
		}
		end := ix.nextSequenced(i+1, size)
		for e, err := range src.Entries(ctx, uint64(i), uint64(end)) {
			// A tile that cannot be read ends this round; an entry whose
			// envelope is missing or corrupt is indexed as unreadable.
			if err != nil && (e.Body == nil || errors.Is(err, translog.ErrUnavailable)) {
				if ferr := flush(); ferr != nil {
					return added, ferr
				}
				return added, err
			}
			var row Row
			if err == nil {
				row, err = DecodeEntry(e.Index, e.UUID, e.IntegratedTime, e.Body, e.Envelope)
			} else {
				row = Row{LogIndex: e.Index, UUID: e.UUID, Kind: KindUnreadable, Reasons: []string{}}
			}
			if err := add(row, err); err != nil {
				return added, err
			}
		}
		i = end
	}
	if err := flush(); err != nil {
		return added, err
	}
	ix.dropSequencedBelow(int64(cp.Size))
	return added, nil
}

// Follow keeps the index caught up with the log, checking every interval,
// until ctx ends. Errors are logged and retried.
func (ix *Index) Follow(ctx context.Context, src Source, every time.Duration, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := ix.CatchUp(ctx, src, logger); err != nil && ctx.Err() == nil && !errors.Is(err, os.ErrNotExist) {
			logger.Warn("audit index: catching up with the log failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Rebuild recreates the SQLite index at path from the log alone: it builds
// a new index beside it and moves it into place only once complete.
func Rebuild(ctx context.Context, path string, src Source, logger *slog.Logger) (int, error) {
	tmp := path + ".rebuild"
	for _, p := range []string{tmp, tmp + "-wal", tmp + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
	}
	ix, err := OpenSQLite(ctx, tmp)
	if err != nil {
		return 0, err
	}
	n, err := ix.CatchUp(ctx, src, logger)
	if cerr := ix.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("rebuild index: %w", err)
	}
	// A write-ahead log left beside the old file must not be applied to
	// the new one.
	for _, p := range []string{path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return n, fmt.Errorf("rebuild index: %w", err)
	}
	return n, nil
}
