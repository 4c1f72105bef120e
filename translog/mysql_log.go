package translog

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/tessera"

	"github.com/gatelog/gatelog/translog/entry"
)

// A log kept in MySQL/MariaDB is sequenced by Tessera's MySQL driver: an
// Add is durable, with its index, once its batch's InnoDB commit is. The
// envelope is stored before the leaf is added (so every leaf has its
// envelope); the leaf's index record, with the SET signed at sequencing,
// follows off the reply path. Until it is stored, lookups find the index
// in pending; a record lost to a crash is rebuilt from the tree (catchUp),
// its SET signed again then, once.

// mysqlIndexing is the index records' bookkeeping of a log in MySQL.
type mysqlIndexing struct {
	catchUpMu sync.Mutex
	// pending holds the leaves (string(leaf) → pendingIndex) whose
	// record is not stored yet, and indexing counts the writes in
	// flight, which Close waits for.
	pending  sync.Map
	indexing sync.WaitGroup
	// marks advances the watermark as those writes finish.
	marks marks
}

type pendingIndex struct {
	index uint64
	set   []byte
}

// openMySQL opens the log kept in cfg.DB with Tessera's MySQL driver.
func (l *Log) openMySQL(ctx context.Context, opts *tessera.AppendOptions) (*Log, error) {
	cfg := l.cfg
	st := &mysqlStore{db: cfg.DB}
	// A published checkpoint of another tree means another log key.
	if r, ok := cfg.Driver.(tileReader); ok {
		if raw, err := r.ReadCheckpoint(ctx); err == nil {
			if o, _, _ := strings.Cut(string(raw), "\n"); o != l.origin && !strings.HasSuffix(o, fmt.Sprintf("/%d", l.treeID)) {
				return nil, fmt.Errorf("%w: the mysql log has origin %q, but this key's tree ID is %d", ErrWrongKey, o, l.treeID)
			}
		}
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	st.ctx = bg
	appender, shutdown, reader, err := tessera.NewAppender(bg, cfg.Driver, opts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: open tessera appender: %w", ErrUnavailable, err)
	}
	l.bg, l.cancel, l.shutdown, l.reader = bg, cancel, shutdown, reader
	l.add, l.mysql, l.store = appender.Add, st, st
	l.tiles, l.checkpointTime = tilesHandler(reader), st.checkpointTime
	l.awaiter = tessera.NewPublicationAwaiter(bg, reader.ReadCheckpoint, awaitPollMySQL)
	if err := l.catchUp(ctx); err != nil {
		_ = shutdown(ctx)
		cancel()
		return nil, fmt.Errorf("recover index records: %w", err)
	}
	return l, nil
}

// appendMySQL is Append for a log in MySQL.
func (l *Log) appendMySQL(ctx context.Context, key string, envelope, signerPEM, leaf, body []byte, search []string) (Entry, error) {
	integrated := time.Now().Unix()
	rec := storedEntry{Key: key, IntegratedTime: integrated, Envelope: envelope, SignerPEM: signerPEM}
	if err := l.mysql.putEnvelope(ctx, key, leaf, rec); err != nil {
		return Entry{}, fmt.Errorf("%w: store envelope: %w", ErrUnavailable, err)
	}
	future := l.add(l.bg, tessera.NewEntry(body))
	type result struct {
		idx tessera.Index
		err error
	}
	done := make(chan result, 1)
	go func() {
		idx, err := future()
		done <- result{idx, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return Entry{}, fmt.Errorf("%w: append: %w", ErrUnavailable, ctx.Err())
	}
	if r.err != nil {
		return Entry{}, fmt.Errorf("%w: append: %w", ErrUnavailable, r.err)
	}
	e := Entry{
		Index: int64(r.idx.Index), LeafHash: leaf, UUID: entry.UUID(l.treeID, leaf),
		IntegratedTime: integrated, Body: body, Envelope: envelope,
	}
	rec.Body = body
	set, err := l.signSET(&rec, r.idx.Index)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: sign entry timestamp: %w", ErrUnavailable, err)
	}
	e.SignedEntryTimestamp = set
	l.recordIndex(indexRecord{leaf: leaf, index: r.idx.Index, search: search, set: set})
	return e, nil
}

// recordIndex stores a sequenced leaf's index record without making the
// caller wait for that commit: the leaf is already durably in the tree,
// and until the record is stored lookups find it in pending. A failed
// write is logged and left to catchUp, which rebuilds records from the
// tree (on a lookup miss, and at every Open).
func (l *Log) recordIndex(r indexRecord) {
	l.pending.Store(string(r.leaf), pendingIndex{index: r.index, set: r.set})
	l.indexing.Add(1)
	go func() {
		defer l.indexing.Done()
		// The watermark rides along with the record: it covers only
		// records stored before this one was written, so it never claims
		// an entry whose record is not durable. Close writes the last one.
		if err := l.mysql.putIndexAndWatermark([]indexRecord{r}, l.marks.current()); err != nil {
			l.cfg.Logger.Warn("index record not stored yet; it is rebuilt from the tree", "index", r.index, "err", err)
			return
		}
		l.marks.stored(r.index)
		l.pending.Delete(string(r.leaf))
	}()
}

// closeIndexing waits for the index records in flight and stores the
// watermark, so that the next Open starts reading the tree where this one
// stopped.
func (l *Log) closeIndexing() {
	l.indexing.Wait()
	if wm := l.marks.current(); wm > 0 {
		if err := l.mysql.putIndexAndWatermark(nil, wm); err != nil {
			l.cfg.Logger.Warn("watermark not stored; the next start re-reads entries from an older one", "err", err)
		}
	}
}

// indexOfMySQL returns the log index of a leaf from the index records,
// catching the records up from the log first when the leaf has none yet
// (a crash can fall between sequencing and writing the record).
func (l *Log) indexOfMySQL(ctx context.Context, leaf []byte) (int64, error) {
	if p, ok := l.pending.Load(string(leaf)); ok {
		return int64(p.(pendingIndex).index), nil
	}
	idx, ok, err := l.mysql.index(leaf)
	if err == nil && !ok {
		if cerr := l.catchUp(ctx); cerr != nil {
			return 0, cerr
		}
		idx, ok, err = l.mysql.index(leaf)
	}
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: leaf %x is not in the log", ErrNotFound, leaf)
	}
	return int64(idx), nil
}

