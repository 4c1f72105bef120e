package translog

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"

	"github.com/gatelog/gatelog/translog/entry"
)

// ErrCorrupt means the log's own files disagree with each other (a stored
// envelope that does not match its leaf, an index record pointing at the
// wrong leaf): something changed them on disk.
var ErrCorrupt = errors.New("log storage is corrupt")

// Size is the number of entries durably sequenced and integrated into the
// tree. It can be ahead of the latest checkpoint by up to one checkpoint
// interval.
func (l *Log) Size(ctx context.Context) (uint64, error) {
	n, err := l.reader.IntegratedSize(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: read tree size: %v", ErrUnavailable, err)
	}
	return n, nil
}

// leaf reads the body of entry index from the log's entry bundles.
func (l *Log) leaf(ctx context.Context, index, size uint64) ([]byte, error) {
	b, err := client.GetEntryBundle(ctx, l.reader.ReadEntryBundle, index/layout.EntryBundleWidth, size)
	if err != nil {
		return nil, fmt.Errorf("%w: entry %d: %v", ErrCorrupt, index, err)
	}
	i := int(index % layout.EntryBundleWidth)
	if i >= len(b.Entries) {
		return nil, fmt.Errorf("%w: entry bundle for entry %d holds only %d entries", ErrCorrupt, index, len(b.Entries))
	}
	return b.Entries[i], nil
}

// ByIndex returns entry index: its body exactly as the log's entry bundles
// hold it, and its envelope from the envelope store, which must match the
// body.
func (l *Log) ByIndex(ctx context.Context, index int64) (Entry, error) {
	size, err := l.Size(ctx)
	if err != nil {
		return Entry{}, err
	}
	if index < 0 || uint64(index) >= size {
		return Entry{}, fmt.Errorf("%w: log index %d is outside the log of size %d", ErrNotFound, index, size)
	}
	body, err := l.leaf(ctx, uint64(index), size)
	if err != nil {
		return Entry{}, err
	}
	leaf := entry.LeafHash(body)
	rec, ok, err := l.store.envelope(leaf)
	if err != nil {
		return Entry{}, err
	}
	if !ok {
		return Entry{}, fmt.Errorf("%w: entry %d has no stored envelope (leaf %x)", ErrCorrupt, index, leaf)
	}
	if err := matchEnvelope(body, rec); err != nil {
		return Entry{}, fmt.Errorf("%w: entry %d: %v", ErrCorrupt, index, err)
	}
	e := Entry{
		Index: index, LeafHash: leaf, UUID: entry.UUID(l.treeID, leaf),
		IntegratedTime: rec.IntegratedTime, Body: body, Envelope: rec.Envelope,
	}
	if e.SignedEntryTimestamp, err = l.signSET(e); err != nil {
		return Entry{}, fmt.Errorf("%w: sign entry timestamp: %v", ErrUnavailable, err)
	}
	return e, nil
}

// matchEnvelope checks that the stored envelope is the one the logged body
// commits to, so the log never hands out an envelope it did not log.
func matchEnvelope(body []byte, rec storedEntry) error {
	want, err := entry.DSSEBody(rec.Envelope, rec.SignerPEM)
	if err != nil {
		return fmt.Errorf("stored envelope: %v", err)
	}
	if !bytes.Equal(want, body) {
		return errors.New("stored envelope does not match the logged entry body")
	}
	return nil
}

// indexOf returns the log index of a leaf from the index records, catching
// the records up from the log first when the leaf has none yet (a crash
// can fall between sequencing and writing the record).
func (l *Log) indexOf(ctx context.Context, leaf []byte) (int64, error) {
	if idx, ok := l.pending.Load(string(leaf)); ok {
		return int64(idx.(uint64)), nil
	}
	idx, ok, err := l.store.index(leaf)
	if err == nil && !ok {
		if cerr := l.CatchUp(ctx); cerr != nil {
			return 0, cerr
		}
		idx, ok, err = l.store.index(leaf)
	}
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: leaf %x is not in the log", ErrNotFound, leaf)
	}
	return int64(idx), nil
}

// catchUpBatch bounds the records CatchUp writes per transaction.
const catchUpBatch = 4096

