package translog

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	rec, err := l.readStored(hex.EncodeToString(leaf))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Entry{}, fmt.Errorf("%w: entry %d has no stored envelope: %v", ErrCorrupt, index, err)
		}
		return Entry{}, err
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

func (l *Log) readStored(leafHex string) (storedEntry, error) {
	var rec storedEntry
	raw, err := os.ReadFile(l.envelopePath(leafHex))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return rec, fmt.Errorf("%w: no envelope for leaf %s", ErrNotFound, leafHex)
		}
		return rec, fmt.Errorf("%w: read envelope: %v", ErrUnavailable, err)
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return rec, fmt.Errorf("%w: envelope store record %s: %v", ErrCorrupt, leafHex, err)
	}
	return rec, nil
}

// indexOf returns the log index of a leaf from the index records, catching
// the records up from the log first when the leaf has none yet (a crash
// can fall between sequencing and writing the record).
func (l *Log) indexOf(ctx context.Context, leafHex string) (int64, error) {
	idx, err := l.readIndex(leafHex)
	if errors.Is(err, ErrNotFound) {
		if cerr := l.CatchUp(ctx); cerr != nil {
			return 0, cerr
		}
		idx, err = l.readIndex(leafHex)
	}
	return idx, err
}

func (l *Log) readIndex(leafHex string) (int64, error) {
	raw, err := os.ReadFile(l.indexPath(leafHex))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("%w: leaf %s is not in the log", ErrNotFound, leafHex)
		}
		return 0, fmt.Errorf("%w: read index record: %v", ErrUnavailable, err)
	}
	idx, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || idx < 0 {
		return 0, fmt.Errorf("%w: index record for leaf %s is %q", ErrCorrupt, leafHex, raw)
	}
	return idx, nil
}

// watermarkPath holds how many leading entries have all their index and
// search records written.
func (l *Log) watermarkPath() string { return filepath.Join(l.cfg.Dir, "index", "watermark") }

func (l *Log) hashDir(hash string) string {
	return filepath.Join(l.cfg.Dir, "hashes", hash[:2], hash)
}

// CatchUp writes the index and search records for every entry the log
// holds that has none yet: the records are derived data, rebuilt from the
// entry bundles and the envelope store. Open calls it, so entries
// sequenced just before a crash are found again.
func (l *Log) CatchUp(ctx context.Context) error {
	l.catchUpMu.Lock()
	defer l.catchUpMu.Unlock()
	from := uint64(0)
	if raw, err := os.ReadFile(l.watermarkPath()); err == nil {
		if n, perr := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64); perr == nil {
			from = n
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: read index watermark: %v", ErrUnavailable, err)
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
		return nil
	}
	dirs := map[string]bool{}
	for i := from; i < size; i++ {
		body, err := l.leaf(ctx, i, size)
		if err != nil {
			return err
		}
		leafHex := hex.EncodeToString(entry.LeafHash(body))
		if _, err := l.readIndex(leafHex); errors.Is(err, ErrNotFound) {
			if err := writeDurable(l.indexPath(leafHex), []byte(strconv.FormatUint(i, 10))); err != nil {
				return fmt.Errorf("%w: store index: %v", ErrUnavailable, err)
			}
		}
		for _, h := range searchKeys(body, l.storedEnvelope(leafHex)) {
			d := l.hashDir(h)
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("%w: search record: %v", ErrUnavailable, err)
			}
			f, err := os.OpenFile(filepath.Join(d, leafHex), os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return fmt.Errorf("%w: search record: %v", ErrUnavailable, err)
			}
			f.Close()
			dirs[d] = true
		}
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	if err := writeDurable(l.watermarkPath(), []byte(strconv.FormatUint(size, 10))); err != nil {
		return fmt.Errorf("%w: store index watermark: %v", ErrUnavailable, err)
	}
	return nil
}

func (l *Log) storedEnvelope(leafHex string) []byte {
	rec, err := l.readStored(leafHex)
	if err != nil {
		return nil
	}
	return rec.Envelope
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
	des, err := os.ReadDir(l.hashDir(h))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: search: %v", ErrUnavailable, err)
	}
	var out []Entry
	for _, de := range des {
		leaf, err := hex.DecodeString(de.Name())
		if err != nil || len(leaf) != 32 {
			continue
		}
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
