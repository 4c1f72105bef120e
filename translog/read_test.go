package translog

import (
	"context"
	"errors"
	"testing"
)

// TestReaderEntriesReadsAnyRangeOfThePublishedTree: a range that ends
// inside the published tree, not at its size, yields exactly its entries,
// in a partial bundle (tree of 300: the last bundle holds 44) and in a
// full one; a range past the published tree is refused.
func TestReaderEntriesReadsAnyRangeOfThePublishedTree(t *testing.T) {
	ctx := context.Background()
	f := newSeqFixture(t)
	l := f.open()
	defer l.Close(ctx)
	byID := f.appendN(l, 0, 300)
	byIndex := map[int64]Entry{}
	for _, e := range byID {
		byIndex[e.Index] = e
	}
	if _, err := l.InclusionProof(ctx, 299, true); err != nil {
		t.Fatal(err)
	}
	r := l.Reader()
	for _, rng := range [][2]uint64{{10, 20}, {0, 1}, {250, 260}, {256, 257}, {258, 300}, {299, 300}, {0, 300}, {100, 256}} {
		next := int64(rng[0])
		for e, err := range r.Entries(ctx, rng[0], rng[1]) {
			if err != nil {
				t.Fatalf("%v: %v", rng, err)
			}
			want := byIndex[e.Index]
			if e.Index != next || string(e.Body) != string(want.Body) || string(e.Envelope) != string(want.Envelope) || e.UUID != want.UUID {
				t.Fatalf("%v: got entry %d (%s), want entry %d (%s)", rng, e.Index, e.UUID, next, byIndex[next].UUID)
			}
			next++
		}
		if next != int64(rng[1]) {
			t.Errorf("%v: read up to %d", rng, next)
		}
	}
	for _, err := range r.Entries(ctx, 290, 400) {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("entries past the published tree: %v, want ErrNotFound", err)
		}
		break
	}
}
