package bench

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/gatelog/gatelog/engine/decision"
	"github.com/gatelog/gatelog/translog/verify"
)

// GrowthReport follows one daemon's log as it grows.
type GrowthReport struct {
	Clients int           `json:"clients"`
	Points  []GrowthPoint `json:"points"`
	// Restart is the time from exec to the first answered decision after
	// a restart at the largest size.
	Restart *Restart `json:"restart,omitempty"`
}

// GrowthPoint is measured when the log reaches Entries.
type GrowthPoint struct {
	Entries int64 `json:"entries"`
	// AppendPerSec is the decide rate (each one appended) while growing
	// from the previous point to this one.
	AppendPerSec float64 `json:"append_per_sec"`
	// ProofMs is the median time of GET /v1/decisions/{id}: look the entry
	// up, build its inclusion proof from the tiles, sign its SET.
	ProofMs float64 `json:"proof_ms"`
	// VerifyUs is the median time of verify.Receipt (offline) on that receipt.
	VerifyUs float64 `json:"verify_us"`
	// RSSMB is the daemon's resident set size.
	RSSMB float64 `json:"rss_mb"`
	// DiskBytesPerEntry and FilesPerEntry cover the whole log directory
	// (tiles, bundles, envelope store, index records).
	DiskBytesPerEntry float64 `json:"disk_bytes_per_entry"`
	FilesPerEntry     float64 `json:"files_per_entry"`
}

// Restart is a daemon restart on a grown log.
type Restart struct {
	Entries         int64   `json:"entries"`
	ReadyMs         float64 `json:"ready_ms"`
	FirstDecisionMs float64 `json:"first_decision_ms"`
}

// GrowthConfig is what Growth runs.
type GrowthConfig struct {
	GatelogBin string
	DataDir    string
	Requests   []Request
	Clients    int
	// Points are the log sizes to measure at, ascending.
	Points   []int64
	Progress io.Writer
}

// Growth grows a fresh daemon's log through POST /v1/decide and measures
// at each point, then restarts the daemon and times its first decision.
func Growth(ctx context.Context, cfg GrowthConfig) (*GrowthReport, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	gl, err := StartGatelog(ctx, cfg.GatelogBin, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = gl.Stop(time.Minute) }()
	logKey, err := readPublicKey(filepath.Join(cfg.DataDir, "keys", "log.pub"))
	if err != nil {
		return nil, err
	}
	signKey, err := readPublicKey(filepath.Join(cfg.DataDir, "keys", "decision.pub"))
	if err != nil {
		return nil, err
	}
	bodies := make([][]byte, len(cfg.Requests))
	for i, r := range cfg.Requests {
		bodies[i] = r.Body
	}
	rep := &GrowthReport{Clients: cfg.Clients}
	var size int64
	for _, target := range cfg.Points {
		n, secs, err := grow(ctx, gl, bodies, cfg.Clients, target-size, progress)
		if err != nil {
			return nil, err
		}
		size += n
		p := GrowthPoint{AppendPerSec: float64(n) / secs}
		// One more decision to look up: it is the newest entry, so its
		// proof is as long as any at this size.
		raw, err := gl.Decide(ctx, cfg.Requests[0].Body)
		if err != nil {
			return nil, err
		}
		var rc decision.Receipt
		if err := json.Unmarshal(raw, &rc); err != nil {
			return nil, fmt.Errorf("receipt: %w", err)
		}
		// The log itself says how big it is.
		size = rc.LogIndex + 1
		if p.ProofMs, rc, err = timeProof(ctx, gl, rc.DecisionID); err != nil {
			return nil, err
		}
		if p.VerifyUs, err = timeVerify(rc, logKey, signKey); err != nil {
			return nil, err
		}
		rss, err := gl.RSS()
		if err != nil {
			return nil, err
		}
		p.RSSMB = float64(rss) / (1 << 20)
		bytes, files, err := diskUsage(filepath.Join(cfg.DataDir, "log"))
		if err != nil {
			return nil, err
		}
		p.Entries = size
		p.DiskBytesPerEntry = float64(bytes) / float64(size)
		p.FilesPerEntry = float64(files) / float64(size)
		fmt.Fprintf(progress, "%8d entries: %6.0f appends/s  proof %6.2f ms  verify %5.0f µs  rss %5.1f MB  %6.0f B/entry  %.2f files/entry\n",
			p.Entries, p.AppendPerSec, p.ProofMs, p.VerifyUs, p.RSSMB, p.DiskBytesPerEntry, p.FilesPerEntry)
		rep.Points = append(rep.Points, p)
	}
	if err := gl.Stop(time.Minute); err != nil {
		return nil, err
	}
	begin := time.Now()
	gl, err = StartGatelog(ctx, cfg.GatelogBin, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	ready := time.Since(begin)
	if _, err := gl.Decide(ctx, cfg.Requests[0].Body); err != nil {
		return nil, err
	}
	rep.Restart = &Restart{Entries: size, ReadyMs: ms(ready), FirstDecisionMs: ms(time.Since(begin))}
	fmt.Fprintf(progress, "restart at %d entries: ready after %.0f ms, first decision after %.0f ms\n", size, rep.Restart.ReadyMs, rep.Restart.FirstDecisionMs)
	return rep, nil
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

// timeProof fetches the receipt with an inclusion proof (waiting for a
// checkpoint that covers it once) and then times the fetch.
func timeProof(ctx context.Context, gl *Server, id string) (float64, decision.Receipt, error) {
	url := "http://" + gl.Addr + "/v1/decisions/" + id
	get := func() (decision.Receipt, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return decision.Receipt{}, err
		}
		req.Header.Set("Authorization", gl.Header.Get("Authorization"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return decision.Receipt{}, err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return decision.Receipt{}, err
		}
		if resp.StatusCode != http.StatusOK {
			return decision.Receipt{}, fmt.Errorf("GET decision %s: HTTP %d: %s", id, resp.StatusCode, raw)
		}
		var rc decision.Receipt
		return rc, json.Unmarshal(raw, &rc)
	}
	rc, err := get()
	if err != nil {
		return 0, rc, err
	}
	us, err := medianOf(21, func() (err error) {
		rc, err = get()
		return err
	})
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

func readPublicKey(path string) (crypto.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return cryptoutils.UnmarshalPEMToPublicKey(raw)
}

// diskUsage is the allocated size and the number of regular files under dir.
func diskUsage(dir string) (bytes, files int64, err error) {
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
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			bytes += st.Blocks * 512
		} else {
			bytes += fi.Size()
		}
		if fi.Mode().IsRegular() {
			files++
		}
		return nil
	})
	return bytes, files, err
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
