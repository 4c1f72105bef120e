// Package translog is gatelog's transparency log: a Tessera log (POSIX
// driver) whose leaves are canonical Rekor dsse entries (package entry),
// with an envelope store beside it that keeps the full DSSE envelope of
// every leaf.
//
// Append stores the envelope durably, appends the leaf and returns only once
// Tessera has durably assigned its index. Checkpoints are C2SP signed notes
// signed with the log key the way Rekor signs them. Proofs are built from
// the log's own tiles with Tessera's client.
package translog

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/storage/posix"

	"github.com/gatelog/gatelog/internal/durable"
	"github.com/gatelog/gatelog/translog/entry"
)

// Sentinel errors callers branch on.
var (
	// ErrUnavailable means the log cannot append right now; callers must
	// fail closed.
	ErrUnavailable = errors.New("log unavailable")
	// ErrNotFound means no entry matches.
	ErrNotFound = errors.New("entry not found")
	// ErrWrongKey means the log on disk was not made with the key Open was
	// given: its published checkpoint names another tree ID.
	ErrWrongKey = errors.New("the log was created with a different log key")
)

// Config configures a Log. Dir and Key are required.
type Config struct {
	// Dir holds the log: Dir/tlog is the tlog-tiles tree (Tessera POSIX),
	// Dir/envelopes, Dir/keys and Dir/index the envelope store.
	Dir string
	// Key is the log's ECDSA P-256 key; it signs checkpoints and SETs.
	Key crypto.Signer
	// Host is the first part of the origin line "<host>/<tree id>".
	Host string
	// BatchMaxSize and BatchMaxAge bound a sequencing batch (group commit).
	BatchMaxSize uint
	BatchMaxAge  time.Duration
	// CheckpointInterval is how often a new checkpoint is published.
	CheckpointInterval time.Duration
	Logger             *slog.Logger
	// MySQL, when set, puts the log in a MySQL/MariaDB database instead
	// of Dir: mysql://user:pass@tcp(host:port)/db. Tessera's MySQL driver
	// keeps the tree there and sequences appends from several daemons
	// sharing it (with the same Key); the envelope store is tables of the
	// same database. It is a secret: never logged nor put in an error.
	MySQL string
}

// Entry is one logged envelope and where it is.
type Entry struct {
	Index          int64
	LeafHash       []byte
	UUID           string
	IntegratedTime int64
	Body           []byte
	Envelope       []byte
	// SignedEntryTimestamp is the log key's signature over SETPayload.
	SignedEntryTimestamp []byte
}

// Proof is an inclusion proof against a signed checkpoint.
type Proof struct {
	Index      int64
	TreeSize   int64
	RootHash   []byte
	Hashes     [][]byte
	Checkpoint []byte
}

// Log is an open transparency log.
type Log struct {
	cfg      Config
	tlogDir  string
	origin   string
	treeID   int64
	logID    string
	seq      *sequencer
	reader   tessera.LogReader
	shutdown func(context.Context) error
	cancel   context.CancelFunc
	verifier *checkpointVerifier
	// bg lives as long as the log; it bounds reads made for callers that
	// pass no context (Lookup).
	bg        context.Context
	catchUpMu sync.Mutex
	store     envStore
	// Index records are derived data (CatchUp rebuilds them from the
	// tree), so Append writes them off the reply path: pending holds the
	// leaves (string(leaf) → index) whose record is not stored yet, and
	// indexing counts the writes in flight, which Close waits for.
	pending  sync.Map
	indexing sync.WaitGroup
	// marks advances the watermark as those writes finish.
	marks marks
	// tiles serves /checkpoint and /tile/... of a log kept in MySQL.
	tiles http.Handler
	// checkpointTime is when the published checkpoint was written.
	checkpointTime func() (time.Time, error)
}

// storedEntry is what the envelope store keeps for a leaf.
type storedEntry struct {
	Key            string `json:"key"`
	IntegratedTime int64  `json:"integrated_time"`
	Envelope       []byte `json:"envelope"`
	SignerPEM      []byte `json:"signer_pem"`
}

