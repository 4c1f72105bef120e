package bench

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/tessera/storage/posix"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/verify"
)

// GrowthReport follows one daemon's log as it grows.
type GrowthReport struct {
	// Log names the log measured (the SHA-256 of its public key, in hex),
	// so that a resumed run only continues its own points.
	Log string `json:"log,omitempty"`
	// Clients is how many concurrent clients drive each point's burst of
	// decisions through the daemon; Fill how many in-process appenders
	// grow the log between points.
	Clients int           `json:"clients"`
	Fill    int           `json:"fill_appenders"`
	Points  []GrowthPoint `json:"points"`
}

// GrowthPoint is measured when the log holds Entries entries.
type GrowthPoint struct {
	Entries int64 `json:"entries"`
	// FillPerSec is translog.Log.Append's rate (in process, Fill
	// appenders, real signed decision records) growing the log from the
	// previous point to this one.
	FillPerSec float64 `json:"fill_per_sec"`
	// ReadyMs and FirstDecisionMs time a daemon start on the log at this
	// size: from exec to /readyz answering, and to the first decision.
	ReadyMs         float64 `json:"ready_ms"`
	FirstDecisionMs float64 `json:"first_decision_ms"`
	// IndexCatchUpS is how long after start the audit index took to cover
	// the entries the fill added (it follows the log in the background).
	IndexCatchUpS float64 `json:"index_catch_up_s"`
	// ProofMs is the median time of GET /v1/decisions/{id}: look the entry
	// up, build its inclusion proof from the tiles.
	ProofMs float64 `json:"proof_ms"`
	// VerifyUs is the median time of verify.Receipt (offline) on that receipt.
	VerifyUs float64 `json:"verify_us"`
	// SearchP50Ms and SearchP99Ms time GET /v1/audit/search over a mix of
	// filters (subject, action and outcome, environment and time, policy).
	SearchP50Ms float64 `json:"search_p50_ms"`
	SearchP99Ms float64 `json:"search_p99_ms"`
	// AppendPerSec is the decide rate through the daemon (each decision
	// evaluated, signed and durably appended) during a burst of Burst
	// decisions at this size.
	AppendPerSec float64 `json:"append_per_sec"`
	// RSSMB is the daemon's resident set size right after the burst;
	// AnonMB the part of it not backed by files (RSS also counts the pages
	// of the memory-mapped envelope store the daemon has read, which the
	// kernel reclaims under pressure and the daemon releases every 500 ms
	// of use). RestRSSMB is the RSS once the daemon has indexed the burst
	// and been idle for two seconds.
	RSSMB     float64 `json:"rss_mb"`
	AnonMB    float64 `json:"rss_anon_mb"`
	RestRSSMB float64 `json:"rss_rest_mb"`
	// DiskBytesPerEntry and FilesPerEntry cover the log directory (tiles,
	// bundles, envelope store) and the audit index. PartialBytesPerEntry
	// is the part of it in Tessera's partial tiles and bundles, which its
	// garbage collector removes once full ones replace them (every minute
	// in a running daemon; a freshly filled log still has them all).
	DiskBytesPerEntry    float64 `json:"disk_bytes_per_entry"`
	PartialBytesPerEntry float64 `json:"partial_bytes_per_entry"`
	FilesPerEntry        float64 `json:"files_per_entry"`
}

// GrowthConfig is what Growth runs.
type GrowthConfig struct {
	GatelogBin string
	DataDir    string
	// PolicyDir, if set, holds the daemon's policies; it is given a copy
	// with the working hours pinned (PinPolicies). Empty: the bundled ones.
	PolicyDir string
	Requests  []Request
	// Clients drive each point's burst of Burst decisions through the daemon.
	Clients int
	Burst   int
	// Fill is how many concurrent in-process appenders grow the log.
	Fill int
	// Points are the log sizes to measure at, ascending. A point the log
	// in DataDir has already reached is skipped: a run on a data
	// directory left by an earlier one continues it.
	Points   []int64
	Progress io.Writer
	// OnPoint, if set, is called with the report so far after each point
	// (a long run keeps what it measured if it is stopped later).
	OnPoint func(*GrowthReport) error

	args []string // the daemon's extra arguments
}

