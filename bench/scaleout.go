package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ScaleOutReport is gatelog with its log in MariaDB (Tessera's MySQL
// driver): one daemon, then two daemons sharing that log (the same log
// key and database), driven by the same number of clients in total.
type ScaleOutReport struct {
	Clients  int    `json:"clients"`
	Duration string `json:"duration"`
	// One is the lone daemon; Two the two together (requests and req/s
	// summed, latencies the worse of the two); Each each of the two.
	One  Stats    `json:"one_daemon"`
	Two  Stats    `json:"two_daemons"`
	Each [2]Stats `json:"each"`
}

// ScaleOutConfig configures ScaleOut.
type ScaleOutConfig struct {
	GatelogBin string
	// PolicyDir holds the policies both daemons load (pinned hours).
	PolicyDir string
	// MariaDBScript is scripts/mariadb.sh, which installs and starts a
	// throwaway MariaDB and prints its mysql:// URL.
	MariaDBScript string
	Requests      [][]byte
	Clients       int
	Warmup        time.Duration
	Duration      time.Duration
	WorkDir       string
	Progress      io.Writer
}

// ScaleOut starts a MariaDB, measures one daemon on a log kept in it,
// then two daemons sharing that log, and stops everything.
func ScaleOut(ctx context.Context, cfg ScaleOutConfig) (*ScaleOutReport, error) {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	dbDir := filepath.Join(cfg.WorkDir, "mariadb")
	start := exec.CommandContext(ctx, cfg.MariaDBScript, "start")
	start.Env = append(os.Environ(), "GATELOG_MARIADB_DIR="+dbDir)
	var stderr bytes.Buffer
	start.Stderr = &stderr
	out, err := start.Output()
	if err != nil {
		return nil, fmt.Errorf("start mariadb: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	defer exec.Command(cfg.MariaDBScript, "stop", dbDir).Run() //nolint:errcheck // scratch server
	url := strings.TrimSpace(string(out))
	opts := Options{Warmup: cfg.Warmup, Duration: cfg.Duration}
	r := &ScaleOutReport{Clients: cfg.Clients, Duration: cfg.Duration.String()}

	dirA, dirB := filepath.Join(cfg.WorkDir, "daemon-a"), filepath.Join(cfg.WorkDir, "daemon-b")
	args := []string{"--policies", cfg.PolicyDir, "--log", url}
	a, err := StartGatelog(ctx, cfg.GatelogBin, dirA, args...)
	if err != nil {
		return nil, fmt.Errorf("first daemon: %w", err)
	}
	defer a.Stop(30 * time.Second) //nolint:errcheck // stopped below; this is for early returns
	fmt.Fprintf(cfg.Progress, "scale-out: one daemon on the MariaDB log, %d clients\n", cfg.Clients)
	opts.Clients = cfg.Clients
	if r.One, err = Run(ctx, a.Target(cfg.Requests), opts); err != nil {
		return nil, err
	}
	// The second daemon signs the same log: it needs the first one's log
	// key (keys/log.key) before it starts.
	key, err := os.ReadFile(filepath.Join(dirA, "keys", "log.key"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dirB, "keys"), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dirB, "keys", "log.key"), key, 0o600); err != nil {
		return nil, err
	}
	b, err := StartGatelog(ctx, cfg.GatelogBin, dirB, args...)
	if err != nil {
		return nil, fmt.Errorf("second daemon: %w", err)
	}
	defer b.Stop(30 * time.Second) //nolint:errcheck // as above
	fmt.Fprintf(cfg.Progress, "scale-out: two daemons on the same log, %d clients each\n", cfg.Clients/2)
	opts.Clients = max(1, cfg.Clients/2)
	var (
		wg   sync.WaitGroup
		errs [2]error
	)
	for i, s := range []*Server{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Each[i], errs[i] = Run(ctx, s.Target(cfg.Requests), opts)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	r.Two = Stats{Clients: cfg.Clients, Seconds: r.Each[0].Seconds}
	for _, s := range r.Each {
		r.Two.Requests += s.Requests
		r.Two.Errors += s.Errors
		r.Two.RPS += s.RPS
		r.Two.P50Ms = max(r.Two.P50Ms, s.P50Ms)
		r.Two.P99Ms = max(r.Two.P99Ms, s.P99Ms)
		r.Two.P999Ms = max(r.Two.P999Ms, s.P999Ms)
		r.Two.MaxMs = max(r.Two.MaxMs, s.MaxMs)
		if r.Two.FirstError == "" {
			r.Two.FirstError = s.FirstError
		}
	}
	return r, nil
}

// PrintScaleOut writes the scale-out comparison.
func PrintScaleOut(w io.Writer, r *ScaleOutReport) {
	fmt.Fprintf(w, "\nlog in MariaDB (Tessera's MySQL driver), %d clients in total, %s\n", r.Clients, r.Duration)
	fmt.Fprintf(w, "one daemon:  %.0f req/s  p50 %.2f ms  p99 %.2f ms  errors %d\n", r.One.RPS, r.One.P50Ms, r.One.P99Ms, r.One.Errors)
	fmt.Fprintf(w, "two daemons: %.0f req/s  p50 %.2f ms  p99 %.2f ms  errors %d  (%.0f + %.0f req/s)\n",
		r.Two.RPS, r.Two.P50Ms, r.Two.P99Ms, r.Two.Errors, r.Each[0].RPS, r.Each[1].RPS)
}
