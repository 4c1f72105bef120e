package translog

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/gatelog/gatelog/internal/envrecord"
)

// The envelope store is the embedded log's durable sequencer: one write
// holds a decision's envelope, its leaf (the canonical Rekor body), the
// log index assigned to it and the SET that promises that index. Writes
// go through a group commit: concurrent Appends share one append to the
// sequence file (wal.go) and so one fdatasync, and a write returns only
// after it is durable. The store's bbolt database beside it is the index
// every read uses: the applier writes the records into it off the write
// path, reads look at the records it does not hold yet in memory
// (pending), and Open applies what the sequence file holds beyond it.
// Tessera then integrates the sequenced leaves into its tiles, in index
// order (integrate.go).
//
// Buckets:
//
//	log        log index (8 bytes BE) → record (binary, see encodeRecord)   the sequencer's output, applied
//	index      leaf hash              → log index (8 bytes BE)               applied with the record
//	keys       key (decision ID)      → leaf hash                            applied with the record
//	search     sha256 ‖ leaf hash     → nothing                              applied with the record
//	records    arrival (8 bytes BE)   → record (versions 1, 2)               the second layout; read, never written
//	leaves     leaf hash              → arrival                              the second layout; read, never written
//	envelopes  leaf hash              → storedEntry (JSON)                   the first layout; read, never written
//	meta       "watermark"            → entries indexed                      the second layout's; no longer read
//
// Records are keyed by log index, so bbolt only ever appends to the right
// edge of the log tree: a commit rewrites one path of pages instead of one
// random leaf page per record. Only the small index, keys and search maps
// take random keys. A log whose store was written in an earlier layout is
// carried over to this one by Open (migrateStore), once.
var (
	bucketLog       = []byte("log")
	bucketRecords   = []byte("records")
	bucketLeaves    = []byte("leaves")
	bucketEnvelopes = []byte("envelopes")
	bucketKeys      = []byte("keys")
	bucketIndex     = []byte("index")
	bucketSearch    = []byte("search")
)

// storeDir and storeFile place the envelope store: Config.Dir/store/store.db.
const (
	storeDir  = "store"
	storeFile = "store.db"
)

// maxGroup bounds how many writes share one transaction.
const maxGroup = 1024

// releaseInterval is how often a writable store releases its memory
// mapping (releaseMapping) when it was used since the last release. Every
// record is read once after it is written (by the audit follower) and
// rarely again, and every commit walks the random-keyed maps; a page
// touched through bbolt's mapping stays in the daemon's resident set until
// the kernel wants the memory back, so without releases the daemon's RSS
// grows to the size of the store (4.6 GB at 10^6 entries in make bench).
var releaseInterval = 500 * time.Millisecond

type store struct {
	db      *bolt.DB
	writes  chan *storeWrite
	quit    chan struct{} // closed by close, after which nothing is sent on writes
	stopped chan struct{} // closed when commitLoop has finished every write
	// released is closed when releaseLoop has returned (writable stores).
	released chan struct{}
	mu       sync.RWMutex // held shared while sending on writes
	closed   bool
	// used is set by every read and write; releaseLoop clears it.
	used atomic.Bool
	// next is the log index the next sequenced record takes. Once the
	// store is sequencing, commitLoop advances it and rewinds it after a
	// failed signature, writeGroup after a failed write (nextMu).
	nextMu sync.Mutex
	next   uint64
	// durable is next as of the last commit: every index below it is in
	// the store.
	durable atomic.Uint64
	// signSET signs the SET of a record about to be stored at index.
	signSET func(rec *storedEntry, index uint64) ([]byte, error)
	// onSequenced hears of every committed run of sequenced records, in
	// index order, first being the index of recs[0].
	onSequenced func(first uint64, recs []*sequenceWrite)

	// wal is the sequence file a record is durable in first (wal.go);
	// nil when read-only.
	wal *wal
	// pending holds the records the sequence file holds and bbolt not
	// yet (every read looks here first); the applier moves them into
	// bbolt and then drops them.
	pending pendingRecords
	// applyQueue is what the applier has yet to write, in index order.
	applyMu    sync.Mutex
	applyQueue []*sequenceWrite
	applyWake  chan struct{}
	applyQuit  chan struct{} // closed once the commit loop has stopped
	applyDone  chan struct{}
	// applied is bbolt's next index: every record below it is in bbolt.
	applied atomic.Uint64
	// applyFailure is the applier's last error, nil once a write works.
	applyFailure atomic.Pointer[error]
	// applyProgress is closed and replaced after every transaction of
	// the applier's, failed or not.
	applyProgress atomic.Pointer[chan struct{}]
}

