package translog_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/internal/logtest"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
)

// The faults here are real: a tmpfs that fills up or is remounted
// read-only under one part of the log (the tests run as root, for whom
// chmod stops nothing). Only the log key's failure is injected, by a
// signer that wraps the real key and can be told to fail, as an HSM or a
// KMS that cannot be reached would.

// flakyKey is a log key whose Sign fails while broken is set.
type flakyKey struct {
	*ecdsa.PrivateKey
	broken atomic.Bool
}

func (k *flakyKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.broken.Load() {
		return nil, errors.New("log key unreadable: injected fault")
	}
	return k.PrivateKey.Sign(r, digest, opts)
}

type faultLog struct {
	t         *testing.T
	dir       string
	key       *flakyKey
	log       *translog.Log
	signer    *receipt.Signer
	signerPEM []byte
	n         int
}

func newFaultLog(t *testing.T, dir string) *faultLog {
	t.Helper()
	fl := newFaultKeys(t, dir)
	fl.open()
	return fl
}

// newFaultKeys is newFaultLog without the log: the caller opens one
// (a POSIX log left open beside it would still be writing into its
// directory when the test's cleanup removes it).
func newFaultKeys(t *testing.T, dir string) *faultLog {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	decKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sv, err := signature.LoadECDSASignerVerifier(decKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	s, err := receipt.NewSigner(sv)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := entry.PublicKeyPEM(decKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &faultLog{t: t, dir: dir, key: &flakyKey{PrivateKey: k}, signer: s, signerPEM: pem}
}

func (fl *faultLog) open() {
	fl.t.Helper()
	l, err := translog.Open(context.Background(), logtest.Files(fl.t, translog.Config{Dir: fl.dir, Key: fl.key, CheckpointInterval: 100 * time.Millisecond}))
	if err != nil {
		fl.t.Fatal(err)
	}
	fl.log = l
	fl.t.Cleanup(func() { _ = l.Close(context.Background()) })
}

// append logs one decision record under a fresh key.
func (fl *faultLog) append() (string, translog.Entry, error) {
	fl.t.Helper()
	fl.n++
	id := fmt.Sprintf("decision-%d", fl.n)
	env, pem := fl.envelope(id)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := fl.log.Append(ctx, id, env, pem)
	return id, e, err
}

// envelope is a signed decision record with decision ID id.
func (fl *faultLog) envelope(id string) ([]byte, []byte) {
	fl.t.Helper()
	env, err := fl.signer.Sign(decision.Record{
		DecisionID: id,
		Request:    decision.Request{Subject: decision.Subject{ID: "alice", Kind: "user"}, Action: "deploy"},
		Decision:   decision.Decision{Allow: true, Reasons: []string{"test"}},
		Time:       time.Now().UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		fl.t.Fatal(err)
	}
	return env, fl.signerPEM
}

func (fl *faultLog) mustAppend() (string, translog.Entry) {
	fl.t.Helper()
	id, e, err := fl.append()
	if err != nil {
		fl.t.Fatalf("append %s: %v", id, err)
	}
	return id, e
}

// failsClosed appends under a fault: it must fail with ErrUnavailable
// naming the reason, and leave nothing findable under its key.
func (fl *faultLog) failsClosed(reason string) {
	fl.t.Helper()
	id, e, err := fl.append()
	if err == nil {
		fl.t.Fatalf("append under %q succeeded: index %d", reason, e.Index)
	}
	if !errors.Is(err, translog.ErrUnavailable) || !strings.Contains(err.Error(), reason) {
		fl.t.Fatalf("append under %q: %v", reason, err)
	}
	if got, err := fl.log.Lookup(id); !errors.Is(err, translog.ErrNotFound) {
		fl.t.Fatalf("lookup of the failed append %s: %v (index %d)", id, err, got.Index)
	}
}

// found checks that every key in want is served at its index.
func (fl *faultLog) found(want map[string]int64) {
	fl.t.Helper()
	for id, idx := range want {
		e, err := fl.log.Lookup(id)
		if err != nil || e.Index != idx {
			fl.t.Errorf("lookup %s: index %d, %v (want %d)", id, e.Index, err, idx)
		}
	}
	size, err := fl.log.Size(context.Background())
	if err != nil {
		fl.t.Fatal(err)
	}
	if size != uint64(len(want)) {
		fl.t.Errorf("log size %d, want %d: a failed append left an entry behind", size, len(want))
	}
}

func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

func remount(t *testing.T, dir, mode string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+mode, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v %s", dir, mode, err, out)
	}
}

func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{1 << 16, 1 << 12, 1} {
		buf := make([]byte, chunk)
		for {
			_, err := f.Write(buf)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestTesseraFaultsFailClosed breaks only Tessera's part of the log (its
// tiles and state on their own tmpfs): full, then read-only (which makes
// Tessera's POSIX driver panic on its lock file unless the integrator
// refuses first). The envelope store sequences, so an append that lands
// before integration fails is durable and acknowledged; once a hand-over
// to Tessera fails, appends fail closed naming the cause until one
// succeeds again, and then every acknowledged entry is integrated at its
// index with a proof.
func TestTesseraFaultsFailClosed(t *testing.T) {
	dir := t.TempDir()
	tlog := filepath.Join(dir, "tlog")
	mountTmpfs(t, tlog, "2m")
	fl := newFaultLog(t, dir)
	want := map[string]int64{}
	id, e := fl.mustAppend()
	want[id] = e.Index

	fill := filepath.Join(tlog, "fill")
	fillDisk(t, fill)
	fl.failsClosedSoon("no space left on device", want)
	fl.failsClosed("no space left on device")
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	fl.appendsAgain(want)
	fl.found(want)
	fl.proved(want)

	remount(t, tlog, "ro")
	fl.failsClosedSoon("read-only file system", want)
	remount(t, tlog, "rw")
	fl.appendsAgain(want)
	fl.found(want)
	fl.proved(want)

	// Reopened, the same entries and nothing else; a read-only log is
	// refused at Open with an error, not a panic.
	if err := fl.log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	remount(t, tlog, "ro")
	_, err := translog.Open(context.Background(), logtest.Files(t, translog.Config{Dir: dir, Key: fl.key}))
	if !errors.Is(err, translog.ErrUnavailable) || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("Open of a read-only log: %v", err)
	}
	remount(t, tlog, "rw")
	fl.open()
	fl.found(want)
	fl.proved(want)
}

// failsClosedSoon appends until an append fails closed for reason (the
// integrator meets the fault at its next hand-over); appends acknowledged
// before that are durable and join want.
func (fl *faultLog) failsClosedSoon(reason string, want map[string]int64) {
	fl.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		id, e, err := fl.append()
		if err == nil {
			want[id] = e.Index
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !errors.Is(err, translog.ErrUnavailable) || !strings.Contains(err.Error(), reason) {
			fl.t.Fatalf("append under %q: %v", reason, err)
		}
		if got, err := fl.log.Lookup(id); !errors.Is(err, translog.ErrNotFound) {
			fl.t.Fatalf("lookup of the failed append %s: %v (index %d)", id, err, got.Index)
		}
		return
	}
	fl.t.Fatalf("appends still succeed 20 s into %q", reason)
}

// appendsAgain appends until the integrator has recovered and an append
// succeeds.
func (fl *faultLog) appendsAgain(want map[string]int64) {
	fl.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if id, e, err := fl.append(); err == nil {
			want[id] = e.Index
			return
		}
	}
	fl.t.Fatal("appends still refused 20 s after the fault was cleared")
}

// proved checks that every entry in want has an inclusion proof.
func (fl *faultLog) proved(want map[string]int64) {
	fl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for id, idx := range want {
		if _, err := fl.log.InclusionProof(ctx, idx, true); err != nil {
			fl.t.Fatalf("%s (entry %d): no inclusion proof: %v", id, idx, err)
		}
	}
}

// TestEnvelopeStoreFaultFailsClosed fills the disk that holds the
// envelope store: the envelope cannot be stored, so Append fails before
// the leaf is sequenced (the caller denies and the log does not grow).
// Once the disk has room, appends work again and everything acknowledged
// is found, in this process and after a reopen.
func TestEnvelopeStoreFaultFailsClosed(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	mountTmpfs(t, storeDir, "1m")
	fl := newFaultLog(t, dir)
	want := map[string]int64{}
	id, e := fl.mustAppend()
	want[id] = e.Index

	fill := filepath.Join(storeDir, "fill")
	fillDisk(t, fill)
	// The sequence file may still have preallocated room for some
	// records (durable: they are acknowledged); keep appending until it
	// runs out.
	var err error
	for range 5000 {
		var got translog.Entry
		var logged string
		logged, got, err = fl.append()
		if err != nil {
			break
		}
		want[logged] = got.Index
	}
	if !errors.Is(err, translog.ErrUnavailable) || !strings.Contains(err.Error(), "store envelope") {
		t.Fatalf("append with the envelope store's disk full: %v", err)
	}
	size, serr := fl.log.Size(context.Background())
	if serr != nil || size != uint64(len(want)) {
		t.Fatalf("log size %d (%v) after a refused append, want %d: nothing may be sequenced without its envelope", size, serr, len(want))
	}
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	id, e = fl.mustAppend()
	want[id] = e.Index
	fl.found(want)
	if err := fl.log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	fl.open()
	fl.found(want)
}

// TestLogKeyFaultFailsClosed makes the log key fail to sign: appends fail
// (no SET, so no receipt, and nothing sequenced) and no checkpoint is
// published, and both come back when the key does.
func TestLogKeyFaultFailsClosed(t *testing.T) {
	fl := newFaultLog(t, t.TempDir())
	id, e := fl.mustAppend()
	if _, err := fl.log.InclusionProof(context.Background(), e.Index, true); err != nil {
		t.Fatal(err)
	}
	fl.key.broken.Store(true)
	_, _, err := fl.append()
	if !errors.Is(err, translog.ErrUnavailable) || !strings.Contains(err.Error(), "log key unreadable") {
		t.Fatalf("append with the log key failing: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // a few checkpoint intervals
	_, cp, err := fl.log.Checkpoint(context.Background())
	if err != nil || cp.Size != 1 {
		t.Fatalf("checkpoint while the key fails: %v (size %v)", err, cp)
	}
	fl.key.broken.Store(false)
	id2, e2 := fl.mustAppend()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := fl.log.InclusionProof(ctx, e2.Index, true); err != nil {
		t.Fatalf("no checkpoint after the key recovered: %v", err)
	}
	// The failed append took no index: its SET is signed before its
	// commit, and a group whose SETs fail is not stored.
	if e2.Index != e.Index+1 {
		t.Fatalf("append after the key recovered got index %d, want %d", e2.Index, e.Index+1)
	}
	fl.found(map[string]int64{id: e.Index, id2: e2.Index})
}

// TestOpenRefusesAForeignOrHeadlessLog: another key cannot continue a
// log, and a log whose tree state is gone is not started over.
func TestOpenRefusesAForeignOrHeadlessLog(t *testing.T) {
	dir := t.TempDir()
	fl := newFaultLog(t, dir)
	_, e := fl.mustAppend()
	if _, err := fl.log.InclusionProof(context.Background(), e.Index, true); err != nil {
		t.Fatal(err)
	}
	if err := fl.log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !translog.Exists(dir) {
		t.Fatal("Exists says no log after an append")
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := translog.Open(context.Background(), logtest.Files(t, translog.Config{Dir: dir, Key: other})); !errors.Is(err, translog.ErrWrongKey) {
		t.Fatalf("Open with another key: %v", err)
	}
	state := filepath.Join(dir, "tlog", ".state", "treeState")
	if err := os.Rename(state, state+".moved"); err != nil {
		t.Fatal(err)
	}
	if _, err := translog.Open(context.Background(), logtest.Files(t, translog.Config{Dir: dir, Key: fl.key})); !errors.Is(err, translog.ErrCorrupt) {
		t.Fatalf("Open without tree state: %v", err)
	}
	if err := os.Rename(state+".moved", state); err != nil {
		t.Fatal(err)
	}
	fl.open()
	fl.found(map[string]int64{"decision-1": 0})
}

// TestConcurrentFaultsLeaveNoHoles appends from many goroutines while the
// log key fails for a while and then the envelope store's disk fills up:
// groups fail while the next one is already signed for the indexes that
// follow. Every acknowledged append must be found at its index, and the
// acknowledged indexes must be exactly 0…size-1 — a failed group gives its
// indexes back, and a group signed after it fails with it rather than
// leave a hole — in this process and after a reopen.
func TestConcurrentFaultsLeaveNoHoles(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	mountTmpfs(t, storeDir, "64m")
	fl := newFaultLog(t, dir)

	var (
		mu      sync.Mutex
		want    = map[string]int64{}
		unknown []error
		n       atomic.Int64
		failed  atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				id := fmt.Sprintf("concurrent-%d", n.Add(1))
				env, err := fl.signer.Sign(decision.Record{
					DecisionID: id,
					Request:    decision.Request{Subject: decision.Subject{ID: "alice", Kind: "user"}, Action: "deploy"},
					Decision:   decision.Decision{Allow: true, Reasons: []string{"test"}},
					Time:       time.Now().UTC().Format(time.RFC3339Nano),
				})
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					var e translog.Entry
					e, err = fl.log.Append(ctx, id, env, fl.signerPEM)
					cancel()
					if err == nil {
						mu.Lock()
						want[id] = e.Index
						mu.Unlock()
						continue
					}
				}
				failed.Add(1)
				if !errors.Is(err, translog.ErrUnavailable) {
					mu.Lock()
					unknown = append(unknown, err)
					mu.Unlock()
				}
			}
		})
	}
	// until waits for more failures (or gives up: the check below then
	// says the fault was never hit).
	until := func(more int64) {
		for from, deadline := failed.Load(), time.Now().Add(20*time.Second); failed.Load() < from+more && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond)
	fl.key.broken.Store(true)
	until(20)
	fl.key.broken.Store(false)
	time.Sleep(100 * time.Millisecond)
	afterKey := failed.Load()
	fill := filepath.Join(storeDir, "fill")
	fillDisk(t, fill)
	until(20)
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	diskFailures := failed.Load() - afterKey
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	if len(unknown) > 0 {
		t.Fatalf("appends failed other than as unavailable: %v", unknown[0])
	}
	if afterKey == 0 || diskFailures == 0 {
		t.Fatalf("failures while the key failed %d, while the disk was full %d: a fault was never hit", afterKey, diskFailures)
	}
	check := func() {
		t.Helper()
		size, err := fl.log.Size(context.Background())
		if err != nil || size != uint64(len(want)) {
			t.Fatalf("log size %d (%v), want the %d acknowledged appends and nothing else", size, err, len(want))
		}
		seen := make([]bool, len(want))
		for id, idx := range want {
			if idx < 0 || idx >= int64(len(want)) || seen[idx] {
				t.Fatalf("%s acknowledged at index %d: outside 0…%d or taken twice", id, idx, len(want)-1)
			}
			seen[idx] = true
		}
		fl.found(want)
	}
	check()
	t.Logf("%d appends acknowledged, %d failed (%d while the key failed, %d while the disk was full)", len(want), failed.Load(), afterKey, diskFailures)
	if err := fl.log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	fl.open()
	check()
}
