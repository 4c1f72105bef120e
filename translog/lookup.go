package translog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"

	"github.com/gatelog/gatelog/translog/entry"
)

// ErrCorrupt means the log's own files disagree with each other (a stored
// envelope that does not match its leaf, an index record pointing at the
// wrong leaf): something changed them on disk.
var ErrCorrupt = errors.New("log storage is corrupt")

// Size is the number of entries in the log: durably sequenced, with
// their final indexes. The tiles, and then a checkpoint, cover them
// shortly after (integrated; see InclusionProof).
func (l *Log) Size(ctx context.Context) (uint64, error) {
	if l.seq != nil {
		return l.seq.sequenced(), nil
	}
	return l.integratedSize(ctx)
}

// integratedSize is the number of entries in the tiles.
func (l *Log) integratedSize(ctx context.Context) (uint64, error) {
	n, err := l.reader.IntegratedSize(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: read tree size: %w", ErrUnavailable, err)
	}
	return n, nil
}

// leaf reads the body of entry index from the log's entry bundles.
func (l *Log) leaf(ctx context.Context, index, size uint64) ([]byte, error) {
	b, err := client.GetEntryBundle(ctx, l.reader.ReadEntryBundle, index/layout.EntryBundleWidth, size)
	if err != nil {
		return nil, fmt.Errorf("%w: entry %d: %w", ErrCorrupt, index, err)
	}
	i := int(index % layout.EntryBundleWidth)
	if i >= len(b.Entries) {
		return nil, fmt.Errorf("%w: entry bundle for entry %d holds only %d entries", ErrCorrupt, index, len(b.Entries))
	}
	return b.Entries[i], nil
}

// ByIndex returns entry index, with its envelope, which must match the
// leaf the log holds: in the embedded log the one the store sequenced,
// and once integrated, the one in the tiles too.
func (l *Log) ByIndex(ctx context.Context, index int64) (Entry, error) {
	if l.seq == nil {
		return l.byIndexMySQL(ctx, index)
	}
	if index < 0 || uint64(index) >= l.seq.sequenced() {
		return Entry{}, fmt.Errorf("%w: log index %d is outside the log of size %d", ErrNotFound, index, l.seq.sequenced())
	}
	rec, ok, err := l.seq.record(uint64(index))
	if err != nil {
		return Entry{}, err
	}
	if !ok {
		return Entry{}, fmt.Errorf("%w: entry %d is sequenced but the store holds no record of it", ErrCorrupt, index)
	}
	if integrated := l.integ.integrated.Load(); uint64(index) < integrated {
		body, err := l.leaf(ctx, uint64(index), integrated)
		if err != nil {
			return Entry{}, err
		}
		if !bytes.Equal(body, rec.Body) {
			return Entry{}, fmt.Errorf("%w: entry %d in the tiles is not the one the envelope store sequenced", ErrCorrupt, index)
		}
	}
	if err := matchEnvelope(rec.Body, rec); err != nil {
		return Entry{}, fmt.Errorf("%w: entry %d: %w", ErrCorrupt, index, err)
	}
	leaf := entry.LeafHash(rec.Body)
	return Entry{
		Index: index, LeafHash: leaf, UUID: entry.UUID(l.treeID, leaf),
		IntegratedTime: rec.IntegratedTime, Body: rec.Body, Envelope: rec.Envelope,
		SignedEntryTimestamp: rec.SET,
	}, nil
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

// indexOf returns the log index of a leaf.
func (l *Log) indexOf(ctx context.Context, leaf []byte) (int64, error) {
	if l.seq == nil {
		return l.indexOfMySQL(ctx, leaf)
	}
	idx, ok, err := l.seq.index(leaf)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: leaf %x is not in the log", ErrNotFound, leaf)
	}
	return int64(idx), nil
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
			for _, d := range subjectDigests(payload) {
				if k, ok := searchKey("sha256", d); ok {
					keys = append(keys, k)
				}
			}
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// dsseSearchKeys is searchKeys for an entry just made: from the hashes and
// payload NewDSSE kept, parsing only the payload's statement.
func dsseSearchKeys(d entry.DSSE) []string {
	return searchKeysOf(d, subjectDigests(d.Payload))
}

// searchKeysOf is dsseSearchKeys given the statement's subject digests.
func searchKeysOf(d entry.DSSE, subjects []string) []string {
	keys := make([]string, 2, 2+len(subjects))
	keys[0], keys[1] = hex.EncodeToString(d.PayloadHash[:]), hex.EncodeToString(d.EnvelopeHash[:])
	for _, s := range subjects {
		if k, ok := searchKey("sha256", s); ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// subjectDigests are the SHA-256 digests of an in-toto statement's
// subjects, as the statement writes them (searchKey checks them).
func subjectDigests(payload []byte) []string {
	var st struct {
		Subject []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if json.Unmarshal(payload, &st) != nil {
		return nil
	}
	keys := make([]string, len(st.Subject))
	for i, s := range st.Subject {
		keys[i] = s.Digest["sha256"]
	}
	return keys
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
	if l.seq == nil {
		if err := l.catchUp(ctx); err != nil {
			return nil, err
		}
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
	nodes, err := client.FetchRangeNodes(ctx, size, l.tilesAt(cp.Size))
	if err != nil {
		return nil, fmt.Errorf("%w: read tiles: %w", ErrUnavailable, err)
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r, err := rf.NewRange(0, size, nodes)
	if err != nil {
		return nil, fmt.Errorf("%w: tiles for size %d: %w", ErrCorrupt, size, err)
	}
	return r.GetRootHash(nil)
}

// tilesAt reads the tiles of the tree of size published (a published
// checkpoint's) for proofs about smaller trees: a tile asked for at a
// width that was never written (the integrator writes a batch at a time,
// so not every size has its partial tiles) is read at its width in the
// published tree and cut down to the width asked for, since a tile of a
// smaller tree is a prefix of the same tile in a larger one (tlog-tiles).
func (l *Log) tilesAt(published uint64) client.TileFetcherFunc {
	return func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		have := layout.PartialTileSize(level, index, published)
		if p == 0 || p == have {
			return l.reader.ReadTile(ctx, level, index, p)
		}
		raw, err := l.reader.ReadTile(ctx, level, index, have)
		if err != nil {
			return nil, err
		}
		if len(raw) < int(p)*sha256.Size {
			return nil, fmt.Errorf("%w: tile %d/%d holds %d bytes, want at least %d", ErrCorrupt, level, index, len(raw), int(p)*sha256.Size)
		}
		return raw[:int(p)*sha256.Size], nil
	}
}