// pendingRecords indexes the records not yet in bbolt by every key a
// read may use.
type pendingRecords struct {
	mu     sync.RWMutex
	byIdx  map[uint64]*sequenceWrite
	byLeaf map[string]uint64
	byKey  map[string][]byte
	search map[string]map[string]struct{} // hex SHA-256 → leaves
}

func (p *pendingRecords) add(seqs []*sequenceWrite) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byIdx == nil {
		p.byIdx, p.byLeaf, p.byKey, p.search = map[uint64]*sequenceWrite{}, map[string]uint64{}, map[string][]byte{}, map[string]map[string]struct{}{}
	}
	for _, sw := range seqs {
		p.byIdx[sw.index] = sw
		p.byLeaf[string(sw.leaf)] = sw.index
		p.byKey[sw.rec.Key] = sw.leaf
		for _, h := range sw.search {
			// Some hashes are in most entries (the signer's key): a set,
			// so that dropping one leaf is not a walk over all of them.
			set := p.search[h]
			if set == nil {
				set = map[string]struct{}{}
				p.search[h] = set
			}
			set[string(sw.leaf)] = struct{}{}
		}
	}
}

func (p *pendingRecords) drop(seqs []*sequenceWrite) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, sw := range seqs {
		delete(p.byIdx, sw.index)
		if p.byLeaf[string(sw.leaf)] == sw.index {
			delete(p.byLeaf, string(sw.leaf))
		}
		if l, ok := p.byKey[sw.rec.Key]; ok && string(l) == string(sw.leaf) {
			delete(p.byKey, sw.rec.Key)
		}
		for _, h := range sw.search {
			if set := p.search[h]; set != nil {
				delete(set, string(sw.leaf))
				if len(set) == 0 {
					delete(p.search, h)
				}
			}
		}
	}
}

func (p *pendingRecords) len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.byIdx)
}

func (p *pendingRecords) record(index uint64) (storedEntry, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if sw, ok := p.byIdx[index]; ok {
		return sw.rec, true
	}
	return storedEntry{}, false
}

func (p *pendingRecords) index(leaf []byte) (uint64, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	i, ok := p.byLeaf[string(leaf)]
	return i, ok
}

func (p *pendingRecords) envelope(leaf []byte) (storedEntry, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if i, ok := p.byLeaf[string(leaf)]; ok {
		return p.byIdx[i].rec, true
	}
	return storedEntry{}, false
}

func (p *pendingRecords) leafForKey(key string) []byte {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Clone(p.byKey[key])
}

func (p *pendingRecords) searchLeaves(hexHash string) [][]byte {
	p.mu.RLock()
	defer p.mu.RUnlock()
	set := p.search[strings.ToLower(hexHash)]
	out := make([][]byte, 0, len(set))
	for l := range set {
		out = append(out, []byte(l))
	}
	return out
}

// maxPending bounds how far bbolt may fall behind the sequence file
// before sequencing waits for it: the records in between are held in
// memory. (A variable for the tests.)
var maxPending = 1 << 16

type storeWrite struct {
	apply func(tx *bolt.Tx) error // a plain write, or
	seq   *sequenceWrite          // a record to sequence
	done  chan error
}

// sequenceWrite is one record to sequence: the caller fills rec (all but
// its SET), leaf, search and block; the commit assigns index and signs SET.
type sequenceWrite struct {
	rec    storedEntry
	leaf   []byte
	search []string
	// block is the record's deflated part (recordBlock), made by the
	// caller so that the commit loop only frames it.
	block []byte
	index uint64
	// frame is the record's stored form (envrecord.Frame), made over
	// block by the commit once the SET is signed (block is nil after),
	// and written to the sequence file and then to bbolt.
	frame []byte
}