// CatchUp writes the index and search records for every entry the log
// holds beyond the watermark (the entries known to have them): the records
// are derived data, rebuilt from the entry bundles and the envelope store.
// Open calls it, so entries sequenced just before a crash are found again;
// each run moves the watermark, so the next one starts where it ended.
func (l *Log) CatchUp(ctx context.Context) error {
	l.catchUpMu.Lock()
	defer l.catchUpMu.Unlock()
	from, err := l.store.watermark()
	if err != nil {
		return err
	}
	size, err := l.Size(ctx)
	if err != nil {
		return err
	}
	if from > size {
		// The watermark is ahead of the log: never trust it over the tree.
		from = 0
	}
	if from == size {
		l.marks.reset(size)
		return nil
	}
	fetch := func(ctx context.Context) (uint64, error) { return size, nil }
	var recs []indexRecord
	idx := from
	for b, err := range client.EntryBundles(ctx, 1, fetch, l.reader.ReadEntryBundle, from, size-from) {
		if err != nil {
			return fmt.Errorf("%w: read entry bundle for index %d: %v", ErrUnavailable, idx, err)
		}
		var eb api.EntryBundle
		if err := eb.UnmarshalText(b.Data); err != nil {
			return fmt.Errorf("%w: entry bundle %d: %v", ErrCorrupt, b.RangeInfo.Index, err)
		}
		if int(b.RangeInfo.First)+int(b.RangeInfo.N) > len(eb.Entries) {
			return fmt.Errorf("%w: entry bundle %d holds %d entries, want at least %d", ErrCorrupt, b.RangeInfo.Index, len(eb.Entries), b.RangeInfo.First+b.RangeInfo.N)
		}
		for _, body := range eb.Entries[b.RangeInfo.First : b.RangeInfo.First+b.RangeInfo.N] {
			leaf := entry.LeafHash(body)
			var env []byte
			if rec, ok, err := l.store.envelope(leaf); err == nil && ok {
				env = rec.Envelope
			}
			recs = append(recs, indexRecord{leaf: leaf, index: idx, search: searchKeys(body, env)})
			idx++
			if len(recs) == catchUpBatch {
				if err := l.store.putIndexAndWatermark(recs, idx); err != nil {
					return fmt.Errorf("%w: store index: %v", ErrUnavailable, err)
				}
				recs = recs[:0]
			}
		}
	}
	if idx != size {
		return fmt.Errorf("%w: read %d entries of %d", ErrUnavailable, idx-from, size-from)
	}
	if err := l.store.putIndexAndWatermark(recs, idx); err != nil {
		return fmt.Errorf("%w: store index: %v", ErrUnavailable, err)
	}
	l.marks.reset(size)
	return nil
}

// searchKeys are the SHA-256 hashes (lower-case hex) an entry can be found
// by, as Rekor indexes dsse entries: the payload hash and envelope hash
// from the body, and the in-toto subject digests from the envelope's
// statement (for a decision record, the digest of the canonical request).
func searchKeys(body, envelope []byte) []string {
	var keys []string
	b, err := entry.ParseBody(body)
	if err != nil {
		return nil
	}
	for _, h := range []entry.Hash{b.Spec.PayloadHash, b.Spec.EnvelopeHash} {
		if k, ok := searchKey(h.Algorithm, h.Value); ok {
			keys = append(keys, k)
		}
	}
	var env struct {
		Payload string `json:"payload"`
	}
	if json.Unmarshal(envelope, &env) == nil {
		if payload, err := base64.StdEncoding.DecodeString(env.Payload); err == nil {
			var st struct {
				Subject []struct {
					Digest map[string]string `json:"digest"`
				} `json:"subject"`
			}
			if json.Unmarshal(payload, &st) == nil {
				for _, s := range st.Subject {
					if k, ok := searchKey("sha256", s.Digest["sha256"]); ok {
						keys = append(keys, k)
					}
				}
			}
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func searchKey(alg, value string) (string, bool) {
	value = strings.ToLower(value)
	if alg != "sha256" || len(value) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(value); err != nil {
		return "", false
	}
	return value, true
}

// ParseSearchHash accepts "sha256:<64 hex>" or a bare 64-hex-digit SHA-256
// (as Rekor's index search does) and returns the lower-case hex.
func ParseSearchHash(s string) (string, error) {
	alg, value, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), ":")
	if !ok {
		alg, value = "sha256", alg
	}
	h, ok := searchKey(alg, value)
	if !ok {
		return "", fmt.Errorf("hash %q: want sha256:<64 hex digits>", s)
	}
	return h, nil
}

// Search returns the entries that can be found by a SHA-256 (see
// ParseSearchHash): the payload or envelope hash of a logged envelope, or
// the digest of a decision's request, in log order.
func (l *Log) Search(ctx context.Context, hash string) ([]Entry, error) {
	h, err := ParseSearchHash(hash)
	if err != nil {
		return nil, err
	}
	if err := l.CatchUp(ctx); err != nil {
		return nil, err
	}
	leaves, err := l.store.searchLeaves(h)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, leaf := range leaves {
		e, err := l.ByLeafHash(ctx, leaf)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return int(a.Index - b.Index) })
	return out, nil
}

// RootAt is the root hash of the tree's first size entries, computed from
// the log's tiles; size must not exceed the latest checkpoint's.
func (l *Log) RootAt(ctx context.Context, size uint64) ([]byte, error) {
	_, cp, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	if size > cp.Size {
		return nil, fmt.Errorf("%w: size %d is beyond the published tree of size %d", ErrNotFound, size, cp.Size)
	}
	if size == cp.Size {
		return cp.Hash, nil
	}
	nodes, err := client.FetchRangeNodes(ctx, size, l.reader.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("%w: read tiles: %v", ErrUnavailable, err)
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r, err := rf.NewRange(0, size, nodes)
	if err != nil {
		return nil, fmt.Errorf("%w: tiles for size %d: %v", ErrCorrupt, size, err)
	}
	return r.GetRootHash(nil)
}
