// Package translog is gatelog's transparency log: a Tessera log whose
// leaves are canonical Rekor dsse entries (package entry), with an
// envelope store beside it that keeps the full DSSE envelope of every leaf.
//
// In the embedded log the envelope store is the durable sequencer: Append
// returns once one group commit holds the envelope, the leaf, its final
// index and the SET signed for it, and Tessera's POSIX driver integrates
// the sequenced leaves into its tiles asynchronously, in index order
// (integrate.go). A log kept in MySQL/MariaDB is sequenced by Tessera's
// MySQL driver, which does the same inside the database. Checkpoints are
// C2SP signed notes signed with the log key the way Rekor signs them.
// Proofs are built from the log's own tiles with Tessera's client.
package translog

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"

	"github.com/gatelog/gatelog/internal/durable"
	"github.com/gatelog/gatelog/internal/envrecord"
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

// Config configures a Log. Driver and Key are required, and exactly one of
// Dir and DB.
type Config struct {
	// Driver is the Tessera storage driver, built by the caller: Tessera's
	// POSIX driver on TilesDir(Dir) for the embedded log, or its MySQL
	// driver on DB.
	Driver tessera.Driver
	// Dir holds an embedded log: the envelope store (Dir/store), which is
	// the log's sequencer, beside the tiles of Driver (TilesDir(Dir)).
	Dir string
	// DB is the MySQL/MariaDB database of a log kept there (see
	// OpenMySQL); the envelope store is tables of it. Several daemons may
	// share it, with the same Key. Close closes it.
	DB *sql.DB
	// Key is the log's ECDSA P-256 key; it signs checkpoints and SETs.
	Key crypto.Signer
	// Host is the first part of the origin line "<host>/<tree id>".
	Host string
	// BatchMaxSize and BatchMaxAge are Tessera's batching: how many
	// entries, and how long the first of them waits, before Tessera
	// writes a batch. In the embedded log BatchMaxSize is also the
	// longest run the integrator hands over at once.
	BatchMaxSize uint
	BatchMaxAge  time.Duration
	// CheckpointInterval is how often a new checkpoint is published.
	CheckpointInterval time.Duration
	Logger             *slog.Logger
}

// TilesDir is where, in an embedded log's Dir, Tessera's POSIX driver
// keeps the tiles: give the driver this path.
func TilesDir(dir string) string { return filepath.Join(dir, "tlog") }

// Entry is one logged envelope and where it is.
type Entry struct {
	Index          int64
	LeafHash       []byte
	UUID           string
	IntegratedTime int64
	Body           []byte
	Envelope       []byte
	// SignedEntryTimestamp is the log key's signature over SETPayload,
	// made once, when the entry was sequenced.
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
	reader   tessera.LogReader
	shutdown func(context.Context) error
	cancel   context.CancelFunc
	verifier *checkpointVerifier
	// noteSigner signs the checkpoints Tessera publishes.
	noteSigner *noteSigner
	// verified is the last checkpoint whose signature was checked, so
	// that each published checkpoint is verified once, not per read.
	verified atomic.Pointer[verifiedCheckpoint]
	// awaiter is the one loop every wait for a checkpoint shares.
	awaiter *tessera.PublicationAwaiter
	// bg lives as long as the log; it bounds reads made for callers that
	// pass no context (Lookup).
	bg    context.Context
	store envStore

	// appendMu is held shared by appends, exclusively by Close.
	appendMu sync.RWMutex
	closed   bool

	// The embedded log: seq is the envelope store (store, above) as
	// sequencer, integ hands its leaves to Tessera.
	seq   *store
	integ *integrator

	// A log in MySQL: Tessera sequences (add), and each leaf's index
	// record follows off the reply path (mysql.go).
	add   tessera.AddFn
	mysql *mysqlStore
	mysqlIndexing

	// tiles serves /checkpoint and /tile/... of a log kept in MySQL.
	tiles http.Handler
	// checkpointTime is when the published checkpoint was written.
	checkpointTime func() (time.Time, error)
}

