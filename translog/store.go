package translog

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The envelope store lives in one bbolt database beside the tree. Writes go
// through a group commit: concurrent Appends share one transaction and so
// one fsync, which is what lets the log keep up with many callers at once;
// a write returns only after its transaction is durable.
//
// Buckets:
//
//	records    sequence (8 bytes BE) → stored record (binary, see encodeRecord)  written before the leaf is sequenced
//	leaves     leaf hash            → sequence                written with the record
//	keys       key (decision ID)    → leaf hash               written with the record
//	index      leaf hash            → log index (8 bytes BE)  derived: rebuilt from the tree by CatchUp
//	search     sha256 ‖ leaf hash   → nothing                 derived, for Search
//	meta       "watermark"          → entries fully indexed    derived
//	envelopes  leaf hash            → storedEntry (JSON)      the first layout; read, never written
//
// Records are keyed by arrival, not by leaf hash: bbolt then only ever
// appends to the right edge of the records tree, so a commit rewrites one
// path of pages instead of one random leaf page per record, and neither
// writes nor the audit follower (which reads what was just written) touch
// the rest of a file that grows by kilobytes per entry. Only the small
// leaves, keys and index maps take random keys.
var (
	bucketRecords   = []byte("records")
	bucketLeaves    = []byte("leaves")
	bucketEnvelopes = []byte("envelopes")
	bucketKeys      = []byte("keys")
	bucketIndex     = []byte("index")
	bucketSearch    = []byte("search")
	bucketMeta      = []byte("meta")
	keyWatermark    = []byte("watermark")
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
}

type storeWrite struct {
	apply func(tx *bolt.Tx) error
	done  chan error
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
		return nil, fmt.Errorf("%w: open envelope store: %v", ErrUnavailable, err)
	}
	s := &store{db: db, quit: make(chan struct{}), stopped: make(chan struct{})}
	if readOnly {
		close(s.stopped)
		return s, nil
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRecords, bucketLeaves, bucketKeys, bucketIndex, bucketSearch, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: initialise envelope store: %v", ErrUnavailable, err)
	}
	s.writes = make(chan *storeWrite, maxGroup)
	s.released = make(chan struct{})
	go s.commitLoop()
	go s.releaseLoop()
	return s, nil
}

// commitLoop is the group commit: it takes every write waiting, applies
// them in one transaction, and tells each writer the outcome. While one
// transaction syncs, the next group gathers, so a lone writer waits for
// one fsync and a crowd shares them.
func (s *store) commitLoop() {
	defer close(s.stopped)
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
		group := []*storeWrite{first}
	gather:
		for len(group) < maxGroup {
			select {
			case w := <-s.writes:
				group = append(group, w)
			default:
				break gather
			}
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			for _, w := range group {
				if err := w.apply(tx); err != nil {
					return err
				}
			}
			return nil
		})
		for _, w := range group {
			w.done <- err
		}
	}
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

// write applies fn durably, sharing a transaction with concurrent writes.
func (s *store) write(fn func(tx *bolt.Tx) error) error {
	if s.writes == nil {
		return fmt.Errorf("%w: envelope store is read-only", ErrUnavailable)
	}
	s.used.Store(true)
	w := &storeWrite{apply: fn, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return fmt.Errorf("%w: envelope store is closed", ErrUnavailable)
	}
	s.writes <- w
	s.mu.RUnlock()
	if err := <-w.done; err != nil {
		return fmt.Errorf("%w: envelope store: %v", ErrUnavailable, err)
	}
	return nil
}

func (s *store) close() error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		return nil
	}
	if s.writes != nil {
		close(s.quit)
		<-s.released
	}
	<-s.stopped
	return s.db.Close()
}

// putEnvelope stores rec as the next record, with leaf → record and
// key → leaf.
func (s *store) putEnvelope(_ context.Context, key string, leaf []byte, rec storedEntry) error {
	raw := encodeRecord(rec)
	return s.write(func(tx *bolt.Tx) error { return putRecordTx(tx, key, leaf, raw) })
}

func putRecordTx(tx *bolt.Tx, key string, leaf, raw []byte) error {
	records := tx.Bucket(bucketRecords)
	seq, err := records.NextSequence()
	if err != nil {
		return err
	}
	k := binary.BigEndian.AppendUint64(nil, seq)
	// Keys only grow, so fill pages completely rather than leave room for
	// inserts that never come.
	records.FillPercent = 1
	if err := records.Put(k, raw); err != nil {
		return err
	}
	if err := tx.Bucket(bucketLeaves).Put(leaf, k); err != nil {
		return err
	}
	return tx.Bucket(bucketKeys).Put([]byte(key), leaf)
}

// indexRecord is what putIndex records for one sequenced leaf.
type indexRecord struct {
	leaf   []byte
	index  uint64
	search []string // lower-case hex SHA-256s the entry is found by
}