// Open opens (or creates) the log in cfg.Dir.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if (cfg.Dir == "" && cfg.MySQL == "") || cfg.Key == nil {
		return nil, errors.New("translog: Dir (or MySQL) and Key are required")
	}
	if cfg.Host == "" {
		cfg.Host = "gatelog.local"
	}
	if strings.ContainsAny(cfg.Host, " \t\n+") {
		return nil, fmt.Errorf("translog: host %q must not contain spaces or '+'", cfg.Host)
	}
	if cfg.BatchMaxSize == 0 {
		cfg.BatchMaxSize = 256
	}
	if cfg.BatchMaxAge == 0 {
		// Entries reach Tessera a group at a time (sequencer.go), so its
		// batch age only covers the hand-over of a group, not the wait
		// for one to form.
		cfg.BatchMaxAge = time.Millisecond
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = time.Second
	}
	if cfg.MySQL != "" {
		// Tessera's MySQL driver publishes at most once a second.
		cfg.CheckpointInterval = max(cfg.CheckpointInterval, time.Second)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	treeID, err := entry.TreeID(cfg.Key.Public())
	if err != nil {
		return nil, err
	}
	logID, err := entry.LogID(cfg.Key.Public())
	if err != nil {
		return nil, err
	}
	origin := fmt.Sprintf("%s/%d", cfg.Host, treeID)
	signer, err := newNoteSigner(origin, cfg.Key)
	if err != nil {
		return nil, err
	}
	verifier, err := newCheckpointVerifier(origin, cfg.Key.Public())
	if err != nil {
		return nil, err
	}
	if cfg.MySQL != "" {
		return openMySQLLog(ctx, cfg, origin, treeID, logID, signer, verifier)
	}
	tlogDir := filepath.Join(cfg.Dir, "tlog")
	for _, d := range []string{tlogDir, filepath.Join(cfg.Dir, storeDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("%w: create %s: %v", ErrUnavailable, d, err)
		}
	}
	if err := checkOrigin(tlogDir, treeID); err != nil {
		return nil, err
	}
	// Tessera's POSIX driver panics when it cannot open its lock file:
	// refuse a log it could not write with an error instead.
	if err := storageWritable(tlogDir, false); err != nil {
		return nil, err
	}
	if err := checkState(tlogDir); err != nil {
		return nil, err
	}
	st, err := openStore(filepath.Join(cfg.Dir, storeDir, storeFile), false, time.Second)
	if err != nil {
		return nil, err
	}
	// A new log's names (the store file, store/ and tlog/, the log
	// directory itself) are durable before the first entry is
	// acknowledged; otherwise a power cut in the first run loses the log.
	if err := durable.SyncDirs(filepath.Join(cfg.Dir, storeDir), cfg.Dir, filepath.Dir(cfg.Dir)); err != nil {
		st.close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	driver, err := posix.New(ctx, posix.Config{Path: tlogDir})
	if err != nil {
		st.close()
		return nil, fmt.Errorf("open tessera storage: %w", err)
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(cfg.BatchMaxSize, cfg.BatchMaxAge).
		WithCheckpointInterval(cfg.CheckpointInterval)
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	appender, shutdown, reader, err := tessera.NewAppender(bg, driver, opts)
	if err != nil {
		cancel()
		st.close()
		return nil, fmt.Errorf("open tessera appender: %w", err)
	}
	l := &Log{
		cfg: cfg, tlogDir: tlogDir, origin: origin, treeID: treeID, logID: logID,
		seq:    newSequencer(bg, appender.Add, int(cfg.BatchMaxSize)),
		reader: reader, shutdown: shutdown, cancel: cancel, verifier: verifier, bg: bg,
		store: st,
		checkpointTime: func() (time.Time, error) {
			fi, err := os.Stat(filepath.Join(tlogDir, layout.CheckpointPath))
			if err != nil {
				return time.Time{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
			return fi.ModTime(), nil
		},
	}
	// Entries sequenced just before a crash may lack their index records.
	if err := l.CatchUp(ctx); err != nil {
		_ = shutdown(ctx)
		cancel()
		st.close()
		return nil, fmt.Errorf("recover index records: %w", err)
	}
	return l, nil
}

// Origin is the checkpoint origin line, "<host>/<tree id>".
func (l *Log) Origin() string { return l.origin }

// TreeID is the log's tree ID (derived from its key).
func (l *Log) TreeID() int64 { return l.treeID }

// LogID is the hex SHA-256 of the log key's PKIX DER.
func (l *Log) LogID() string { return l.logID }

// PublicKey is the log's public key.
func (l *Log) PublicKey() crypto.PublicKey { return l.cfg.Key.Public() }

// Close waits for acknowledged appends to be integrated and a checkpoint
// that covers them to be published, then stops the log.
func (l *Log) Close(ctx context.Context) error {
	l.seq.close()
	err := l.shutdown(ctx)
	l.cancel()
	l.indexing.Wait()
	if wm := l.marks.current(); wm > 0 {
		// So that the next Open starts reading the tree where this one
		// stopped, not where it last caught up.
		if werr := l.store.putIndexAndWatermark(nil, wm); werr != nil {
			l.cfg.Logger.Warn("watermark not stored; the next start re-reads entries from an older one", "err", werr)
		}
	}
	return errors.Join(err, l.store.close())
}

// Append logs envelope, whose signatures verify with the PEM public key
// signerPEM, under key (e.g. a decision ID). It returns once the entry's
// index is durably assigned. Any failure wraps ErrUnavailable.
func (l *Log) Append(ctx context.Context, key string, envelope, signerPEM []byte) (Entry, error) {
	body, err := entry.DSSEBody(envelope, signerPEM)
	if err != nil {
		return Entry{}, err
	}
	leaf := entry.LeafHash(body)
	integrated := time.Now().Unix()
	// The envelope and its key are on disk before the leaf is sequenced, so
	// every leaf in the log has its envelope.
	rec := storedEntry{Key: key, IntegratedTime: integrated, Envelope: envelope, SignerPEM: signerPEM}
	if err := l.store.putEnvelope(ctx, key, leaf, rec); err != nil {
		return Entry{}, fmt.Errorf("%w: store envelope: %v", ErrUnavailable, err)
	}
	// The same guard as in Open, just before Tessera takes its lock: a log
	// that became read-only (or lost its state directory) fails this
	// append instead of crashing the daemon. A fault that strikes in the
	// few milliseconds between here and the batch still panics in Tessera.
	if l.tlogDir != "" {
		if err := storageWritable(l.tlogDir, true); err != nil {
			return Entry{}, err
		}
	}
	idx, err := l.seq.sequence(ctx, body)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: append: %v", ErrUnavailable, err)
	}
	l.recordIndex(indexRecord{leaf: leaf, index: idx, search: searchKeys(body, envelope)})
	e := Entry{
		Index: int64(idx), LeafHash: leaf, UUID: entry.UUID(l.treeID, leaf),
		IntegratedTime: integrated, Body: body, Envelope: envelope,
	}
	if e.SignedEntryTimestamp, err = l.signSET(e); err != nil {
		return Entry{}, fmt.Errorf("%w: sign entry timestamp: %v", ErrUnavailable, err)
	}
	return e, nil
}

// recordIndex stores a sequenced leaf's index and search records without
// making the caller wait for that commit: the leaf is already durably in
// the tree, and until the record is stored lookups find it in pending. A
// failed write is logged and left to CatchUp, which rebuilds records from
// the tree (on a lookup miss, and at every Open).
func (l *Log) recordIndex(r indexRecord) {
	l.pending.Store(string(r.leaf), r.index)
	l.indexing.Add(1)
	go func() {
		defer l.indexing.Done()
		// The watermark rides along with the record: it covers only
		// records stored before this one was written, so it never claims
		// an entry whose record is not durable. Close writes the last one.
		if err := l.store.putIndexAndWatermark([]indexRecord{r}, l.marks.current()); err != nil {
			l.cfg.Logger.Warn("index record not stored yet; it is rebuilt from the tree", "index", r.index, "err", err)
			return
		}
		l.marks.stored(r.index)
		l.pending.Delete(string(r.leaf))
	}()
}

func (l *Log) signSET(e Entry) ([]byte, error) {
	payload, err := entry.SETPayload(e.Body, e.IntegratedTime, l.logID, e.Index)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(payload)
	return l.cfg.Key.Sign(rand.Reader, digest[:], crypto.SHA256)
}

// Lookup returns the entry appended under key.
func (l *Log) Lookup(key string) (Entry, error) {
	leaf, err := l.store.leafForKey(key)
	if err != nil {
		return Entry{}, err
	}
	if leaf == nil {
		return Entry{}, fmt.Errorf("%w: no entry for key %q", ErrNotFound, key)
	}
	// Bounded: a log in a database that hangs makes the lookup fail
	// rather than wait for it forever.
	ctx, cancel := context.WithTimeout(l.bg, lookupTimeout)
	defer cancel()
	e, err := l.ByLeafHash(ctx, leaf)
	if err != nil && ctx.Err() != nil {
		return Entry{}, fmt.Errorf("%w: lookup of %q: %v", ErrUnavailable, key, err)
	}
	return e, err
}

// lookupTimeout bounds Lookup, which its callers cannot give a deadline.
const lookupTimeout = 20 * time.Second

// ByLeafHash returns the entry with the given leaf hash (see ByIndex).
func (l *Log) ByLeafHash(ctx context.Context, leaf []byte) (Entry, error) {
	if len(leaf) != sha256.Size {
		return Entry{}, fmt.Errorf("%w: leaf hash must be 32 bytes", ErrNotFound)
	}
	idx, err := l.indexOf(ctx, leaf)
	if err != nil {
		return Entry{}, err
	}
	e, err := l.ByIndex(ctx, idx)
	if err != nil {
		return Entry{}, err
	}
	if !bytes.Equal(e.LeafHash, leaf) {
		return Entry{}, fmt.Errorf("%w: index record says leaf %x is entry %d, which holds leaf %x", ErrCorrupt, leaf, idx, e.LeafHash)
	}
	return e, nil
}

// Checkpoint returns the latest published checkpoint, verified with the
// log's own key, and its parsed form.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, *log.Checkpoint, error) {
	raw, err := l.reader.ReadCheckpoint(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: read checkpoint: %v", ErrUnavailable, err)
	}
	cp, err := l.verifier.parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: published checkpoint does not verify: %v", ErrUnavailable, err)
	}
	return raw, cp, nil
}

// InclusionProof proves entry index is in the tree of the latest
// checkpoint. With wait, it waits (until ctx ends) for a checkpoint that
// covers index; without, an uncovered index returns ErrNotFound.
func (l *Log) InclusionProof(ctx context.Context, index int64, wait bool) (Proof, error) {
	for {
		raw, cp, err := l.Checkpoint(ctx)
		if err != nil && !errors.Is(err, os.ErrNotExist) && !wait {
			return Proof{}, err
		}
		if err == nil && uint64(index) < cp.Size {
			pb, err := client.NewProofBuilder(ctx, cp.Size, l.reader.ReadTile)
			if err != nil {
				return Proof{}, fmt.Errorf("%w: proof builder: %v", ErrUnavailable, err)
			}
			hashes, err := pb.InclusionProof(ctx, uint64(index))
			if err != nil {
				return Proof{}, fmt.Errorf("%w: inclusion proof: %v", ErrUnavailable, err)
			}
			return Proof{Index: index, TreeSize: int64(cp.Size), RootHash: cp.Hash, Hashes: hashes, Checkpoint: raw}, nil
		}
		if !wait {
			return Proof{}, fmt.Errorf("%w: entry %d is not yet covered by a checkpoint", ErrNotFound, index)
		}
		select {
		case <-ctx.Done():
			return Proof{}, fmt.Errorf("waiting for a checkpoint covering entry %d: %w", index, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// ConsistencyProof proves the tree of size from is a prefix of the tree of
// size to, both at most the latest checkpoint's size.
func (l *Log) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	_, cp, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	if from > to || to > cp.Size {
		return nil, fmt.Errorf("%w: sizes %d..%d are outside the published tree of size %d", ErrNotFound, from, to, cp.Size)
	}
	pb, err := client.NewProofBuilder(ctx, to, l.reader.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("%w: proof builder: %v", ErrUnavailable, err)
	}
	return pb.ConsistencyProof(ctx, from, to)
}

// TilesHandler serves the log's tlog-tiles resources (/checkpoint and
// /tile/...) read-only, straight from the POSIX layout Tessera writes. Only
// paths of that layout are served (parsed with Tessera's own layout
// package, then rebuilt from the numbers): nothing else of the directory,
// whatever the path spells.
func (l *Log) TilesHandler() http.Handler {
	if l.tiles != nil {
		return l.tiles
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, ok := parseTileRequest(r.URL.Path)
		if !ok {
			http.NotFound(w, r)
			return
		}
		f, err := os.Open(filepath.Join(l.tlogDir, filepath.FromSlash(t.file())))
		if errors.Is(err, os.ErrNotExist) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.Error(w, "log unavailable", http.StatusServiceUnavailable)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		if t.checkpoint {
			w.Header().Set("Cache-Control", "no-cache")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		} else {
			w.Header().Set("Content-Type", "application/octet-stream")
		}
		http.ServeContent(w, r, "", fi.ModTime(), f)
	})
}

// tileRequest is a resource of the tlog-tiles layout: the checkpoint, an
// entry bundle or a tile of the Merkle tree.
type tileRequest struct {
	checkpoint, entries bool
	level, index        uint64
	part                uint8
}

// parseTileRequest reads a request path with Tessera's layout parsers and
// reports false for any path that is not one of the layout's resources.
func parseTileRequest(p string) (tileRequest, bool) {
	switch {
	case p == "/"+layout.CheckpointPath:
		return tileRequest{checkpoint: true}, true
	case strings.HasPrefix(p, "/tile/entries/"):
		idx, part, err := layout.ParseTileIndexPartial(strings.TrimPrefix(p, "/tile/entries/"))
		return tileRequest{entries: true, index: idx, part: part}, err == nil
	case strings.HasPrefix(p, "/tile/"):
		lvl, rest, _ := strings.Cut(strings.TrimPrefix(p, "/tile/"), "/")
		level, idx, part, err := layout.ParseTileLevelIndexPartial(lvl, rest)
		return tileRequest{level: level, index: idx, part: part}, err == nil
	}
	return tileRequest{}, false
}

// file is the resource's path in the layout, rebuilt from its numbers.
func (t tileRequest) file() string {
	switch {
	case t.checkpoint:
		return layout.CheckpointPath
	case t.entries:
		return layout.EntriesPath(t.index, t.part)
	default:
		return layout.TilePath(t.level, t.index, t.part)
	}
}

// openMySQLLog opens the log kept in MySQL/MariaDB (Config.MySQL).
func openMySQLLog(ctx context.Context, cfg Config, origin string, treeID int64, logID string, signer *noteSigner, verifier *checkpointVerifier) (*Log, error) {
	db, err := openMySQL(ctx, cfg.MySQL)
	if err != nil {
		return nil, err
	}
	st := &mysqlStore{db: db}
	driver, err := openMySQLDriver(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(cfg.BatchMaxSize, cfg.BatchMaxAge).
		WithCheckpointInterval(cfg.CheckpointInterval)
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	st.ctx = bg
	// A published checkpoint of another tree means another log key.
	if raw, err := driver.(tileReader).ReadCheckpoint(ctx); err == nil {
		if o, _, _ := strings.Cut(string(raw), "\n"); o != origin && !strings.HasSuffix(o, fmt.Sprintf("/%d", treeID)) {
			cancel()
			db.Close()
			return nil, fmt.Errorf("%w: the mysql log has origin %q, but this key's tree ID is %d", ErrWrongKey, o, treeID)
		}
	}
	appender, shutdown, reader, err := tessera.NewAppender(bg, driver, opts)
	if err != nil {
		cancel()
		db.Close()
		return nil, fmt.Errorf("%w: open tessera appender: %v", ErrUnavailable, err)
	}
	l := &Log{
		cfg: cfg, origin: origin, treeID: treeID, logID: logID,
		seq:    newSequencer(bg, appender.Add, int(cfg.BatchMaxSize)),
		reader: reader, shutdown: shutdown, cancel: cancel, verifier: verifier, bg: bg,
		store: st, tiles: tilesHandler(reader), checkpointTime: st.checkpointTime,
	}
	if err := l.CatchUp(ctx); err != nil {
		_ = shutdown(ctx)
		cancel()
		db.Close()
		return nil, fmt.Errorf("recover index records: %w", err)
	}
	return l, nil
}