type verifiedCheckpoint struct {
	raw []byte
	cp  *log.Checkpoint
}

// storedEntry is what the envelope store keeps for a leaf.
type storedEntry = envrecord.Record

// awaitPoll is how often the shared awaiter reads the checkpoint.
const (
	awaitPollFiles = 20 * time.Millisecond
	awaitPollMySQL = 100 * time.Millisecond
)

// Open opens (or creates) the log.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if cfg.Driver == nil || cfg.Key == nil || (cfg.Dir == "") == (cfg.DB == nil) {
		return nil, errors.New("translog: Driver, Key and one of Dir and DB are required")
	}
	if cfg.Host == "" {
		cfg.Host = "gatelog.local"
	}
	if strings.ContainsAny(cfg.Host, " \t\n+") {
		return nil, fmt.Errorf("translog: host %q must not contain spaces or '+'", cfg.Host)
	}
	if cfg.BatchMaxSize == 0 {
		cfg.BatchMaxSize = tessera.DefaultBatchMaxSize
	}
	if cfg.BatchMaxAge == 0 {
		cfg.BatchMaxAge = DefaultBatchMaxAge
		if cfg.DB != nil {
			cfg.BatchMaxAge = mysqlBatchMaxAge
		}
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = time.Second
	}
	if cfg.DB != nil {
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
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(cfg.BatchMaxSize, cfg.BatchMaxAge).
		WithCheckpointInterval(cfg.CheckpointInterval)
	l := &Log{cfg: cfg, origin: origin, treeID: treeID, logID: logID, verifier: verifier, noteSigner: signer}
	if cfg.DB != nil {
		return l.openMySQL(ctx, opts)
	}
	return l.openFiles(ctx, opts)
}

// DefaultBatchMaxAge is Tessera's batch age in the embedded log unless
// Config sets one. No append waits for it (the store's commit is the
// durable point); the integrator hands Tessera a run and waits for it, so
// a run shorter than BatchMaxSize waits out the age, and a longer age
// makes fewer, larger batches of Tessera's file writes. Measured with
// gatelog-bench compare -profile 16 (16 clients): 5 ms spent 158 µs of CPU per
// decision in Tessera's batches, 50 ms 34 µs. Every batch also reads back
// and rewrites the partial entry bundle and tiles it extends, so its
// garbage grows with the bundle, not with the batch: a daemon paced at
// 600 decisions/s allocated ~15 KB per decision in Tessera's batches at
// 50 ms (a tenth of all it allocates per decision), 6–7 KB at 200 ms.
// The price is that an entry reaches the tiles up to 200 ms after its
// acknowledgement instead of 50; proofs wait for the next checkpoint
// (CheckpointInterval, 1 s) after that either way.
const DefaultBatchMaxAge = 200 * time.Millisecond

// mysqlBatchMaxAge is the batch age of a log in MySQL, where every append
// waits for its batch's commit.
const mysqlBatchMaxAge = 5 * time.Millisecond