func putIndexTx(tx *bolt.Tx, recs []indexRecord) error {
	ib, sb := tx.Bucket(bucketIndex), tx.Bucket(bucketSearch)
	for _, r := range recs {
		if err := ib.Put(r.leaf, binary.BigEndian.AppendUint64(nil, r.index)); err != nil {
			return err
		}
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

// putIndex records leaves' log indexes and search hashes.
func (s *store) putIndex(recs ...indexRecord) error {
	return s.write(func(tx *bolt.Tx) error { return putIndexTx(tx, recs) })
}

// putIndexAndWatermark records a run of leaves and advances the watermark
// in the same transaction, so the watermark never claims more than is
// there. The watermark only moves forward: a lower one (from a writer that
// knew less) leaves it as it is, and 0 writes none.
func (s *store) putIndexAndWatermark(recs []indexRecord, watermark uint64) error {
	return s.write(func(tx *bolt.Tx) error {
		if err := putIndexTx(tx, recs); err != nil {
			return err
		}
		if watermark == 0 {
			return nil
		}
		meta := tx.Bucket(bucketMeta)
		if cur := meta.Get(keyWatermark); len(cur) == 8 && binary.BigEndian.Uint64(cur) >= watermark {
			return nil
		}
		return meta.Put(keyWatermark, binary.BigEndian.AppendUint64(nil, watermark))
	})
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
		return nil, fmt.Errorf("%w: read envelope store: %v", ErrUnavailable, err)
	}
	return out, nil
}

// envelope reads the record stored for leaf: through leaves → records, or
// in a store written before records existed, from envelopes.
func (s *store) envelope(leaf []byte) (storedEntry, bool, error) {
	var (
		rec   storedEntry
		found bool
		bad   error
	)
	s.used.Store(true)
	err := s.db.View(func(tx *bolt.Tx) error {
		if lb := tx.Bucket(bucketLeaves); lb != nil {
			if k := lb.Get(leaf); k != nil {
				raw := tx.Bucket(bucketRecords).Get(k)
				if raw == nil {
					bad = fmt.Errorf("leaf %x points at record %x, which is missing", leaf, k)
					return nil
				}
				found = true
				if rec, bad = decodeRecord(raw); bad != nil {
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
		return rec, false, fmt.Errorf("%w: read envelope store: %v", ErrUnavailable, err)
	}
	if bad != nil {
		return storedEntry{}, false, fmt.Errorf("%w: envelope store %v", ErrCorrupt, bad)
	}
	return rec, found, nil
}

func (s *store) leafForKey(key string) ([]byte, error) {
	return s.get(bucketKeys, []byte(key))
}

func (s *store) index(leaf []byte) (uint64, bool, error) {
	raw, err := s.get(bucketIndex, leaf)
	if err != nil || raw == nil {
		return 0, false, err
	}
	if len(raw) != 8 {
		return 0, false, fmt.Errorf("%w: index record for leaf %x is %d bytes", ErrCorrupt, leaf, len(raw))
	}
	return binary.BigEndian.Uint64(raw), true, nil
}

func (s *store) watermark() (uint64, error) {
	raw, err := s.get(bucketMeta, keyWatermark)
	if err != nil || raw == nil {
		return 0, err
	}
	if len(raw) != 8 {
		return 0, fmt.Errorf("%w: watermark is %d bytes", ErrCorrupt, len(raw))
	}
	return binary.BigEndian.Uint64(raw), nil
}

// searchLeaves lists the leaves recorded under a SHA-256 (hex).
func (s *store) searchLeaves(hexHash string) ([][]byte, error) {
	prefix, err := searchRecordKey(hexHash, nil)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSearch).Cursor()
		for k, _ := c.Seek(prefix); len(k) == 64 && string(k[:32]) == string(prefix); k, _ = c.Next() {
			out = append(out, append([]byte{}, k[32:]...))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: search: %v", ErrUnavailable, err)
	}
	return out, nil
}

// RewriteStoredEnvelope replaces the envelope stored for leaf in the
// envelope store of the log in dir with what edit returns. The log must not
// be open. It exists for tamper drills: change a stored envelope the way an
// attacker with disk access would, then check that every reader notices.
func RewriteStoredEnvelope(dir string, leaf []byte, edit func(envelope []byte) []byte) error {
	s, err := openStore(filepath.Join(dir, storeDir, storeFile), false, time.Second)
	if err != nil {
		return err
	}
	defer s.close()
	rec, ok, err := s.envelope(leaf)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: no envelope stored for leaf %x", ErrNotFound, leaf)
	}
	rec.Envelope = edit(bytes.Clone(rec.Envelope))
	return s.putEnvelope(context.Background(), rec.Key, leaf, rec)
}