// openStore opens (or creates) the store. readOnly opens it shared, for
// readers in another process; it fails after timeout while a daemon holds
// it open for writing.
func openStore(path string, readOnly bool, timeout time.Duration) (*store, error) {
	// The freelist is synced with every commit: without it bbolt rebuilds
	// it at open by walking every page of the file, which at 10^6 entries
	// read the whole multi-gigabyte store (seconds of start-up, and all of
	// it left resident in the daemon's mapping).
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      timeout,
		ReadOnly:     readOnly,
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: envelope store %s is in use by another process (a running daemon?)", ErrUnavailable, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: open envelope store: %w", ErrUnavailable, err)
	}
	s := &store{db: db, quit: make(chan struct{}), stopped: make(chan struct{})}
	dir := filepath.Dir(path)
	if readOnly {
		close(s.stopped)
		// What the sequence file holds beyond bbolt (a daemon that
		// stopped without applying it) is read into memory.
		err := db.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket(bucketLog); b != nil {
				next, err := lastLogKey(b)
				s.applied.Store(next)
				return err
			}
			return nil
		})
		if err == nil {
			err = s.loadWAL(dir)
		}
		if err != nil {
			db.Close()
			return nil, err
		}
		return s, nil
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLog, bucketKeys, bucketIndex, bucketSearch} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		next, err := lastLogKey(tx.Bucket(bucketLog))
		s.next = next
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: initialise envelope store: %w", ErrUnavailable, err)
	}
	// Records the sequence file holds and bbolt does not (the daemon
	// stopped before applying them) are read into pending and queued for
	// the applier, like records just sequenced; their segments stay until
	// bbolt holds them. A new segment starts after them.
	applied := s.next
	segs, err := walSegments(dir, true)
	var replay []*sequenceWrite
	if err == nil {
		s.next, err = scanWAL(segs, s.next, func(sw *sequenceWrite) error {
			replay = append(replay, sw)
			return nil
		})
	}
	if err == nil {
		s.wal, err = openWAL(dir, segs, applied)
	}
	if err != nil {
		db.Close()
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: open sequence file: %w", ErrUnavailable, err)
		}
		return nil, err
	}
	s.pending.add(replay)
	s.applyQueue = replay
	s.durable.Store(s.next)
	s.applied.Store(applied)
	s.writes = make(chan *storeWrite, maxGroup)
	s.released = make(chan struct{})
	s.applyWake = make(chan struct{}, 1)
	s.applyQuit = make(chan struct{})
	s.applyDone = make(chan struct{})
	progress := make(chan struct{})
	s.applyProgress.Store(&progress)
	go s.commitLoop()
	go s.applyLoop()
	if len(replay) > 0 {
		s.applyWake <- struct{}{}
	}
	go s.releaseLoop()
	return s, nil
}

// lastLogKey is the index after the last record in the log bucket.
func lastLogKey(b *bolt.Bucket) (uint64, error) {
	k, _ := b.Cursor().Last()
	if k == nil {
		return 0, nil
	}
	if len(k) != 8 {
		return 0, fmt.Errorf("%w: log record key %x is not 8 bytes", ErrCorrupt, k)
	}
	return binary.BigEndian.Uint64(k) + 1, nil
}

// loadWAL reads what the sequence file in dir holds beyond bbolt into
// pending, for a read-only store.
func (s *store) loadWAL(dir string) error {
	segs, err := walSegments(dir, false)
	if err != nil {
		return fmt.Errorf("%w: read sequence file: %w", ErrUnavailable, err)
	}
	next, err := scanWAL(segs, s.applied.Load(), func(sw *sequenceWrite) error {
		s.pending.add([]*sequenceWrite{sw})
		return nil
	})
	s.durable.Store(next)
	return err
}

