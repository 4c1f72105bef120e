package translog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
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
)

func TestStoreGroupCommitAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), storeFile)
	s, err := openStore(path, false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	leaf := func(i int) []byte { h := sha256.Sum256([]byte(fmt.Sprint(i))); return h[:] }
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := storedEntry{Key: fmt.Sprint("k", i), IntegratedTime: int64(i), Envelope: []byte(fmt.Sprint("env", i))}
			if err := s.putEnvelope(context.Background(), rec.Key, leaf(i), rec); err != nil {
				errs <- err
				return
			}
			search := hex.EncodeToString(leaf(i % 3))
			errs <- s.putIndex(indexRecord{leaf: leaf(i), index: uint64(i), search: []string{search}})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if err := s.putIndex(indexRecord{leaf: leaf(0)}); err == nil {
		t.Fatal("write after close succeeded")
	}

	// Everything acknowledged is there after reopening, read-only too.
	for _, ro := range []bool{false, true} {
		s, err := openStore(path, ro, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			rec, ok, err := s.envelope(leaf(i))
			if err != nil || !ok || !bytes.Equal(rec.Envelope, []byte(fmt.Sprint("env", i))) {
				t.Fatalf("envelope %d: %v %v %q", i, ok, err, rec.Envelope)
			}
			l, err := s.leafForKey(fmt.Sprint("k", i))
			if err != nil || !bytes.Equal(l, leaf(i)) {
				t.Fatalf("key %d: %x %v", i, l, err)
			}
			idx, ok, err := s.index(leaf(i))
			if err != nil || !ok || idx != uint64(i) {
				t.Fatalf("index %d: %d %v %v", i, idx, ok, err)
			}
		}
		found, err := s.searchLeaves(hex.EncodeToString(leaf(1)))
		if err != nil || len(found) != (n+1)/3 {
			t.Fatalf("search: %d leaves, %v", len(found), err)
		}
		if _, ok, _ := s.envelope(leaf(n + 1)); ok {
			t.Fatal("found an envelope never stored")
		}
		if ro {
			if err := s.putIndex(indexRecord{leaf: leaf(0)}); err == nil {
				t.Fatal("read-only store accepted a write")
			}
		}
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
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

// A store written before records existed keeps its envelopes keyed by leaf
// hash, as JSON; they are still read, next to records written now.
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
	fresh := sha256.Sum256([]byte("new"))
	if err := s.putEnvelope(context.Background(), "new-key", fresh[:], storedEntry{Key: "new-key", IntegratedTime: 8, Envelope: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	for leaf, want := range map[[32]byte]storedEntry{old: legacy, fresh: {Key: "new-key", IntegratedTime: 8, Envelope: []byte("{}"), SignerPEM: []byte{}}} {
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
		if err := tx.Bucket(bucketRecords).Put([]byte{0, 0, 0, 0, 0, 0, 0, 98}, []byte{recordCompressed, 200}); err != nil {
			return err
		}
		return tx.Bucket(bucketLeaves).Put(fresh[:], []byte{0, 0, 0, 0, 0, 0, 0, 98})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, leaf := range [][32]byte{broken, fresh} {
		if _, _, err := s.envelope(leaf[:]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("leaf %x: err = %v, want ErrCorrupt", leaf[:4], err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzDecodeRecord: stored records come off the disk, so any bytes must
// give a record or an error (never a panic), and what decodes re-encodes to
// the same record.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(storedEntry{Key: "k", IntegratedTime: -5, Envelope: []byte(`{"a":1}`), SignerPEM: []byte("pem")}))
	f.Add(plainRecord(storedEntry{Key: "k", IntegratedTime: 3, Envelope: []byte(`{"b":2}`), SignerPEM: []byte("pem")}))
	f.Add([]byte{recordCompressed})
	f.Add([]byte{recordPlain, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{recordCompressed, 1, 'k', 2, 5, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		rec, err := decodeRecord(raw)
		if err != nil {
			return
		}
		again, err := decodeRecord(encodeRecord(rec))
		if err != nil || !reflect.DeepEqual(again, rec) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, rec)
		}
	})
}

// plainRecord is a record as version 1 wrote it: no compression.
func plainRecord(rec storedEntry) []byte {
	b := []byte{recordPlain}
	b = appendBytes(b, []byte(rec.Key))
	b = binary.AppendVarint(b, rec.IntegratedTime)
	b = appendBytes(b, rec.Envelope)
	return appendBytes(b, rec.SignerPEM)
}

// Records written uncompressed (version 1) are still read next to the
// compressed ones written now, which are smaller for a real envelope.
func TestRecordVersions(t *testing.T) {
	env := bytes.Repeat([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEi"}`), 20)
	rec := storedEntry{Key: "dec-1", IntegratedTime: 1700000000, Envelope: env, SignerPEM: []byte("-----BEGIN PUBLIC KEY-----\n...")}
	for name, raw := range map[string][]byte{"plain": plainRecord(rec), "compressed": encodeRecord(rec)} {
		got, err := decodeRecord(raw)
		if err != nil || !reflect.DeepEqual(got, rec) {
			t.Errorf("%s: %+v, %v", name, got, err)
		}
	}
	if c, p := len(encodeRecord(rec)), len(plainRecord(rec)); c >= p/2 {
		t.Errorf("compressed record %d bytes, plain %d: compression is not working", c, p)
	}
	// A compressed block that inflates to garbage, or is not deflate at
	// all, is an error.
	bad := []byte{recordCompressed}
	bad = appendBytes(bad, []byte("k"))
	bad = binary.AppendVarint(bad, 1)
	bad = appendBytes(bad, []byte("not deflate"))
	if _, err := decodeRecord(bad); err == nil {
		t.Error("a record whose body is not deflate decoded")
	}
}
