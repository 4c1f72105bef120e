package translog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
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