// openFiles opens the embedded log in cfg.Dir.
func (l *Log) openFiles(ctx context.Context, opts *tessera.AppendOptions) (*Log, error) {
	cfg := l.cfg
	l.tlogDir = TilesDir(cfg.Dir)
	for _, d := range []string{l.tlogDir, filepath.Join(cfg.Dir, storeDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("%w: create %s: %w", ErrUnavailable, d, err)
		}
	}
	published, err := l.publishedSize()
	if err != nil {
		return nil, err
	}
	l.noteSigner.floor.Store(published)
	// Tessera's POSIX driver panics when it cannot open its lock file:
	// refuse a log it could not write with an error instead.
	if err := writable(l.tlogDir); err != nil {
		return nil, err
	}
	st, err := openStore(filepath.Join(cfg.Dir, storeDir, storeFile), false, time.Second)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Log, error) {
		if l.shutdown != nil {
			_ = l.shutdown(ctx)
			l.cancel()
		}
		st.close()
		return nil, err
	}
	// A new log's names (the store file, store/ and tlog/, the log
	// directory itself) are durable before the first entry is
	// acknowledged; otherwise a power cut in the first run loses the log.
	if err := durable.SyncDirs(filepath.Join(cfg.Dir, storeDir), cfg.Dir, filepath.Dir(cfg.Dir)); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	st.signSET = l.signSET
	l.store, l.seq = st, st
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	appender, shutdown, reader, err := tessera.NewAppender(bg, cfg.Driver, opts)
	if err != nil {
		cancel()
		st.close()
		if l.noteSigner.refused.Load() {
			return nil, fmt.Errorf("%w: %s published a tree of %d entries but Tessera found no tree state and started an empty one; refusing to start the log over", ErrCorrupt, l.tlogDir, published)
		}
		return nil, fmt.Errorf("%w: open tessera appender: %w", ErrUnavailable, err)
	}
	l.bg, l.cancel, l.shutdown, l.reader = bg, cancel, shutdown, reader
	l.checkpointTime = fileTime(filepath.Join(l.tlogDir, layout.CheckpointPath))
	size, err := reader.IntegratedSize(ctx)
	if err != nil {
		return fail(fmt.Errorf("%w: read tree size: %w", ErrUnavailable, err))
	}
	if size < published {
		// Tessera found no tree state and started an empty tree under a
		// log that had published a larger one.
		return fail(fmt.Errorf("%w: %s published a tree of %d entries but Tessera's tree state holds %d; refusing to start the log over", ErrCorrupt, l.tlogDir, published, size))
	}
	if err := l.migrateStore(ctx, size); err != nil {
		return fail(err)
	}
	if err := l.checkSequencedTail(ctx, size); err != nil {
		return fail(err)
	}
	l.integ = newIntegrator(appender.Add, reader.IntegratedSize, st, func() error { return writable(l.tlogDir) }, cfg.Logger, int(cfg.BatchMaxSize), size)
	go l.integ.loop(bg)
	l.awaiter = tessera.NewPublicationAwaiter(bg, reader.ReadCheckpoint, awaitPollFiles)
	return l, nil
}

// publishedSize is the size of the embedded log's published checkpoint (0
// when there is none yet), after checking it was made with this key:
// continuing another key's log would sign its tree with a new key.
func (l *Log) publishedSize() (uint64, error) {
	raw, err := os.ReadFile(filepath.Join(l.tlogDir, layout.CheckpointPath))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%w: read checkpoint: %w", ErrUnavailable, err)
	}
	origin, _, _ := bytes.Cut(raw, []byte("\n"))
	if !bytes.HasSuffix(origin, []byte(fmt.Sprintf("/%d", l.treeID))) {
		return 0, fmt.Errorf("%w: the log in %s has origin %q, but this key's tree ID is %d", ErrWrongKey, l.cfg.Dir, origin, l.treeID)
	}
	cp, err := l.verifier.parse(raw)
	if err != nil {
		return 0, fmt.Errorf("%w: published checkpoint does not verify: %w", ErrCorrupt, err)
	}
	return cp.Size, nil
}

// writable checks that the tiles directory can be written (access(2)
// with W_OK: it catches a read-only file system and a missing directory
// even for root).
func writable(dir string) error {
	const wOK = 0x2
	if err := syscall.Access(dir, wOK); err != nil {
		return fmt.Errorf("%w: log storage %s is not writable: %w", ErrUnavailable, dir, err)
	}
	return nil
}

// Exists reports whether dir (an embedded log's Dir) already holds a log
// with a published checkpoint. The daemon asks before creating a log key,
// so a lost key is never silently replaced by a new one.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(TilesDir(dir), layout.CheckpointPath))
	return err == nil
}

// Origin is the checkpoint origin line, "<host>/<tree id>".
func (l *Log) Origin() string { return l.origin }

// TreeID is the log's tree ID (derived from its key).
func (l *Log) TreeID() int64 { return l.treeID }

