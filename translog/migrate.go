package translog

import (
	"bytes"
	"context"
	"fmt"
	"iter"

	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/client"
	bolt "go.etcd.io/bbolt"

	"github.com/gatelog/gatelog/internal/envrecord"
	"github.com/gatelog/gatelog/translog/entry"
)

// migrateBatch bounds the records migrateStore writes per transaction.
const migrateBatch = 4096

// migrateStore carries a store written before it became the sequencer
// over to the sequencer's layout: every entry the tiles hold (size) that
// the store has no log record of gets one, built from its leaf in the
// entry bundles and its envelope in the earlier layout, with its SET
// signed now, once. A store already in this layout is left alone.
func (l *Log) migrateStore(ctx context.Context, size uint64) error {
	from := l.seq.sequenced()
	if from >= size {
		return nil
	}
	l.cfg.Logger.Info("envelope store: moving entries to the sequencer's layout", "from", from, "to", size)
	var batch []*sequenceWrite
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := l.seq.write(func(tx *bolt.Tx) error { return putSequencedTx(tx, batch) })
		if err != nil {
			return fmt.Errorf("%w: migrate envelope store: %w", ErrUnavailable, err)
		}
		batch = batch[:0]
		return nil
	}
	idx := from
	for body, err := range l.bodies(ctx, from, size) {
		if err != nil {
			return err
		}
		leaf := entry.LeafHash(body)
		rec, ok, err := l.seq.envelope(leaf)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: entry %d has no stored envelope (leaf %x)", ErrCorrupt, idx, leaf)
		}
		rec.Body = bytes.Clone(body)
		if rec.SET, err = l.signSET(&rec, idx); err != nil {
			return fmt.Errorf("%w: sign entry timestamp: %w", ErrUnavailable, err)
		}
		sw := &sequenceWrite{rec: rec, leaf: leaf, search: searchKeys(body, rec.Envelope), block: envrecord.Block(rec), index: idx}
		batch = append(batch, sw)
		idx++
		if len(batch) == migrateBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	l.seq.next = size
	l.seq.durable.Store(size)
	l.seq.applied.Store(size)
	return nil
}

// checkSequencedTail checks that the store and the tiles agree: the
// store has sequenced at least what the tiles hold, and the last entry in
// the tiles is the one the store sequenced at its index. A store restored
// from an older backup, or tiles from another log, fail here instead of
// being appended to.
func (l *Log) checkSequencedTail(ctx context.Context, size uint64) error {
	if n := l.seq.sequenced(); n < size {
		return fmt.Errorf("%w: the tiles hold %d entries but the envelope store has sequenced %d", ErrCorrupt, size, n)
	}
	if size == 0 {
		return nil
	}
	body, err := l.leaf(ctx, size-1, size)
	if err != nil {
		return err
	}
	rec, ok, err := l.seq.record(size - 1)
	if err != nil {
		return err
	}
	if !ok || !bytes.Equal(rec.Body, body) {
		return fmt.Errorf("%w: entry %d in the tiles is not the one the envelope store sequenced at %d", ErrCorrupt, size-1, size-1)
	}
	return nil
}

// bodies yields the leaf bodies of entries from up to size, in index
// order, read from the entry bundles the tiles hold; an error ends it (and
// a log that holds fewer entries than size is one).
func (l *Log) bodies(ctx context.Context, from, size uint64) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		fetch := func(context.Context) (uint64, error) { return size, nil }
		idx := from
		for b, err := range client.EntryBundles(ctx, 1, fetch, l.reader.ReadEntryBundle, from, size-from) {
			if err != nil {
				yield(nil, fmt.Errorf("%w: read entry bundle for index %d: %w", ErrUnavailable, idx, err))
				return
			}
			var eb api.EntryBundle
			if err := eb.UnmarshalText(b.Data); err != nil {
				yield(nil, fmt.Errorf("%w: entry bundle %d: %w", ErrCorrupt, b.RangeInfo.Index, err))
				return
			}
			if int(b.RangeInfo.First)+int(b.RangeInfo.N) > len(eb.Entries) {
				yield(nil, fmt.Errorf("%w: entry bundle %d holds %d entries, want at least %d", ErrCorrupt, b.RangeInfo.Index, len(eb.Entries), b.RangeInfo.First+b.RangeInfo.N))
				return
			}
			for _, body := range eb.Entries[b.RangeInfo.First : b.RangeInfo.First+b.RangeInfo.N] {
				if !yield(body, nil) {
					return
				}
				idx++
			}
		}
		if idx != size {
			yield(nil, fmt.Errorf("%w: read %d entries of %d", ErrUnavailable, idx-from, size-from))
		}
	}
}
