package translog

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog/entry"
)

func TestMarksAdvanceOverContiguousRuns(t *testing.T) {
	var m marks
	m.reset(10)
	if got := m.current(); got != 10 {
		t.Fatalf("after reset(10): %d", got)
	}
	// Out of order: 12 and 11 wait for 10.
	for _, i := range []uint64{12, 11} {
		if _, ok := m.stored(i); ok {
			t.Fatalf("stored(%d) moved the watermark past the missing 10", i)
		}
	}
	if wm, ok := m.stored(10); !ok || wm != 13 {
		t.Fatalf("stored(10) = %d, %v; want 13", wm, ok)
	}
	// A record below the watermark (a CatchUp rewrite) changes nothing.
	if _, ok := m.stored(3); ok || m.current() != 13 {
		t.Fatalf("stored(3) moved the watermark to %d", m.current())
	}
	// CatchUp covered up to 20 while 21 was already stored: both count.
	m.stored(21)
	m.reset(21)
	if got := m.current(); got != 22 {
		t.Fatalf("after reset(21) with 21 stored: %d, want 22", got)
	}
	// A reset below the watermark never moves it back.
	m.reset(5)
	if got := m.current(); got != 22 {
		t.Fatalf("reset(5) moved the watermark to %d", got)
	}
}

func TestMarksStallBehindAHoleUntilReset(t *testing.T) {
	var m marks
	m.reset(0)
	// Entry 0 never gets its record (its caller gave up): the tracker
	// holds at most maxMarkGap others, then gives up rather than grow.
	for i := uint64(1); i <= maxMarkGap+1; i++ {
		m.stored(i)
	}
	if m.current() != 0 || m.done != nil || !m.stalled {
		t.Fatalf("not stalled: current %d, %d waiting", m.current(), len(m.done))
	}
	if _, ok := m.stored(0); ok {
		t.Fatal("a stalled tracker moved the watermark")
	}
	m.reset(maxMarkGap + 2) // CatchUp re-derived it from the tree
	if wm, ok := m.stored(maxMarkGap + 2); !ok || wm != maxMarkGap+3 {
		t.Fatalf("after reset: stored = %d, %v", wm, ok)
	}
}

// A log that appended entries and closed cleanly records a watermark that
// covers them all, so the next Open reads none of them again.
func TestWatermarkCoversAppendsAfterClose(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	decKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sv, err := signature.LoadECDSASignerVerifier(decKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := receipt.NewSigner(sv)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := entry.PublicKeyPEM(decKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	open := func() *Log {
		l, err := Open(ctx, Config{Dir: dir, Key: logKey, CheckpointInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	appendN := func(l *Log, from, n int) {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := from; i < from+n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprint("decision-", i)
				env, err := signer.Sign(decision.Record{DecisionID: id, Decision: decision.Decision{Allow: true}})
				if err == nil {
					_, err = l.Append(ctx, id, env, pem)
				}
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
	}
	watermark := func() uint64 {
		s, err := openStore(filepath.Join(dir, storeDir, storeFile), true, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		wm, err := s.watermark()
		if err != nil {
			t.Fatal(err)
		}
		return wm
	}

	l := open()
	appendN(l, 0, 40)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if wm := watermark(); wm != 40 {
		t.Fatalf("watermark after 40 appends and Close = %d, want 40", wm)
	}
	// And again from where the reopened log started.
	l = open()
	appendN(l, 40, 25)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if wm := watermark(); wm != 65 {
		t.Fatalf("watermark after 65 appends = %d, want 65", wm)
	}
	// Every entry is still found by its key after the restart.
	l = open()
	defer l.Close(ctx)
	for _, i := range []int{0, 39, 40, 64} {
		if _, err := l.Lookup(fmt.Sprint("decision-", i)); err != nil {
			t.Errorf("decision-%d: %v", i, err)
		}
	}
}