// LogID is the hex SHA-256 of the log key's PKIX DER.
func (l *Log) LogID() string { return l.logID }

// PublicKey is the log's public key.
func (l *Log) PublicKey() crypto.PublicKey { return l.cfg.Key.Public() }

// Close stops taking appends, waits (within ctx) for every sequenced
// entry to be integrated and a checkpoint that covers them to be
// published, then stops the log. Entries it could not wait for are
// integrated at the next Open.
func (l *Log) Close(ctx context.Context) error {
	l.appendMu.Lock()
	already := l.closed
	l.closed = true
	l.appendMu.Unlock()
	if already {
		return nil
	}
	var errs []error
	if l.integ != nil {
		errs = append(errs, l.integ.drain(ctx))
	}
	errs = append(errs, l.shutdown(ctx))
	l.cancel()
	if l.mysql != nil {
		l.closeIndexing()
	}
	errs = append(errs, l.store.close())
	return errors.Join(errs...)
}

var errClosed = errors.New("log is closed")

// Append logs envelope, whose signatures verify with the PEM public key
// signerPEM, under key (e.g. a decision ID). It returns once the entry is
// durable with its final index, and its SET signed. Any failure wraps
// ErrUnavailable; the entry's inclusion proof follows (InclusionProof).
func (l *Log) Append(ctx context.Context, key string, envelope, signerPEM []byte) (Entry, error) {
	d, err := entry.NewDSSE(envelope, signerPEM)
	if err != nil {
		return Entry{}, err
	}
	return l.appendDSSE(ctx, key, envelope, signerPEM, d, dsseSearchKeys(d))
}

// Envelope is a DSSE envelope to append with the parts it was made of,
// as its signer has them at hand: AppendEnvelope parses none of them back
// out of the envelope's JSON.
type Envelope struct {
	// JSON is the envelope exactly as signed, and as it is kept.
	JSON []byte
	// Payload is the envelope's payload, decoded.
	Payload []byte
	// Signatures are the envelope's signatures, base64 as it holds them,
	// in its order.
	Signatures []string
	// SubjectDigests are the hex SHA-256 digests of the subjects of the
	// in-toto statement Payload holds: searches by hash find the entry by
	// them.
	SubjectDigests []string
}

// AppendEnvelope is Append for an envelope given with its parts. They
// must be the envelope's: the leaf commits to its payload and signatures
// as given, and a verifier recomputes the leaf from the envelope alone.
func (l *Log) AppendEnvelope(ctx context.Context, key string, env Envelope, signerPEM []byte) (Entry, error) {
	d, err := entry.NewDSSEParts(env.JSON, env.Payload, env.Signatures, signerPEM)
	if err != nil {
		return Entry{}, err
	}
	return l.appendDSSE(ctx, key, env.JSON, signerPEM, d, searchKeysOf(d, env.SubjectDigests))
}

// appendDSSE appends the entry d made of envelope, found by search.
func (l *Log) appendDSSE(ctx context.Context, key string, envelope, signerPEM []byte, d entry.DSSE, search []string) (Entry, error) {
	body := d.Body
	leaf := entry.LeafHash(body)
	l.appendMu.RLock()
	defer l.appendMu.RUnlock()
	if l.closed {
		return Entry{}, fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
	}
	if l.seq == nil {
		return l.appendMySQL(ctx, key, envelope, signerPEM, leaf, d.Body, search)
	}
	if err := l.integ.healthy(); err != nil {
		if !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return Entry{}, err
	}
	sw := &sequenceWrite{
		rec:    storedEntry{Key: key, IntegratedTime: time.Now().Unix(), Envelope: envelope, SignerPEM: signerPEM, Body: body},
		leaf:   leaf,
		search: search,
	}
	sw.block = envrecord.Block(sw.rec)
	if err := l.seq.sequence(ctx, sw); err != nil {
		return Entry{}, fmt.Errorf("store envelope: %w", err)
	}
	return Entry{
		Index: int64(sw.index), LeafHash: leaf, UUID: entry.UUID(l.treeID, leaf),
		IntegratedTime: sw.rec.IntegratedTime, Body: body, Envelope: envelope,
		SignedEntryTimestamp: sw.rec.SET,
	}, nil
}