// Growth grows a daemon's log and measures it at each point. The log is
// grown between points in process, through translog.Log.Append with the
// daemon's own keys and real decision records (the same records the
// daemon signs, with fresh IDs and times): that is the daemon's append
// path without HTTP and policy evaluation, and it reaches 10^6 entries in
// minutes where HTTP decides would take most of an hour. At each point a
// real `gatelog serve` is started on the grown log and measured: start-up,
// audit index catch-up, proof and search latency, offline verification, a
// burst of decisions through HTTP, RSS and disk.
func Growth(ctx context.Context, cfg GrowthConfig) (*GrowthReport, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	cfg.Fill = cmp.Or(cfg.Fill, 256)
	cfg.Burst = cmp.Or(cfg.Burst, 2000)
	if cfg.PolicyDir != "" {
		pinned, err := PinPolicies(cfg.PolicyDir, cfg.DataDir+"-policies")
		if err != nil {
			return nil, err
		}
		cfg.args = []string{"--policies", pinned}
	}
	// A first start creates the keys; one decision per request gives the
	// records the fill copies.
	gl, err := StartGatelog(ctx, cfg.GatelogBin, cfg.DataDir, cfg.args...)
	if err != nil {
		return nil, err
	}
	var receipts []decision.Receipt
	for _, r := range cfg.Requests {
		raw, err := gl.Decide(ctx, r.Body)
		if err != nil {
			_ = gl.Stop(time.Minute)
			return nil, err
		}
		var rc decision.Receipt
		if err := json.Unmarshal(raw, &rc); err != nil {
			_ = gl.Stop(time.Minute)
			return nil, fmt.Errorf("receipt: %w", err)
		}
		receipts = append(receipts, rc)
	}
	if err := gl.Stop(time.Minute); err != nil {
		return nil, err
	}
	keys, err := loadDaemonKeys(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	v, err := signature.LoadVerifier(keys.signerPub, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	var templates []decision.Record
	for _, rc := range receipts {
		st, err := receipt.Open(rc.Envelope, v)
		if err != nil {
			return nil, err
		}
		templates = append(templates, st.Predicate)
	}
	logID, err := receipt.KeyID(keys.logPub)
	if err != nil {
		return nil, err
	}
	rep := &GrowthReport{Log: logID, Clients: cfg.Clients, Fill: cfg.Fill}
	for _, target := range cfg.Points {
		p, err := growthPoint(ctx, cfg, keys, templates, target, progress)
		if err != nil {
			return nil, err
		}
		if p == nil {
			continue
		}
		rep.Points = append(rep.Points, *p)
		if cfg.OnPoint != nil {
			if err := cfg.OnPoint(rep); err != nil {
				return nil, err
			}
		}
	}
	return rep, nil
}

func growthPoint(ctx context.Context, cfg GrowthConfig, keys *daemonKeys, templates []decision.Record, target int64, progress io.Writer) (*GrowthPoint, error) {
	size, rate, err := fill(ctx, cfg, keys, templates, target, progress)
	if err != nil {
		return nil, err
	}
	if rate == 0 {
		fmt.Fprintf(progress, "%8d entries: skipped, the log already holds %d\n", target, size)
		return nil, nil
	}
	p := &GrowthPoint{Entries: size, FillPerSec: rate}
	begin := time.Now()
	gl, err := StartGatelog(ctx, cfg.GatelogBin, cfg.DataDir, cfg.args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = gl.Stop(time.Minute) }()
	p.ReadyMs = ms(time.Since(begin))
	raw, err := gl.Decide(ctx, cfg.Requests[0].Body)
	if err != nil {
		return nil, err
	}
	p.FirstDecisionMs = ms(time.Since(begin))
	var rc decision.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	ready := time.Now()
	if err := waitIndexed(ctx, gl, rc.LogIndex+1); err != nil {
		return nil, err
	}
	p.IndexCatchUpS = time.Since(ready).Seconds()
	// The first decision is the newest entry: its proof is as long as any
	// at this size.
	if p.ProofMs, rc, err = timeProof(ctx, gl, rc.DecisionID); err != nil {
		return nil, err
	}
	if p.VerifyUs, err = timeVerify(rc, keys.logPub, keys.signerPub); err != nil {
		return nil, err
	}
	if p.SearchP50Ms, p.SearchP99Ms, err = timeSearch(ctx, gl); err != nil {
		return nil, err
	}
	n, secs, err := grow(ctx, gl, bodiesOf(cfg.Requests), cfg.Clients, int64(cfg.Burst), io.Discard)
	if err != nil {
		return nil, err
	}
	p.AppendPerSec = float64(n) / secs
	rss, err := gl.RSS()
	if err != nil {
		return nil, err
	}
	p.RSSMB = float64(rss) / (1 << 20)
	anon, err := gl.RSSAnon()
	if err != nil {
		return nil, err
	}
	p.AnonMB = float64(anon) / (1 << 20)
	if err := waitIndexed(ctx, gl, rc.LogIndex+1+n); err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second)
	if rss, err = gl.RSS(); err != nil {
		return nil, err
	}
	p.RestRSSMB = float64(rss) / (1 << 20)
	if err := gl.Stop(time.Minute); err != nil {
		return nil, err
	}
	var bytes, partial, files int64
	for _, d := range []string{"log", "index.db"} {
		b, pb, f, err := diskUsage(filepath.Join(cfg.DataDir, d))
		if err != nil {
			return nil, err
		}
		bytes, partial, files = bytes+b, partial+pb, files+f
	}
	p.DiskBytesPerEntry = float64(bytes) / float64(p.Entries)
	p.PartialBytesPerEntry = float64(partial) / float64(p.Entries)
	p.FilesPerEntry = float64(files) / float64(p.Entries)
	fmt.Fprintf(progress, "%8d entries: fill %6.0f/s  ready %6.0f ms  first decision %6.0f ms  index +%5.1f s  proof %5.2f ms  verify %4.0f µs  search p99 %6.2f ms  decide %5.0f/s  rss %5.1f MB (anon %5.1f, at rest %5.1f)  %5.0f B/entry (%5.0f partial)\n",
		p.Entries, p.FillPerSec, p.ReadyMs, p.FirstDecisionMs, p.IndexCatchUpS, p.ProofMs, p.VerifyUs, p.SearchP99Ms, p.AppendPerSec, p.RSSMB, p.AnonMB, p.RestRSSMB, p.DiskBytesPerEntry, p.PartialBytesPerEntry)
	return p, nil
}

// daemonKeys are a daemon's log key and decision-signing key, read from
// its data directory.
type daemonKeys struct {
	log, signer       *ecdsa.PrivateKey
	logPub, signerPub crypto.PublicKey
	signerPEM         []byte
	sign              *receipt.Signer
}

func loadDaemonKeys(dataDir string) (*daemonKeys, error) {
	load := func(name string) (*ecdsa.PrivateKey, error) {
		raw, err := os.ReadFile(filepath.Join(dataDir, "keys", name))
		if err != nil {
			return nil, err
		}
		k, err := cryptoutils.UnmarshalPEMToPrivateKey(raw, cryptoutils.SkipPassword)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an ECDSA key", name)
		}
		return ek, nil
	}
	var k daemonKeys
	var err error
	if k.log, err = load("log.key"); err != nil {
		return nil, err
	}
	if k.signer, err = load("decision.key"); err != nil {
		return nil, err
	}
	k.logPub, k.signerPub = k.log.Public(), k.signer.Public()
	if k.signerPEM, err = entry.PublicKeyPEM(k.signerPub); err != nil {
		return nil, err
	}
	sv, err := signature.LoadECDSASignerVerifier(k.signer, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	if k.sign, err = receipt.NewSigner(sv); err != nil {
		return nil, err
	}
	return &k, nil
}

// fill appends signed copies of templates (fresh decision IDs and times)
// to the stopped daemon's log until it holds target entries, with
// cfg.Fill concurrent appenders, and returns the size reached and the
// append rate: 0 if the log held target entries already.
func fill(ctx context.Context, cfg GrowthConfig, keys *daemonKeys, templates []decision.Record, target int64, progress io.Writer) (int64, float64, error) {
	dir := filepath.Join(cfg.DataDir, "log")
	driver, err := posix.New(ctx, posix.Config{Path: translog.TilesDir(dir)})
	if err != nil {
		return 0, 0, err
	}
	l, err := translog.Open(ctx, translog.Config{Driver: driver, Dir: dir, Key: keys.log})
	if err != nil {
		return 0, 0, err
	}
	size, err := l.Size(ctx)
	if err != nil {
		_ = l.Close(ctx)
		return 0, 0, err
	}
	n := target - int64(size)
	if n <= 0 {
		return int64(size), 0, l.Close(ctx)
	}
	var next, done atomic.Int64
	var firstErr error
	var mu sync.Mutex
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				fmt.Fprintf(progress, "  ... filled %d of %d\n", done.Load(), n)
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.Fill {
		wg.Go(func() {
			for i := next.Add(1); i <= n && ctx.Err() == nil; i = next.Add(1) {
				rec := templates[int(i)%len(templates)]
				rec.DecisionID = uuid.Must(uuid.NewV7()).String() // as the daemon names them
				rec.Time = time.Now().UTC().Format(time.RFC3339Nano)
				env, err := keys.sign.Sign(rec)
				if err == nil {
					_, err = l.Append(ctx, rec.DecisionID, env, keys.signerPEM)
				}
				if err != nil {
					mu.Lock()
					firstErr = cmpOr(firstErr, err)
					mu.Unlock()
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	close(stop)
	if err := errors.Join(firstErr, ctx.Err(), l.Close(ctx)); err != nil {
		return 0, 0, fmt.Errorf("filling the log: %w", err)
	}
	return int64(size) + done.Load(), float64(done.Load()) / secs, nil
}

// After returns g with the points of prev, an earlier run on the same
// log, that g has not measured itself (those below its first point)
// put in front: what a run that continued prev's log measured in all.
// A prev of another log adds nothing.
func (g *GrowthReport) After(prev *GrowthReport) *GrowthReport {
	if prev == nil || prev.Log == "" || prev.Log != g.Log {
		return g
	}
	first := int64(math.MaxInt64)
	if len(g.Points) > 0 {
		first = g.Points[0].Entries
	}
	out := *g
	out.Points = nil
	for _, p := range prev.Points {
		if p.Entries < first {
			out.Points = append(out.Points, p)
		}
	}
	out.Points = append(out.Points, g.Points...)
	return &out
}

// waitIndexed waits until the daemon's audit index covers size entries.
func waitIndexed(ctx context.Context, gl *Server, size int64) error {
	for {
		var resp struct {
			Indexed int64 `json:"indexed"`
		}
		raw, err := gl.get(ctx, "/v1/audit/search?limit=1")
		if err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &resp); err != nil {
			return fmt.Errorf("audit search: %w", err)
		}
		if resp.Indexed >= size {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// searchQueries are the audit searches timed at each point: by subject,
// by action and outcome, by environment over the last hour, by policy.
var searchQueries = []string{
	"subject=alice&limit=50",
	"action=deploy&outcome=deny&limit=50",
	"environment=production&since=1h&limit=50",
	"outcome=allow&limit=100",
}

// timeSearch runs the search mix 25 times and returns the p50 and p99.
func timeSearch(ctx context.Context, gl *Server) (p50, p99 float64, err error) {
	var times []float64
	for i := range 25 * len(searchQueries) {
		t := time.Now()
		if _, err := gl.get(ctx, "/v1/audit/search?"+searchQueries[i%len(searchQueries)]); err != nil {
			return 0, 0, err
		}
		times = append(times, ms(time.Since(t)))
	}
	slices.Sort(times)
	return Median(times), times[len(times)*99/100], nil
}

func bodiesOf(reqs []Request) [][]byte {
	b := make([][]byte, len(reqs))
	for i, r := range reqs {
		b[i] = r.Body
	}
	return b
}

// timeProof fetches the receipt with an inclusion proof (waiting for a
// checkpoint that covers it once) and then times the fetch.
func timeProof(ctx context.Context, gl *Server, id string) (float64, decision.Receipt, error) {
	var rc decision.Receipt
	get := func() error {
		raw, err := gl.get(ctx, "/v1/decisions/"+id)
		if err != nil {
			return err
		}
		return json.Unmarshal(raw, &rc)
	}
	if err := get(); err != nil {
		return 0, rc, err
	}
	us, err := medianOf(21, get)
	return us / 1000, rc, err
}

func timeVerify(rc decision.Receipt, logKey, signKey crypto.PublicKey) (float64, error) {
	if _, err := verify.Receipt(rc, logKey, signKey); err != nil {
		return 0, err
	}
	return medianOf(201, func() error {
		_, err := verify.Receipt(rc, logKey, signKey)
		return err
	})
}

// diskUsage is the allocated size and the number of regular files under
// dir (a directory or one file), and the part of the size in Tessera's
// partial tiles and bundles (files in directories named "*.p").
func diskUsage(dir string) (bytes, partial, files int64, err error) {
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a temporary file renamed away under us
			}
			return err
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		size := fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			size = st.Blocks * 512
		}
		bytes += size
		if strings.HasSuffix(filepath.Base(filepath.Dir(p)), ".p") {
			partial += size
		}
		if fi.Mode().IsRegular() {
			files++
		}
		return nil
	})
	return bytes, partial, files, err
}

// medianOf times f n times and returns the median in µs.
func medianOf(n int, f func() error) (float64, error) {
	var times []float64
	for range n {
		t := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		times = append(times, float64(time.Since(t))/float64(time.Microsecond))
	}
	return Median(times), nil
}

// grow sends exactly n decisions from clients concurrent clients, each
// waiting for its answer, and reports how long that took.
func grow(ctx context.Context, gl *Server, bodies [][]byte, clients int, n int64, progress io.Writer) (int64, float64, error) {
	if n <= 0 {
		return 0, 1, nil
	}
	t := gl.Target(bodies)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
	defer hc.CloseIdleConnections()
	var next, done atomic.Int64
	var mu sync.Mutex
	var firstErr error
	failed := func() bool { mu.Lock(); defer mu.Unlock(); return firstErr != nil }
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				fmt.Fprintf(progress, "  ... %d of %d\n", done.Load(), n)
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			var buf bytes.Buffer
			for i := next.Add(1); i <= n && ctx.Err() == nil && !failed(); i = next.Add(1) {
				if err := post(ctx, hc, t, t.Bodies[i%int64(len(t.Bodies))], &buf); err != nil {
					mu.Lock()
					firstErr = cmpOr(firstErr, err)
					mu.Unlock()
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(stop)
	if firstErr != nil {
		return 0, 0, fmt.Errorf("growing the log: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	return done.Load(), time.Since(start).Seconds(), nil
}

// PrintGrowth writes the growth table.
func PrintGrowth(w io.Writer, g *GrowthReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "entries\tfill/s\tready ms\t1st decision ms\tindex catch-up s\tproof ms\tverify µs\tsearch p50 ms\tsearch p99 ms\tdecide/s\tRSS MB\tanon MB\tRSS at rest MB\tdisk B/entry\tof which partial\tfiles/entry\t")
	for _, p := range g.Points {
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.0f\t%.1f\t%.2f\t%.0f\t%.2f\t%.2f\t%.0f\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t%.4f\t\n",
			p.Entries, p.FillPerSec, p.ReadyMs, p.FirstDecisionMs, p.IndexCatchUpS, p.ProofMs, p.VerifyUs,
			p.SearchP50Ms, p.SearchP99Ms, p.AppendPerSec, p.RSSMB, p.AnonMB, p.RestRSSMB, p.DiskBytesPerEntry, p.PartialBytesPerEntry, p.FilesPerEntry)
	}
	tw.Flush()
}
