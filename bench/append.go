package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
)

// AppendReport compares raw Tessera appends with translog.Log.Append at
// the same concurrency, both awaiting the durable index.
type AppendReport struct {
	Clients  int    `json:"clients"`
	Duration string `json:"duration"`
	// BatchMaxSize and BatchMaxAge are the batching both sides ran with.
	BatchMaxSize int         `json:"batch_max_size"`
	BatchMaxAge  string      `json:"batch_max_age"`
	Tessera      AppendStats `json:"tessera_raw"`
	// TesseraDefaults is raw Tessera at its own default batching
	// (tessera.DefaultBatchMaxSize entries / DefaultBatchMaxAge).
	TesseraDefaults AppendStats `json:"tessera_defaults,omitzero"`
	Translog        AppendStats `json:"translog"`
	// Overhead is Tessera's throughput over translog's.
	Overhead float64 `json:"overhead_tessera_over_translog"`
}

// AppendStats is one side of an append benchmark.
type AppendStats struct {
	Appends int     `json:"appends"`
	PerSec  float64 `json:"per_sec"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
}

// AppendFunc appends the i-th entry and returns once its index is durable.
type AppendFunc func(ctx context.Context, i int) error

// Batching is the group-commit setting both sides of the append benchmark
// use: translog's defaults, so the comparison is like for like.
const (
	BatchMaxSize = tessera.DefaultBatchMaxSize
	BatchMaxAge  = translog.DefaultBatchMaxAge
)

// Envelope is a DSSE envelope shaped like gatelog's decision records whose
// payload carries i, so every entry is distinct. Appending does not verify
// signatures, so one real signature serves all of them; what the log does
// with the bytes is the same.
func Envelope(i int, sig string) []byte {
	payload := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://gatelog.dev/decision/v1","predicate":{"decision_id":"bench-%d","request":{"action":"deploy","resource":{"environment":"production","repository":"acme/shop"}},"decision":{"allow":true,"reasons":["release manager with MFA"]}}}`, i)
	env, _ := json.Marshal(map[string]any{
		"payloadType": "application/vnd.in-toto+json",
		"payload":     base64.StdEncoding.EncodeToString([]byte(payload)),
		"signatures":  []map[string]string{{"keyid": "", "sig": sig}},
	})
	return env
}

// appendKey is the ECDSA key and PEM the append benchmarks attribute
// entries to, and a signature to put in the envelopes.
type appendKey struct {
	key *ecdsa.PrivateKey
	pem []byte
	sig string
}