// signSET signs the SET of rec as entry index: the log's promise that it
// holds the entry at that index.
func (l *Log) signSET(rec *storedEntry, index uint64) ([]byte, error) {
	buf := setPayloads.Get().(*[]byte)
	defer setPayloads.Put(buf)
	payload, err := entry.AppendSETPayload((*buf)[:0], rec.Body, rec.IntegratedTime, l.logID, int64(index))
	if err != nil {
		return nil, err
	}
	*buf = payload
	digest := sha256.Sum256(payload)
	return l.cfg.Key.Sign(rand.Reader, digest[:], crypto.SHA256)
}

// setPayloads hold the SET payloads signSET writes, hashes and drops
// (about 1.4 times an entry's body; one per entry appended).
var setPayloads = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

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
		return Entry{}, fmt.Errorf("%w: lookup of %q: %w", ErrUnavailable, key, err)
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
		return nil, nil, fmt.Errorf("%w: read checkpoint: %w", ErrUnavailable, err)
	}
	cp, err := l.parseCheckpoint(raw)
	if err != nil {
		return nil, nil, err
	}
	return raw, cp, nil
}

// parseCheckpoint verifies a checkpoint read from the log's storage, once
// per checkpoint: one that is the last verified is not checked again.
func (l *Log) parseCheckpoint(raw []byte) (*log.Checkpoint, error) {
	if v := l.verified.Load(); v != nil && bytes.Equal(v.raw, raw) {
		return v.cp, nil
	}
	cp, err := l.verifier.parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: published checkpoint does not verify: %w", ErrUnavailable, err)
	}
	l.verified.Store(&verifiedCheckpoint{raw: bytes.Clone(raw), cp: cp})
	return cp, nil
}

// InclusionProof proves entry index is in the tree of the latest
// checkpoint. With wait, it waits (until ctx ends) for a checkpoint that
// covers index, on the log's one PublicationAwaiter; without, an
// uncovered index returns ErrNotFound.
func (l *Log) InclusionProof(ctx context.Context, index int64, wait bool) (Proof, error) {
	if index < 0 {
		return Proof{}, fmt.Errorf("%w: log index %d", ErrNotFound, index)
	}
	raw, cp, err := l.Checkpoint(ctx)
	if err != nil && (!wait || !errors.Is(err, os.ErrNotExist)) {
		return Proof{}, err
	}
	if err != nil || uint64(index) >= cp.Size {
		if !wait {
			return Proof{}, fmt.Errorf("%w: entry %d is not yet covered by a checkpoint", ErrNotFound, index)
		}
		known := func() (tessera.Index, error) { return tessera.Index{Index: uint64(index)}, nil }
		if _, raw, err = l.awaiter.Await(ctx, known); err != nil {
			return Proof{}, fmt.Errorf("waiting for a checkpoint covering entry %d: %w", index, err)
		}
		if cp, err = l.parseCheckpoint(raw); err != nil {
			return Proof{}, err
		}
	}
	pb, err := client.NewProofBuilder(ctx, cp.Size, l.reader.ReadTile)
	if err != nil {
		return Proof{}, fmt.Errorf("%w: proof builder: %w", ErrUnavailable, err)
	}
	hashes, err := pb.InclusionProof(ctx, uint64(index))
	if err != nil {
		return Proof{}, fmt.Errorf("%w: inclusion proof: %w", ErrUnavailable, err)
	}
	return Proof{Index: index, TreeSize: int64(cp.Size), RootHash: cp.Hash, Hashes: hashes, Checkpoint: raw}, nil
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
	pb, err := client.NewProofBuilder(ctx, to, l.tilesAt(cp.Size))
	if err != nil {
		return nil, fmt.Errorf("%w: proof builder: %w", ErrUnavailable, err)
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
