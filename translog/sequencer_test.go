package translog

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
)

// fakeAdd is a Tessera AddFn whose futures wait for release and then
// return consecutive indexes; it records what it was given.
type fakeAdd struct {
	mu      sync.Mutex
	added   []string
	release chan struct{}
}

func (f *fakeAdd) add(_ context.Context, e *tessera.Entry) tessera.IndexFuture {
	f.mu.Lock()
	idx := uint64(len(f.added))
	f.added = append(f.added, string(e.Data()))
	f.mu.Unlock()
	return func() (tessera.Index, error) {
		<-f.release
		return tessera.Index{Index: idx}, nil
	}
}

func TestSequencerHandsOverWhatArrivedMeanwhile(t *testing.T) {
	f := &fakeAdd{release: make(chan struct{})}
	s := newSequencer(context.Background(), f.add, 256)
	defer s.close()
	type res struct {
		idx uint64
		err error
	}
	first := make(chan res, 1)
	go func() {
		i, err := s.sequence(context.Background(), []byte("a"))
		first <- res{i, err}
	}()
	waitAdded(t, f, 1) // "a" is with Tessera and not yet sequenced

	// While it is, b and c arrive; c's caller gives up before the
	// hand-over, so c must never reach Tessera.
	ctxC, cancelC := context.WithCancel(context.Background())
	rest := make(chan res, 2)
	go func() {
		i, err := s.sequence(context.Background(), []byte("b"))
		rest <- res{i, err}
	}()
	go func() {
		i, err := s.sequence(ctxC, []byte("c"))
		rest <- res{i, err}
	}()
	time.Sleep(50 * time.Millisecond) // let both queue
	cancelC()
	if r := <-rest; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("the caller that gave up got %+v", r)
	}
	close(f.release) // "a" is sequenced; the queued group goes next
	if r := <-first; r.err != nil || r.idx != 0 {
		t.Fatalf("a: %+v", r)
	}
	if r := <-rest; r.err != nil || r.idx != 1 {
		t.Fatalf("b: %+v", r)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.added) != 2 || f.added[0] != "a" || f.added[1] != "b" {
		t.Fatalf("handed to Tessera: %q, want a then b (c was abandoned)", f.added)
	}
}

func TestSequencerRefusesAfterClose(t *testing.T) {
	f := &fakeAdd{release: make(chan struct{})}
	close(f.release)
	s := newSequencer(context.Background(), f.add, 4)
	if i, err := s.sequence(context.Background(), []byte("x")); err != nil || i != 0 {
		t.Fatalf("sequence: %d, %v", i, err)
	}
	s.close()
	s.close() // idempotent
	if _, err := s.sequence(context.Background(), []byte("y")); !errors.Is(err, errSequencerClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func waitAdded(t *testing.T, f *fakeAdd, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		got := len(f.added)
		f.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries handed over, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}