func newAppendKey() (*appendKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pem, err := entry.PublicKeyPEM(k.Public())
	if err != nil {
		return nil, err
	}
	sig, err := k.Sign(rand.Reader, make([]byte, 32), crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return &appendKey{key: k, pem: pem, sig: base64.StdEncoding.EncodeToString(sig)}, nil
}

// OpenTessera opens a bare Tessera POSIX log in dir with the same
// batching and checkpoint interval as translog, and returns an AppendFunc
// that adds the i-th entry's Rekor body and awaits its index.
func OpenTessera(ctx context.Context, dir string) (AppendFunc, func(context.Context) error, error) {
	return openTessera(ctx, dir, BatchMaxSize, BatchMaxAge)
}

// OpenTesseraDefaults is OpenTessera at Tessera's own default batching.
func OpenTesseraDefaults(ctx context.Context, dir string) (AppendFunc, func(context.Context) error, error) {
	return openTessera(ctx, dir, tessera.DefaultBatchMaxSize, tessera.DefaultBatchMaxAge)
}

func openTessera(ctx context.Context, dir string, batchSize uint, batchAge time.Duration) (AppendFunc, func(context.Context) error, error) {
	ak, err := newAppendKey()
	if err != nil {
		return nil, nil, err
	}
	skey, _, err := note.GenerateKey(rand.Reader, "bench.example/tessera")
	if err != nil {
		return nil, nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, nil, err
	}
	// Tessera's background work lives as long as this context; closing
	// the log ends it, as translog.Log.Close does.
	bg, cancel := context.WithCancel(ctx)
	driver, err := posix.New(bg, posix.Config{Path: dir})
	if err != nil {
		cancel()
		return nil, nil, err
	}
	opts := tessera.NewAppendOptions().WithCheckpointSigner(signer).
		WithBatching(batchSize, batchAge).WithCheckpointInterval(time.Second)
	app, shutdown, _, err := tessera.NewAppender(bg, driver, opts)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	closeFn := func(ctx context.Context) error {
		defer cancel()
		return shutdown(ctx)
	}
	add := func(ctx context.Context, i int) error {
		body, err := entry.DSSEBody(Envelope(i, ak.sig), ak.pem)
		if err != nil {
			return err
		}
		_, err = app.Add(ctx, tessera.NewEntry(body))()
		return err
	}
	return add, closeFn, nil
}

// OpenTranslog opens gatelog's log in dir and returns an AppendFunc that
// runs the full translog.Log.Append (envelope store, leaf, SET).
func OpenTranslog(ctx context.Context, dir string) (AppendFunc, func(context.Context) error, error) {
	ak, err := newAppendKey()
	if err != nil {
		return nil, nil, err
	}
	driver, err := posix.New(ctx, posix.Config{Path: translog.TilesDir(dir)})
	if err != nil {
		return nil, nil, err
	}
	l, err := translog.Open(ctx, translog.Config{Driver: driver, Dir: dir, Key: ak.key, BatchMaxSize: BatchMaxSize, BatchMaxAge: BatchMaxAge, CheckpointInterval: time.Second})
	if err != nil {
		return nil, nil, err
	}
	add := func(ctx context.Context, i int) error {
		_, err := l.Append(ctx, fmt.Sprintf("bench-%d", i), Envelope(i, ak.sig), ak.pem)
		return err
	}
	return add, l.Close, nil
}

// RunAppends calls add from clients goroutines for d (closed loop) and
// reports throughput and latency.
func RunAppends(ctx context.Context, add AppendFunc, clients int, d time.Duration) (AppendStats, error) {
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t := time.Now()
				if err := add(ctx, int(next.Add(1))); err != nil {
					mu.Lock()
					firstErr = cmpOr(firstErr, err)
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return AppendStats{}, firstErr
	}
	slices.Sort(lat)
	return AppendStats{
		Appends: len(lat), PerSec: float64(len(lat)) / elapsed.Seconds(),
		P50Ms: ms(percentile(lat, 0.5)), P99Ms: ms(percentile(lat, 0.99)),
	}, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// CompareAppends runs raw Tessera and translog, each on a fresh log under
// dir, with the same concurrency and duration.
func CompareAppends(ctx context.Context, dir string, clients int, d time.Duration) (*AppendReport, error) {
	r := &AppendReport{Clients: clients, Duration: d.String(), BatchMaxSize: BatchMaxSize, BatchMaxAge: BatchMaxAge.String()}
	for _, side := range []struct {
		name string
		open func(context.Context, string) (AppendFunc, func(context.Context) error, error)
		out  *AppendStats
	}{{"tessera", OpenTessera, &r.Tessera}, {"tessera-defaults", OpenTesseraDefaults, &r.TesseraDefaults}, {"translog", OpenTranslog, &r.Translog}} {
		add, closeFn, err := side.open(ctx, filepath.Join(dir, side.name))
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", side.name, err)
		}
		st, err := RunAppends(ctx, add, clients, d)
		cerr := closeFn(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s appends: %w", side.name, err)
		}
		if cerr != nil {
			return nil, fmt.Errorf("close %s: %w", side.name, cerr)
		}
		*side.out = st
	}
	if r.Translog.PerSec > 0 {
		r.Overhead = r.Tessera.PerSec / r.Translog.PerSec
	}
	return r, nil
}