// commitLoop is the group commit, in two stages that overlap: it takes
// every write waiting, gives the group's records to sequence the next log
// indexes in the order they were taken, and signs their SETs (in
// parallel: signing is most of the work); writeGroup, on its own
// goroutine, makes the group durable in one write and tells each writer
// the outcome. While one group is written and synced, the next gathers
// and is signed, so a lone writer waits for one fsync and a crowd shares
// them, and no group waits for the signatures of the one before.
func (s *store) commitLoop() {
	defer close(s.stopped)
	// Unbuffered: a signed group waits for the writer to be free, and
	// meanwhile the writes behind it gather into the next.
	signed := make(chan *commitGroup)
	written := make(chan struct{})
	go func() {
		defer close(written)
		for g := range signed {
			s.writeGroup(g)
		}
	}()
	defer func() {
		close(signed)
		<-written
	}()
	for {
		var first *storeWrite
		select {
		case first = <-s.writes:
		case <-s.quit:
			// No sender is left; finish what is queued.
			select {
			case first = <-s.writes:
			default:
				return
			}
		}
		g := &commitGroup{writes: []*storeWrite{first}}
	gather:
		for len(g.writes) < maxGroup {
			select {
			case w := <-s.writes:
				g.writes = append(g.writes, w)
			default:
				break gather
			}
		}
		s.nextMu.Lock()
		g.base = s.next
		for _, w := range g.writes {
			if w.seq != nil {
				w.seq.index = s.next
				s.next++
				g.seqs = append(g.seqs, w.seq)
			}
		}
		s.nextMu.Unlock()
		if len(g.seqs) > 0 {
			if g.signErr = s.signAll(g.seqs); g.signErr != nil {
				s.rewind(g.base)
			} else {
				for _, sw := range g.seqs {
					// The block's memory becomes the frame's.
					sw.frame = envrecord.FrameOver(sw.rec, sw.block)
					sw.block = nil
				}
			}
		}
		signed <- g
	}
}

// commitGroup is one group commit on its way from commitLoop to
// writeGroup.
type commitGroup struct {
	writes []*storeWrite
	// seqs are the group's records to sequence, at indexes base, base+1, …
	seqs    []*sequenceWrite
	base    uint64
	signErr error
}

// errEarlierWriteFailed fails a group signed for indexes after a group
// whose write failed.
var errEarlierWriteFailed = errors.New("sequence: the write of the records before these failed")

// rewind gives the indexes from base on back after the records that took
// them failed; records signed for later indexes meanwhile fail in
// writeGroup, which finds them not following the durable ones.
func (s *store) rewind(base uint64) {
	s.nextMu.Lock()
	s.next = min(s.next, base)
	s.nextMu.Unlock()
}

