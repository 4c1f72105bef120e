package translog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gatelog/gatelog/internal/envrecord"
)

func walLeaf(i int) []byte { h := sha256.Sum256([]byte(fmt.Sprint("wal", i))); return h[:] }

// signedWrite is record i sequenced at index, as the commit loop makes it.
func signedWrite(t *testing.T, i int, index uint64) *sequenceWrite {
	t.Helper()
	sw := sequenceWriteFor(i, walLeaf(i))
	sw.index = index
	set, err := fakeSET(&sw.rec, index)
	if err != nil {
		t.Fatal(err)
	}
	sw.rec.SET = set
	sw.frame = envrecord.Frame(sw.rec, sw.block)
	return sw
}

func walFiles(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := walSegments(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range segs {
		out = append(out, filepath.Base(s.path))
	}
	return out
}

// checkRecords checks that s holds record i at index i for i in want
// (keys as sequenceWriteFor makes them) and nothing at index len(want).
func checkRecords(t *testing.T, s *store, want []int) {
	t.Helper()
	for idx, i := range want {
		rec, ok, err := s.record(uint64(idx))
		if err != nil || !ok || rec.Key != fmt.Sprint("k", i) || string(rec.SET) != fmt.Sprintf("set:k%d:%d", i, idx) || string(rec.Envelope) != fmt.Sprint("env", i) {
			t.Fatalf("record %d: %v %v %+v, want record k%d", idx, ok, err, rec, i)
		}
		got, ok, err := s.index(walLeaf(i))
		if err != nil || !ok || got != uint64(idx) {
			t.Fatalf("index of leaf %d: %d %v %v, want %d", i, got, ok, err, idx)
		}
		leaf, err := s.leafForKey(fmt.Sprint("k", i))
		if err != nil || !bytes.Equal(leaf, walLeaf(i)) {
			t.Fatalf("leaf of key k%d: %x %v", i, leaf, err)
		}
		found, err := s.searchLeaves(fmt.Sprintf("%x", walLeaf(i)))
		if err != nil || len(found) != 1 || !bytes.Equal(found[0], walLeaf(i)) {
			t.Fatalf("search for leaf %d: %x %v", i, found, err)
		}
	}
	if _, ok, err := s.record(uint64(len(want))); ok || err != nil {
		t.Fatalf("record %d exists (%v), want none", len(want), err)
	}
}

// A daemon that stops without applying its sequence file leaves records
// only there: a torn frame at the end, and frames a failed write left
// behind the one that replaced it. A read-only open finds exactly the
// records written (not the torn one, not the replaced ones); a writable
// open puts them into bbolt, starts the sequence file afresh and
// sequences on after them.
func TestSequenceFileReplayEndsAtATornOrReplacedFrame(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, storeFile)
	s, err := openStore(path, false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.signSET = fakeSET
	for i := range 3 {
		if err := s.sequence(context.Background(), sequenceWriteFor(i, walLeaf(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if files := walFiles(t, dir); len(files) != 0 {
		t.Fatalf("a clean close left sequence file segments %v", files)
	}

	w, err := openWAL(dir, nil, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.append([]*sequenceWrite{signedWrite(t, 3, 3), signedWrite(t, 4, 4)}); err != nil {
		t.Fatal(err)
	}
	// A group whose write "failed": its frames are on disk, but the
	// sequence goes on at the same place with other records.
	off, crc := w.off, w.crc
	if err := w.append([]*sequenceWrite{signedWrite(t, 50, 5), signedWrite(t, 51, 6), signedWrite(t, 52, 7)}); err != nil {
		t.Fatal(err)
	}
	w.dirty, w.off, w.crc = w.off, off, crc
	if err := w.append([]*sequenceWrite{signedWrite(t, 5, 5)}); err != nil {
		t.Fatal(err)
	}
	// A torn frame: a header and half its payload.
	torn := encodeWALFrames(t, w.crc, signedWrite(t, 6, 6))
	if _, err := w.f.WriteAt(torn[:len(torn)/2], w.off); err != nil {
		t.Fatal(err)
	}
	close(w.growQuit)
	<-w.growDone
	w.f.Close()

	want := []int{0, 1, 2, 3, 4, 5}
	ro, err := openStore(path, true, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, ro, want)
	if err := ro.close(); err != nil {
		t.Fatal(err)
	}
	if files := walFiles(t, dir); len(files) != 1 {
		t.Fatalf("a read-only open changed the sequence file: %v", files)
	}

	s, err = openStore(path, false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.signSET = fakeSET
	if s.sequenced() != 6 {
		t.Fatalf("sequenced %d after replay; want 6", s.sequenced())
	}
	checkRecords(t, s, want)
	waitApplied(t, s, 6)
	if files := walFiles(t, dir); len(files) != 1 || files[0] != "wal-0000000000000002" {
		t.Fatalf("segments once bbolt holds the replayed records: %v, want only the new one", files)
	}
	checkRecords(t, s, want)
	sw := sequenceWriteFor(6, walLeaf(6))
	if err := s.sequence(context.Background(), sw); err != nil || sw.index != 6 {
		t.Fatalf("sequenced after replay at %d (%v), want 6", sw.index, err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s, err = openStore(path, true, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	checkRecords(t, s, append(want, 6))
}

func encodeWALFrames(t *testing.T, crc uint32, sw *sequenceWrite) []byte {
	t.Helper()
	payload, err := appendWALPayload(nil, sw)
	if err != nil {
		t.Fatal(err)
	}
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Update(crc, walTable, payload))
	return append(b, payload...)
}

// While bbolt cannot be written (here: a write transaction held open),
// records are still sequenced, durable in the sequence file over several
// segments, and readable from memory; a copy of the store directory taken
// then (what a power cut leaves) opens with every record. Once bbolt can
// be written the applier catches up and removes the segments it absorbed.
func TestSequenceFileCarriesTheLogWhileBboltLags(t *testing.T) {
	defer func(max int64) { walSegmentMax = max }(walSegmentMax)
	walSegmentMax = 1 << 10
	dir := t.TempDir()
	path := filepath.Join(dir, storeFile)
	s, err := openStore(path, false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.signSET = fakeSET
	tx, err := s.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	const n = 60
	want := make([]int, n)
	for i := range n {
		want[i] = i
		sw := sequenceWriteFor(i, walLeaf(i))
		if err := s.sequence(context.Background(), sw); err != nil || sw.index != uint64(i) {
			t.Fatalf("sequence %d: index %d, %v", i, sw.index, err)
		}
	}
	if got := s.applied.Load(); got != 0 {
		t.Fatalf("bbolt holds %d records while its writer is held", got)
	}
	checkRecords(t, s, want)
	if files := walFiles(t, dir); len(files) < 3 {
		t.Fatalf("%d records of ~%d bytes in segments of %d bytes: segments %v", n, len(sequenceWriteFor(0, walLeaf(0)).block), walSegmentMax, files)
	}
	cut := t.TempDir()
	copyDir(t, dir, cut)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, s, n)
	checkRecords(t, s, want)
	if err := s.close(); err != nil {
		t.Fatal(err)
	}

	c, err := openStore(filepath.Join(cut, storeFile), false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if c.sequenced() != n {
		t.Fatalf("the copy taken while bbolt lagged holds %d records, want %d", c.sequenced(), n)
	}
	checkRecords(t, c, want)
	waitApplied(t, c, n)
	checkRecords(t, c, want)
}

// waitApplied waits for bbolt to hold n records, nothing to be pending
// and only the current segment to be left.
func waitApplied(t *testing.T, s *store, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.applied.Load() < n || s.pending.len() != 0 || len(walFiles(t, s.wal.dir)) > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("applier at %d of %d, %d pending, segments %v", s.applied.Load(), n, s.pending.len(), walFiles(t, s.wal.dir))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Past maxPending records bbolt lacks, a write waits for the applier
// (and fails when its context ends first); it goes through once bbolt
// takes the records.
func TestSequenceWaitsWhileBboltIsFarBehind(t *testing.T) {
	defer func(max int) { maxPending = max }(maxPending)
	maxPending = 4
	s, err := openStore(filepath.Join(t.TempDir(), storeFile), false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	s.signSET = fakeSET
	tx, err := s.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := s.sequence(context.Background(), sequenceWriteFor(i, walLeaf(i))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.sequence(ctx, sequenceWriteFor(4, walLeaf(4))); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sequence with bbolt %d behind: %v, want it to wait until its context ends", maxPending, err)
	}
	done := make(chan error, 1)
	sw := sequenceWriteFor(4, walLeaf(4))
	go func() { done <- s.sequence(context.Background(), sw) }()
	select {
	case err := <-done:
		t.Fatalf("sequence returned (%v) while bbolt was held", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || sw.index != 4 {
			t.Fatalf("sequence once bbolt caught up: index %d, %v", sw.index, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sequence still waits after bbolt caught up")
	}
	checkRecords(t, s, []int{0, 1, 2, 3, 4})
}

// A group is signed while the one before it is written; when that write
// fails, the indexes it took are given back, so the group already signed
// for the indexes after them must fail too (its SETs name indexes that
// are not going to be its own), and the next record takes the failed
// one's index: no hole, no index twice.
func TestGroupSignedBehindAFailedWriteFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), storeFile)
	s, err := openStore(path, false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hold, signed := make(chan struct{}), make(chan string, 8)
	s.signSET = func(rec *storedEntry, index uint64) ([]byte, error) {
		signed <- rec.Key
		if rec.Key == "k0" {
			<-hold
		}
		return fakeSET(rec, index)
	}
	ctx := context.Background()
	result := func(f func() error) chan error {
		ch := make(chan error, 1)
		go func() { ch <- f() }()
		return ch
	}
	// Record 0 is held in signing while a plain write that blocks and a
	// record whose write will fail (a search key that is not a hash)
	// queue up behind it, to be one group.
	first := result(func() error { return s.sequence(ctx, sequenceWriteFor(0, walLeaf(0))) })
	if k := <-signed; k != "k0" {
		t.Fatalf("signed %s first", k)
	}
	unblock := make(chan struct{})
	plain := result(func() error { return s.write(func(*bolt.Tx) error { <-unblock; return nil }) })
	bad := sequenceWriteFor(1, walLeaf(1))
	bad.search = []string{"not a hash"}
	failing := result(func() error { return s.sequence(ctx, bad) })
	for len(s.writes) < 2 {
		time.Sleep(time.Millisecond)
	}
	close(hold)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if k := <-signed; k != "k1" {
		t.Fatalf("signed %s second, want k1", k)
	}
	// The writer is inside that group's bbolt transaction: the next
	// record is sequenced and signed (index 2) meanwhile.
	behind := sequenceWriteFor(2, walLeaf(2))
	signedBehind := result(func() error { return s.sequence(ctx, behind) })
	if k := <-signed; k != "k2" || behind.index != 2 {
		t.Fatalf("signed %s at %d third, want k2 at 2", k, behind.index)
	}
	close(unblock)
	if err := <-failing; err == nil || !strings.Contains(err.Error(), "not a SHA-256") {
		t.Fatalf("record with a bad search key: %v", err)
	}
	if err := <-plain; err == nil {
		t.Fatal("a write in the failed group succeeded")
	}
	if err := <-signedBehind; !errors.Is(err, ErrUnavailable) || !errors.Is(err, errEarlierWriteFailed) {
		t.Fatalf("record signed for index 2 behind the failed write: %v", err)
	}
	next := sequenceWriteFor(1, walLeaf(1))
	if err := s.sequence(ctx, next); err != nil || next.index != 1 {
		t.Fatalf("next record: index %d, %v; want the failed one's index 1", next.index, err)
	}
	checkRecords(t, s, []int{0, 1})
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	ro, err := openStore(path, true, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.close()
	checkRecords(t, ro, []int{0, 1})
}
