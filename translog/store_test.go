package translog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gatelog/gatelog/internal/envrecord"
)

// fakeSET is a store's SET signer for tests of the store alone: the SET
// names the index, so a record read back shows which index it was given.
func fakeSET(rec *storedEntry, index uint64) ([]byte, error) {
	return fmt.Appendf(nil, "set:%s:%d", rec.Key, index), nil
}

func sequenceWriteFor(i int, leaf []byte) *sequenceWrite {
	rec := storedEntry{Key: fmt.Sprint("k", i), IntegratedTime: int64(i), Envelope: []byte(fmt.Sprint("env", i)), SignerPEM: []byte("pem"), Body: []byte(fmt.Sprint("body", i))}
	return &sequenceWrite{rec: rec, leaf: leaf, search: []string{hex.EncodeToString(leaf)}, block: envrecord.Block(rec)}
}

// Concurrent writers share commits and get the indexes 0..n-1, each once;
// every record is durable under its index, with its SET, leaf, key and
// search records, after a reopen (read-only too), and the reopened store
// sequences on from n.
func TestStoreSequencesWithGroupCommitAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), storeFile)
	s, err := openStore(path, false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.signSET = fakeSET
	const n = 200
	leaf := func(i int) []byte { h := sha256.Sum256([]byte(fmt.Sprint(i))); return h[:] }
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		indexOf = map[int]uint64{}
		heard   []uint64
	)
	s.onSequenced = func(first uint64, seqs []*sequenceWrite) {
		for i, sw := range seqs {
			heard = append(heard, first+uint64(i))
			if sw.index != first+uint64(i) {
				t.Errorf("run from %d: record %d has index %d", first, i, sw.index)
			}
		}
	}
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sw := sequenceWriteFor(i, leaf(i))
			err := s.sequence(context.Background(), sw)
			mu.Lock()
			indexOf[i] = sw.index
			mu.Unlock()
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]bool{}
	for _, idx := range indexOf {
		if idx >= n || seen[idx] {
			t.Fatalf("index %d given twice or out of range", idx)
		}
		seen[idx] = true
	}
	for i, idx := range heard {
		if idx != uint64(i) {
			t.Fatalf("integration heard of index %d in position %d", idx, i)
		}
	}
	if got := s.sequenced(); got != n {
		t.Fatalf("sequenced = %d, want %d", got, n)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if err := s.sequence(context.Background(), sequenceWriteFor(n, leaf(n))); err == nil {
		t.Fatal("write after close succeeded")
	}

	for _, ro := range []bool{false, true} {
		s, err := openStore(path, ro, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			idx := indexOf[i]
			rec, ok, err := s.record(idx)
			want := fmt.Sprintf("set:k%d:%d", i, idx)
			if err != nil || !ok || string(rec.Envelope) != fmt.Sprint("env", i) || string(rec.Body) != fmt.Sprint("body", i) || string(rec.SET) != want {
				t.Fatalf("record %d: %v %v %+v", idx, ok, err, rec)
			}
			byLeaf, ok, err := s.envelope(leaf(i))
			if err != nil || !ok || !reflect.DeepEqual(byLeaf, rec) {
				t.Fatalf("envelope of leaf %d: %v %v", i, ok, err)
			}
			l, err := s.leafForKey(fmt.Sprint("k", i))
			if err != nil || !bytes.Equal(l, leaf(i)) {
				t.Fatalf("key %d: %x %v", i, l, err)
			}
			got, ok, err := s.index(leaf(i))
			if err != nil || !ok || got != idx {
				t.Fatalf("index %d: %d %v %v", i, got, ok, err)
			}
			found, err := s.searchLeaves(hex.EncodeToString(leaf(i)))
			if err != nil || len(found) != 1 || !bytes.Equal(found[0], leaf(i)) {
				t.Fatalf("search %d: %x, %v", i, found, err)
			}
		}
		if _, ok, _ := s.envelope(leaf(n + 1)); ok {
			t.Fatal("found an envelope never stored")
		}
		if !ro {
			s.signSET = fakeSET
			sw := sequenceWriteFor(n, leaf(n))
			if err := s.sequence(context.Background(), sw); err != nil || sw.index != n {
				t.Fatalf("reopened store sequenced at %d (%v), want %d", sw.index, err, n)
			}
		} else if err := s.sequence(context.Background(), sequenceWriteFor(n+1, leaf(n+1))); err == nil {
			t.Fatal("read-only store accepted a write")
		}
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A SET that cannot be signed fails its whole group and takes no index:
// the next record gets the index the failed one would have.
func TestStoreSequenceFailsWholeWhenTheKeyFails(t *testing.T) {
	s, err := openStore(filepath.Join(t.TempDir(), storeFile), false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	broken := errors.New("hsm unreachable")
	s.signSET = func(*storedEntry, uint64) ([]byte, error) { return nil, broken }
	leaf := sha256.Sum256([]byte("a"))
	if err := s.sequence(context.Background(), sequenceWriteFor(0, leaf[:])); !errors.Is(err, ErrUnavailable) || !errors.Is(err, broken) {
		t.Fatalf("sequence with the key failing: %v", err)
	}
	if _, ok, _ := s.index(leaf[:]); ok || s.sequenced() != 0 {
		t.Fatal("a record whose SET failed was stored")
	}
	s.signSET = fakeSET
	sw := sequenceWriteFor(1, leaf[:])
	if err := s.sequence(context.Background(), sw); err != nil || sw.index != 0 {
		t.Fatalf("after the key recovered: index %d, %v; want 0", sw.index, err)
	}
}

func TestStoreIsExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), storeFile)
	s, err := openStore(path, false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if _, err := openStore(path, true, 100*time.Millisecond); err == nil {
		t.Fatal("a second process could open the store while it is open for writing")
	}
}

// Stores written in the two earlier layouts keep their envelopes keyed by
// leaf hash, as JSON, or by arrival, in records of versions 1 and 2; they
// are still read (Open migrates them), next to records sequenced now.
func TestStoreReadsFirstLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), storeFile)
	s, err := openStore(path, false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	old := sha256.Sum256([]byte("old"))
	legacy := storedEntry{Key: "old-key", IntegratedTime: 7, Envelope: []byte(`{"payload":"x"}`), SignerPEM: []byte("PEM")}
	raw, err := json.Marshal(legacy)
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketEnvelopes)
		if err != nil {
			return err
		}
		return b.Put(old[:], raw)
	})
	if err != nil {
		t.Fatal(err)
	}
	second := sha256.Sum256([]byte("second"))
	secondRec := storedEntry{Key: "second-key", IntegratedTime: 8, Envelope: []byte("{}"), SignerPEM: []byte{}}
	err = s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRecords, bucketLeaves} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketRecords).Put([]byte{0, 0, 0, 0, 0, 0, 0, 1}, envrecord.Encode(secondRec)); err != nil {
			return err
		}
		return tx.Bucket(bucketLeaves).Put(second[:], []byte{0, 0, 0, 0, 0, 0, 0, 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	s.signSET = fakeSET
	fresh := sha256.Sum256([]byte("new"))
	sw := sequenceWriteFor(3, fresh[:])
	if err := s.sequence(context.Background(), sw); err != nil {
		t.Fatal(err)
	}
	for leaf, want := range map[[32]byte]storedEntry{old: legacy, second: secondRec, fresh: {Key: "k3", IntegratedTime: 3, Envelope: []byte("env3"), SignerPEM: []byte("pem"), Body: []byte("body3"), SET: []byte("set:k3:0")}} {
		got, ok, err := s.envelope(leaf[:])
		if err != nil || !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("leaf %x: %+v %v %v, want %+v", leaf[:4], got, ok, err, want)
		}
	}
	// A leaf that points at a missing or unreadable record is corruption,
	// not absence.
	broken := sha256.Sum256([]byte("broken"))
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketLeaves).Put(broken[:], []byte{0, 0, 0, 0, 0, 0, 0, 99}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRecords).Put([]byte{0, 0, 0, 0, 0, 0, 0, 98}, []byte{2, 200} /* version 2, then a key longer than the record */); err != nil {
			return err
		}
		return tx.Bucket(bucketLeaves).Put(second[:], []byte{0, 0, 0, 0, 0, 0, 0, 98})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, leaf := range [][32]byte{broken, second} {
		if _, _, err := s.envelope(leaf[:]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("leaf %x: err = %v, want ErrCorrupt", leaf[:4], err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}
