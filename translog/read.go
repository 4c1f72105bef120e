package translog

import (
	"context"
	"crypto"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"

	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/verify"
)

// Reader reads a log's published checkpoint and its entries straight from
// the log directory (the tiles and the envelope store) without appending.
// From Log.Reader it shares the running log's store; from OpenReader it
// opens the store read-only, which works only while no daemon has the log
// open.
type Reader struct {
	dir    string
	fetch  tileReader
	logKey crypto.PublicKey
	treeID int64
	store  envStore
	// cpTime is when the published checkpoint was written.
	cpTime func() (time.Time, error)
	owned  bool // the store was opened by OpenReader; Close closes it
}

// OpenReader reads the log in dir (the Dir of its Config), whose
// checkpoints must verify with logKey.
func OpenReader(dir string, logKey crypto.PublicKey) (*Reader, error) {
	treeID, err := entry.TreeID(logKey)
	if err != nil {
		return nil, err
	}
	tlog := filepath.Join(dir, "tlog")
	if fi, err := os.Stat(tlog); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s holds no log (no tlog directory)", ErrNotFound, dir)
	}
	path := filepath.Join(dir, storeDir, storeFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %s holds no envelope store: %w", ErrNotFound, dir, err)
	}
	st, err := openStore(path, true, 500*time.Millisecond)
	if err != nil {
		return nil, fmt.Errorf("%w (stop the daemon, or read the log over its API)", err)
	}
	return &Reader{dir: dir, fetch: client.FileFetcher{Root: tlog}, logKey: logKey, treeID: treeID, store: st, owned: true,
		cpTime: fileTime(filepath.Join(tlog, layout.CheckpointPath))}, nil
}

// Close releases a Reader from OpenReader; a Log's Reader needs none.
func (r *Reader) Close() error {
	if !r.owned {
		return nil
	}
	return r.store.close()
}

// Reader returns a reader over this log's files.
func (l *Log) Reader() *Reader {
	return &Reader{dir: l.cfg.Dir, fetch: l.reader, logKey: l.cfg.Key.Public(), treeID: l.treeID, store: l.store, cpTime: l.checkpointTime}
}

// TreeID is the log's tree ID (derived from its key).
func (r *Reader) TreeID() int64 { return r.treeID }

// Checkpoint returns the latest published checkpoint after checking its
// signature with the log key and that its origin names this log's tree.
func (r *Reader) Checkpoint(ctx context.Context) ([]byte, *log.Checkpoint, error) {
	raw, err := r.fetch.ReadCheckpoint(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: read checkpoint: %w", ErrUnavailable, err)
	}
	cp, err := verify.Checkpoint(raw, r.logKey)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !strings.HasSuffix(cp.Origin, fmt.Sprintf("/%d", r.treeID)) {
		return nil, nil, fmt.Errorf("%w: checkpoint origin %q is not this log's (tree ID %d)", ErrUnavailable, cp.Origin, r.treeID)
	}
	return raw, cp, nil
}

// CheckpointTime is when the published checkpoint was last written.
func (r *Reader) CheckpointTime() (time.Time, error) {
	return r.cpTime()
}

// fileTime is a file's modification time.
func fileTime(path string) func() (time.Time, error) {
	return func() (time.Time, error) {
		fi, err := os.Stat(path)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return fi.ModTime(), nil
	}
}

// Entries yields the entries with indexes from (inclusive) to to
// (exclusive), in log order, reading the leaves from the entry bundles and
// each envelope from the envelope store. to must not exceed the size of a
// published checkpoint; the bundles are read as that checkpoint's tree
// lays them out, so any to up to its size works. Entries carry their Signed Entry Timestamp where
// the store keeps it (the embedded log's); everything else is filled in.
// An entry whose
// envelope is missing or corrupt is yielded with an error and its Index,
// LeafHash, UUID and Body set, and iteration goes on; an error reading the
// tiles ends it.
func (r *Reader) Entries(ctx context.Context, from, to uint64) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		if to <= from {
			return
		}
		size := func(ctx context.Context) (uint64, error) {
			if to%layout.EntryBundleWidth == 0 {
				return to, nil // every bundle read is full
			}
			// The last bundle read is partial in a tree of size to, and
			// the tiles hold partial bundles only of published sizes.
			_, cp, err := r.Checkpoint(ctx)
			if err != nil {
				return 0, err
			}
			if cp.Size < to {
				return 0, fmt.Errorf("%w: entries up to %d asked for, the published tree holds %d", ErrNotFound, to, cp.Size)
			}
			return cp.Size, nil
		}
		idx := from
		for b, err := range client.EntryBundles(ctx, 2, size, r.fetch.ReadEntryBundle, from, to-from) {
			if err != nil {
				yield(Entry{}, fmt.Errorf("%w: read entry bundle for index %d: %w", ErrUnavailable, idx, err))
				return
			}
			var eb api.EntryBundle
			if err := eb.UnmarshalText(b.Data); err != nil {
				yield(Entry{}, fmt.Errorf("entry bundle %d is corrupt: %v", b.RangeInfo.Index, err))
				return
			}
			if int(b.RangeInfo.First)+int(b.RangeInfo.N) > len(eb.Entries) {
				yield(Entry{}, fmt.Errorf("entry bundle %d holds %d entries, want at least %d", b.RangeInfo.Index, len(eb.Entries), b.RangeInfo.First+b.RangeInfo.N))
				return
			}
			for _, body := range eb.Entries[b.RangeInfo.First : b.RangeInfo.First+b.RangeInfo.N] {
				// client.EntryBundles (Tessera v1.0.4) covers [from,
				// from+from+N) of the tree, not [from, from+N): in a tree
				// larger than to it runs past to.
				if idx >= to {
					return
				}
				if !yield(r.entryFor(idx, body)) {
					return
				}
				idx++
			}
		}
	}
}

func (r *Reader) entryFor(idx uint64, body []byte) (Entry, error) {
	leaf := entry.LeafHash(body)
	e := Entry{Index: int64(idx), LeafHash: leaf, UUID: entry.UUID(r.treeID, leaf), Body: body}
	rec, ok, err := r.store.envelope(leaf)
	if err != nil {
		return e, fmt.Errorf("read envelope for entry %d: %w", idx, err)
	}
	if !ok {
		return e, fmt.Errorf("%w: no envelope for entry %d (leaf %x)", ErrNotFound, idx, leaf)
	}
	e.Envelope, e.IntegratedTime, e.SignedEntryTimestamp = rec.Envelope, rec.IntegratedTime, rec.SET
	return e, nil
}

// InclusionProofs proves each of indexes is in the tree of size size (that
// of a published checkpoint), reading each tile once for all of them.
func (r *Reader) InclusionProofs(ctx context.Context, size uint64, indexes []int64) ([][][]byte, error) {
	pb, err := client.NewProofBuilder(ctx, size, r.fetch.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("%w: proof builder: %w", ErrUnavailable, err)
	}
	out := make([][][]byte, len(indexes))
	for i, idx := range indexes {
		if idx < 0 || uint64(idx) >= size {
			return nil, fmt.Errorf("%w: entry %d is not in the tree of size %d", ErrNotFound, idx, size)
		}
		if out[i], err = pb.InclusionProof(ctx, uint64(idx)); err != nil {
			return nil, fmt.Errorf("%w: inclusion proof for %d: %w", ErrUnavailable, idx, err)
		}
	}
	return out, nil
}