// writeGroup makes g durable — its plain writes in one bbolt transaction,
// its sequenced records in one write of the sequence file — and tells each
// writer the outcome.
func (s *store) writeGroup(g *commitGroup) {
	seqErr := g.signErr
	if seqErr == nil && len(g.seqs) > 0 && g.base != s.durable.Load() {
		// A group before this one failed after this one was signed for
		// the indexes that follow it.
		seqErr = errEarlierWriteFailed
	}
	var err error
	if plain := slices.ContainsFunc(g.writes, func(w *storeWrite) bool { return w.apply != nil }); plain {
		err = s.db.Update(func(tx *bolt.Tx) error {
			for _, w := range g.writes {
				if w.apply != nil {
					if err := w.apply(tx); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	if err == nil && seqErr == nil && len(g.seqs) > 0 {
		err = s.wal.append(g.seqs)
	}
	switch {
	case err != nil && len(g.seqs) > 0 && seqErr == nil:
		s.rewind(g.base)
	case err == nil && seqErr == nil && len(g.seqs) > 0:
		// Readable before anyone hears of them: the integrator may read
		// them back, and a caller look them up.
		s.pending.add(g.seqs)
		s.durable.Store(g.base + uint64(len(g.seqs)))
		s.queueApply(g.seqs)
		if s.onSequenced != nil {
			s.onSequenced(g.base, g.seqs)
		}
	}
	for _, w := range g.writes {
		switch {
		case err != nil:
			w.done <- err
		case w.seq != nil && seqErr != nil:
			w.done <- seqErr
		default:
			w.done <- nil
		}
	}
}

// queueApply hands committed records to the applier.
func (s *store) queueApply(seqs []*sequenceWrite) {
	s.applyMu.Lock()
	s.applyQueue = append(s.applyQueue, seqs...)
	s.applyMu.Unlock()
	select {
	case s.applyWake <- struct{}{}:
	default:
	}
}

func (s *store) signalApplied() {
	ch := make(chan struct{})
	close(*s.applyProgress.Swap(&ch))
}

// applyBatch bounds the records the applier writes in one transaction.
const applyBatch = 4096

// applyPause is how long the applier lets records gather after a
// transaction that left fewer than applyBatch waiting. A bbolt commit
// costs the same two fdatasyncs and rewrites the same branch pages
// whether it holds one record or thousands, and the records are durable
// in the sequence file already (reads find them in pending meanwhile):
// fewer, fuller transactions cost less CPU per decision (at 16 clients
// the applier took 11% of the daemon's CPU when it committed whatever
// had arrived).
var applyPause = 100 * time.Millisecond

// applyLoop writes the records the sequence file holds into bbolt, in
// index order, many per transaction, off the path of any append; it
// retries after a failure (reads find the records in pending meanwhile),
// and when the commit loop has stopped it applies what is left and
// returns.
func (s *store) applyLoop() {
	defer close(s.applyDone)
	backoff := 10 * time.Millisecond
	quitting := false
	for {
		s.applyMu.Lock()
		batch := s.applyQueue[:min(len(s.applyQueue), applyBatch)]
		s.applyMu.Unlock()
		if len(batch) == 0 {
			select {
			case <-s.applyWake:
				continue
			case <-s.applyQuit:
				s.applyMu.Lock()
				empty := len(s.applyQueue) == 0
				s.applyMu.Unlock()
				if empty {
					return
				}
				continue
			}
		}
		err := s.db.Update(func(tx *bolt.Tx) error { return putSequencedTx(tx, batch) })
		if err != nil {
			s.applyFailure.Store(&err)
			s.signalApplied()
			if quitting {
				// What is left is applied at the next open.
				return
			}
			select {
			case <-s.applyQuit:
				quitting = true // one more try before closing
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		s.applyFailure.Store(nil)
		s.applied.Store(batch[len(batch)-1].index + 1)
		s.pending.drop(batch)
		s.applyMu.Lock()
		clear(s.applyQueue[:len(batch)])
		s.applyQueue = s.applyQueue[len(batch):]
		if len(s.applyQueue) == 0 {
			s.applyQueue = nil
		}
		s.applyMu.Unlock()
		s.signalApplied()
		// A segment that cannot be removed now is removed once a later
		// one is applied, or at the next open.
		_ = s.wal.applied(s.applied.Load())
		s.applyMu.Lock()
		full := len(s.applyQueue) >= applyBatch
		s.applyMu.Unlock()
		if !full && !quitting {
			select {
			case <-s.applyQuit:
			case <-time.After(applyPause):
			}
		}
	}
}

// signAll signs the SETs of a group, spread over the CPUs.
func (s *store) signAll(seqs []*sequenceWrite) error {
	if s.signSET == nil {
		return errors.New("envelope store cannot sequence: no SET signer")
	}
	workers := min(runtime.GOMAXPROCS(0), len(seqs))
	errs := make([]error, workers)
	sign := func(w int) {
		for i := w; i < len(seqs); i += workers {
			sw := seqs[i]
			set, err := s.signSET(&sw.rec, sw.index)
			if err != nil {
				errs[w] = fmt.Errorf("%w: sign entry timestamp: %w", errLogKey, err)
				return
			}
			sw.rec.SET = set
		}
	}
	// The commit loop signs a share itself: a goroutine started for it
	// would wait its turn behind the policy evaluations for a CPU, and a
	// lone record (the common group under light load) needs none.
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Go(func() { sign(w) })
	}
	sign(0)
	wg.Wait()
	return errors.Join(errs...)
}

// errLogKey marks a failure of the log key.
var errLogKey = errors.New("log key")

// putSequencedTx stores sequenced records under their indexes, with
// leaf → index, key → leaf and their search records.
func putSequencedTx(tx *bolt.Tx, seqs []*sequenceWrite) error {
	logb, ib, kb := tx.Bucket(bucketLog), tx.Bucket(bucketIndex), tx.Bucket(bucketKeys)
	// Keys only grow, so fill pages completely rather than leave room for
	// inserts that never come.
	logb.FillPercent = 1
	for _, sw := range seqs {
		k := binary.BigEndian.AppendUint64(nil, sw.index)
		frame := sw.frame
		if frame == nil {
			frame = envrecord.Frame(sw.rec, sw.block)
		}
		if err := logb.Put(k, frame); err != nil {
			return err
		}
		if err := ib.Put(sw.leaf, k); err != nil {
			return err
		}
		if err := kb.Put([]byte(sw.rec.Key), sw.leaf); err != nil {
			return err
		}
	}
	recs := make([]indexRecord, len(seqs))
	for i, sw := range seqs {
		recs[i] = indexRecord{leaf: sw.leaf, index: sw.index, search: sw.search}
	}
	return putSearchTx(tx, recs)
}

// releaseLoop releases the mapping every releaseInterval in which the
// store was used, until the store closes.
func (s *store) releaseLoop() {
	defer close(s.released)
	t := time.NewTicker(releaseInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			if s.used.Swap(false) {
				// Only memory accounting is at stake: a failure changes
				// nothing, and the next tick tries again.
				_ = s.releaseMapping()
			}
		}
	}
}

// submit queues w for the commit loop and waits for its outcome, or for
// ctx to end (the write may still be committed then).
func (s *store) submit(ctx context.Context, w *storeWrite) error {
	if s.writes == nil {
		return fmt.Errorf("%w: envelope store is read-only", ErrUnavailable)
	}
	s.used.Store(true)
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return fmt.Errorf("%w: envelope store is closed", ErrUnavailable)
	}
	s.writes <- w
	s.mu.RUnlock()
	select {
	case err := <-w.done:
		if err != nil {
			if errors.Is(err, errLogKey) {
				return fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			return fmt.Errorf("%w: envelope store: %w", ErrUnavailable, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: envelope store: %w", ErrUnavailable, ctx.Err())
	}
}

// write applies fn durably, sharing a transaction with concurrent writes.
func (s *store) write(fn func(tx *bolt.Tx) error) error {
	return s.submit(context.Background(), &storeWrite{apply: fn, done: make(chan error, 1)})
}

// sequence stores sw as the next entry of the log: when it returns nil,
// sw.index is its final log index, sw.rec.SET the log's promise of it,
// and both are durable.
func (s *store) sequence(ctx context.Context, sw *sequenceWrite) error {
	if s.writes == nil {
		return fmt.Errorf("%w: envelope store is read-only", ErrUnavailable)
	}
	// Past maxPending records bbolt has yet to take, a write waits for
	// the applier (back-pressure), or fails if the applier is failing.
	for n := s.pending.len(); n >= maxPending; n = s.pending.len() {
		if p := s.applyFailure.Load(); p != nil {
			return fmt.Errorf("%w: envelope store: %d records wait to be indexed: %w", ErrUnavailable, n, *p)
		}
		ch := s.applyProgress.Load()
		if s.pending.len() < maxPending {
			break
		}
		select {
		case <-*ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: envelope store: %d records wait to be indexed: %w", ErrUnavailable, n, ctx.Err())
		}
	}
	return s.submit(ctx, &storeWrite{seq: sw, done: make(chan error, 1)})
}

func (s *store) close() error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		return nil
	}
	var errs []error
	if s.writes != nil {
		close(s.quit)
		<-s.released
		<-s.stopped
		close(s.applyQuit)
		<-s.applyDone
		// Records bbolt could not take (its disk full, say) stay in the
		// sequence file, where they are durable; the next open applies
		// them before anything else.
		errs = append(errs, s.wal.close(s.applied.Load()))
	}
	<-s.stopped
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}

// record reads the record sequenced at index.
func (s *store) record(index uint64) (storedEntry, bool, error) {
	var (
		rec   storedEntry
		found bool
		bad   error
	)
	if rec, ok := s.pending.record(index); ok {
		return rec, true, nil
	}
	s.used.Store(true)
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLog)
		if b == nil {
			return nil
		}
		raw := b.Get(binary.BigEndian.AppendUint64(nil, index))
		if raw == nil {
			return nil
		}
		found = true
		if rec, bad = envrecord.Decode(raw); bad == nil && rec.SET == nil {
			bad = errors.New("no SET")
		}
		return nil
	})
	if err != nil {
		return rec, false, fmt.Errorf("%w: read envelope store: %w", ErrUnavailable, err)
	}
	if bad != nil {
		return storedEntry{}, false, fmt.Errorf("%w: envelope store record %d: %w", ErrCorrupt, index, bad)
	}
	return rec, found, nil
}

// sequenced is how many entries the store has durably sequenced.
func (s *store) sequenced() uint64 { return s.durable.Load() }

// indexRecord is the index and search records of one sequenced leaf.
type indexRecord struct {
	leaf   []byte
	index  uint64
	search []string // lower-case hex SHA-256s the entry is found by
	set    []byte   // the entry's SET (a log in MySQL keeps it here)
}

func putSearchTx(tx *bolt.Tx, recs []indexRecord) error {
	sb := tx.Bucket(bucketSearch)
	for _, r := range recs {
		for _, h := range r.search {
			k, err := searchRecordKey(h, r.leaf)
			if err != nil {
				return err
			}
			if err := sb.Put(k, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func searchRecordKey(hexHash string, leaf []byte) ([]byte, error) {
	var h [32]byte
	if len(hexHash) != 64 {
		return nil, fmt.Errorf("search hash %q is not a SHA-256", hexHash)
	}
	if _, err := hex.Decode(h[:], []byte(hexHash)); err != nil {
		return nil, fmt.Errorf("search hash %q is not a SHA-256", hexHash)
	}
	return append(h[:], leaf...), nil
}

// get reads one value; nil when absent. The copy outlives the transaction.
func (s *store) get(bucket, key []byte) ([]byte, error) {
	s.used.Store(true)
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		if v := b.Get(key); v != nil {
			out = append([]byte{}, v...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: read envelope store: %w", ErrUnavailable, err)
	}
	return out, nil
}

// envelope reads the record stored for leaf: through index → log, or in a
// store written in an earlier layout, through leaves → records or from
// envelopes.
func (s *store) envelope(leaf []byte) (storedEntry, bool, error) {
	var (
		rec   storedEntry
		found bool
		bad   error
	)
	if rec, ok := s.pending.envelope(leaf); ok {
		return rec, true, nil
	}
	s.used.Store(true)
	err := s.db.View(func(tx *bolt.Tx) error {
		if ib, logb := tx.Bucket(bucketIndex), tx.Bucket(bucketLog); ib != nil && logb != nil {
			if raw := logb.Get(ib.Get(leaf)); raw != nil {
				k := ib.Get(leaf)
				found = true
				if rec, bad = envrecord.Decode(raw); bad != nil {
					bad = fmt.Errorf("log record %x (leaf %x): %v", k, leaf, bad)
				}
				return nil
			}
		}
		if lb := tx.Bucket(bucketLeaves); lb != nil {
			if k := lb.Get(leaf); k != nil {
				raw := tx.Bucket(bucketRecords).Get(k)
				if raw == nil {
					bad = fmt.Errorf("leaf %x points at record %x, which is missing", leaf, k)
					return nil
				}
				found = true
				if rec, bad = envrecord.Decode(raw); bad != nil {
					bad = fmt.Errorf("record %x (leaf %x): %v", k, leaf, bad)
				}
				return nil
			}
		}
		if eb := tx.Bucket(bucketEnvelopes); eb != nil {
			if raw := eb.Get(leaf); raw != nil {
				found = true
				if err := json.Unmarshal(raw, &rec); err != nil {
					bad = fmt.Errorf("record for leaf %x: %v", leaf, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return rec, false, fmt.Errorf("%w: read envelope store: %w", ErrUnavailable, err)
	}
	if bad != nil {
		return storedEntry{}, false, fmt.Errorf("%w: envelope store %w", ErrCorrupt, bad)
	}
	return rec, found, nil
}

func (s *store) leafForKey(key string) ([]byte, error) {
	if leaf := s.pending.leafForKey(key); leaf != nil {
		return leaf, nil
	}
	return s.get(bucketKeys, []byte(key))
}

func (s *store) index(leaf []byte) (uint64, bool, error) {
	if i, ok := s.pending.index(leaf); ok {
		return i, true, nil
	}
	raw, err := s.get(bucketIndex, leaf)
	if err != nil || raw == nil {
		return 0, false, err
	}
	if len(raw) != 8 {
		return 0, false, fmt.Errorf("%w: index record for leaf %x is %d bytes", ErrCorrupt, leaf, len(raw))
	}
	return binary.BigEndian.Uint64(raw), true, nil
}

// searchLeaves lists the leaves recorded under a SHA-256 (hex).
func (s *store) searchLeaves(hexHash string) ([][]byte, error) {
	prefix, err := searchRecordKey(hexHash, nil)
	if err != nil {
		return nil, err
	}
	// Pending first: a record the applier moves meanwhile is in bbolt
	// by the time bbolt is read.
	out := s.pending.searchLeaves(hexHash)
	seen := make(map[string]bool, len(out))
	for _, l := range out {
		seen[string(l)] = true
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSearch).Cursor()
		for k, _ := c.Seek(prefix); len(k) == 64 && string(k[:32]) == string(prefix); k, _ = c.Next() {
			if !seen[string(k[32:])] {
				out = append(out, append([]byte{}, k[32:]...))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: search: %w", ErrUnavailable, err)
	}
	return out, nil
}
