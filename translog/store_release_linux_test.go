package translog

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gatelog/gatelog/internal/envrecord"
)

// mappedKB is the resident size of this process's mapping of path, from
// /proc/self/smaps.
func mappedKB(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = strings.HasSuffix(line, path)
			continue
		}
		if in && len(fields) == 3 && fields[0] == "Rss:" {
			kb, _ := strconv.Atoi(fields[1])
			total += kb
		}
	}
	return total
}

// Reading records does not leave the store resident in the daemon: every
// releaseInterval in which the store was used, the mapping's pages are
// dropped, and reads after a release still return the records.
func TestStoreReleasesItsMapping(t *testing.T) {
	defer func(d time.Duration) { releaseInterval = d }(releaseInterval)
	releaseInterval = 50 * time.Millisecond
	path := filepath.Join(t.TempDir(), storeFile)
	s, err := openStore(path, false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	const n, size = 10000, 8 << 10 // 80 MB of records
	leaf := func(i int) []byte { h := sha256.Sum256([]byte(fmt.Sprint(i))); return h[:] }
	// Random bytes: the store deflates envelopes, and these must still
	// take their 80 MB.
	env := func(i int) []byte {
		b := make([]byte, size)
		r := rand.New(rand.NewPCG(uint64(i), 1))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		return b
	}
	err = s.write(func(tx *bolt.Tx) error {
		for i := range n {
			rec := storedEntry{Key: fmt.Sprint("k", i), Envelope: env(i), Body: []byte("body"), SET: []byte("set")}
			sw := &sequenceWrite{rec: rec, leaf: leaf(i), block: envrecord.Block(rec), index: uint64(i)}
			if err := putSequencedTx(tx, []*sequenceWrite{sw}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.releaseMapping(); err != nil {
		t.Fatal(err)
	}
	read := func() {
		for i := range n {
			rec, ok, err := s.envelope(leaf(i))
			if err != nil || !ok || !bytes.Equal(rec.Envelope, env(i)) {
				t.Fatalf("record %d: %v %v", i, ok, err)
			}
		}
	}
	read()
	// Without releases all 80 MB would stay resident; the release loop
	// drops them a tick or two after the last read.
	kb := mappedKB(t, path)
	for deadline := time.Now().Add(10 * time.Second); kb > 8<<10 && time.Now().Before(deadline); kb = mappedKB(t, path) {
		time.Sleep(releaseInterval)
	}
	if kb > 8<<10 {
		t.Errorf("store mapping still resident 10 s after reading %d MB: %d KB", n*size>>20, kb)
	}
	read()
	if err := s.releaseMapping(); err != nil {
		t.Fatal(err)
	}
	if kb := mappedKB(t, path); kb > 1<<10 {
		t.Errorf("store mapping resident after a release: %d KB", kb)
	}
	read()
}