// byIndexMySQL returns entry index: its body exactly as the log's entry
// bundles hold it, its envelope from the envelope store, which must match
// the body, and the SET stored with its index record (signed and stored
// now, once, for a record catchUp rebuilt).
func (l *Log) byIndexMySQL(ctx context.Context, index int64) (Entry, error) {
	size, err := l.integratedSize(ctx)
	if err != nil {
		return Entry{}, err
	}
	if index < 0 || uint64(index) >= size {
		return Entry{}, fmt.Errorf("%w: log index %d is outside the log of size %d", ErrNotFound, index, size)
	}
	body, err := l.leaf(ctx, uint64(index), size)
	if err != nil {
		return Entry{}, err
	}
	leaf := entry.LeafHash(body)
	rec, ok, err := l.mysql.envelope(leaf)
	if err != nil {
		return Entry{}, err
	}
	if !ok {
		return Entry{}, fmt.Errorf("%w: entry %d has no stored envelope (leaf %x)", ErrCorrupt, index, leaf)
	}
	if err := matchEnvelope(body, rec); err != nil {
		return Entry{}, fmt.Errorf("%w: entry %d: %w", ErrCorrupt, index, err)
	}
	e := Entry{
		Index: index, LeafHash: leaf, UUID: entry.UUID(l.treeID, leaf),
		IntegratedTime: rec.IntegratedTime, Body: body, Envelope: rec.Envelope,
	}
	if p, ok := l.pending.Load(string(leaf)); ok && p.(pendingIndex).index == uint64(index) {
		e.SignedEntryTimestamp = p.(pendingIndex).set
		return e, nil
	}
	if e.SignedEntryTimestamp, err = l.mysql.set(leaf); err != nil {
		return Entry{}, err
	}
	if e.SignedEntryTimestamp == nil {
		rec.Body = body
		if e.SignedEntryTimestamp, err = l.signSET(&rec, uint64(index)); err != nil {
			return Entry{}, fmt.Errorf("%w: sign entry timestamp: %w", ErrUnavailable, err)
		}
		if err := l.mysql.putIndexAndWatermark([]indexRecord{{leaf: leaf, index: uint64(index), set: e.SignedEntryTimestamp}}, 0); err != nil {
			l.cfg.Logger.Warn("SET not stored; it is signed again at the next read", "index", index, "err", err)
		}
	}
	return e, nil
}

// catchUpBatch bounds the records catchUp writes per transaction.
const catchUpBatch = 4096

// catchUp writes, in a log kept in MySQL, the index and search records
// for every entry the log holds beyond the watermark (the entries known
// to have them): the records are derived data, rebuilt from the entry
// bundles and the envelope store. Open calls it, so entries sequenced
// just before a crash are found again; each run moves the watermark, so
// the next one starts where it ended. The embedded log writes these
// records with the entry and has nothing to catch up.
func (l *Log) catchUp(ctx context.Context) error {
	if l.mysql == nil {
		return nil
	}
	l.catchUpMu.Lock()
	defer l.catchUpMu.Unlock()
	from, err := l.mysql.watermark()
	if err != nil {
		return err
	}
	size, err := l.integratedSize(ctx)
	if err != nil {
		return err
	}
	if from > size {
		// The watermark is ahead of the log: never trust it over the tree.
		from = 0
	}
	if from == size {
		l.marks.reset(size)
		return nil
	}
	var recs []indexRecord
	idx := from
	for body, err := range l.bodies(ctx, from, size) {
		if err != nil {
			return err
		}
		leaf := entry.LeafHash(body)
		var env []byte
		if rec, ok, err := l.mysql.envelope(leaf); err == nil && ok {
			env = rec.Envelope
		}
		recs = append(recs, indexRecord{leaf: leaf, index: idx, search: searchKeys(body, env)})
		idx++
		if len(recs) == catchUpBatch {
			if err := l.mysql.putIndexAndWatermark(recs, idx); err != nil {
				return fmt.Errorf("%w: store index: %w", ErrUnavailable, err)
			}
			recs = recs[:0]
		}
	}
	if err := l.mysql.putIndexAndWatermark(recs, idx); err != nil {
		return fmt.Errorf("%w: store index: %w", ErrUnavailable, err)
	}
	l.marks.reset(size)
	return nil
}
