package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ProfileParts names the functions whose cumulative share of the daemon's
// CPU profile says where a decision's time goes. Shares overlap where one
// part calls another (the syscall rows are inside the log rows).
var ProfileParts = []struct{ Part, Func string }{
	{"http serving (all of a request)", "net/http.(*conn).serve"},
	{"policy evaluation (engine.Decide)", "github.com/gatelog/gatelog/engine.(*Engine).Decide"},
	{"request parsing", "github.com/gatelog/gatelog/engine/decision.ParseRequest"},
	{"signing the record (receipt.Sign)", "github.com/gatelog/gatelog/engine/receipt.(*Signer).Sign"},
	{"entry body + hashing (entry.DSSEBody)", "github.com/gatelog/gatelog/translog/entry.DSSEBody"},
	{"SET signature", "github.com/gatelog/gatelog/translog.(*Log).signSET"},
	{"translog.Append (not waiting)", "github.com/gatelog/gatelog/translog.(*Log).Append"},
	{"envelope store writes (writeDurable)", "github.com/gatelog/gatelog/translog.writeDurable"},
	{"tessera sequencing+integration (batch)", "github.com/transparency-dev/tessera/storage/posix.(*appender).sequenceBatch"},
	{"reply encoding", "github.com/gatelog/gatelog/engine/server.writeJSON"},
	{"syscall openat (file creates)", "syscall.openat"},
	{"syscall fsync", "syscall.Fsync"},
	{"syscall rename", "syscall.Renameat"},
	{"garbage collection", "runtime.gcBgMarkWorker"},
}

// ProfileGatelog starts a fresh daemon with --pprof, drives it with
// clients for d while taking a CPU profile of exactly that window, saves
// the profile to file and summarises it with `go tool pprof`.
func ProfileGatelog(ctx context.Context, gatelogBin, dataDir string, requests [][]byte, clients int, d time.Duration, file string) (*ProfileSummary, error) {
	pprofAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	gl, err := StartGatelog(ctx, gatelogBin, dataDir, "--pprof", pprofAddr)
	if err != nil {
		return nil, err
	}
	defer gl.Stop(time.Minute)
	type result struct {
		st  Stats
		err error
	}
	done := make(chan result, 1)
	warmup := time.Second
	go func() {
		st, err := Run(ctx, gl.Target(requests), Options{Clients: clients, Warmup: warmup, Duration: d})
		done <- result{st, err}
	}()
	if !sleepUntil(ctx, time.Now().Add(warmup)) {
		return nil, ctx.Err()
	}
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch CPU profile: %w", err)
	}
	prof, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch CPU profile: HTTP %d: %v", resp.StatusCode, err)
	}
	r := <-done
	if r.err != nil {
		return nil, r.err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(file, prof, 0o644); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=1000000", gatelogBin, file).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %w", err)
	}
	total, cum, err := ParsePprofTop(out)
	if err != nil {
		return nil, err
	}
	s := &ProfileSummary{Clients: clients, Seconds: d.Seconds(), Requests: r.st.Requests, RPS: r.st.RPS,
		CPUSeconds: total, File: file, Shares: map[string]float64{}, CPUUsPerReq: map[string]float64{}}
	for _, p := range ProfileParts {
		pct := cum[p.Func]
		s.Shares[p.Part] = pct
		if r.st.Requests > 0 {
			s.CPUUsPerReq[p.Part] = total * pct / 100 / float64(r.st.Requests) * 1e6
		}
	}
	if r.st.Requests > 0 {
		s.CPUUsPerReq["total"] = total / float64(r.st.Requests) * 1e6
	}
	return s, nil
}

// ParsePprofTop reads `go tool pprof -top -cum` output: the total sampled
// CPU seconds and each function's cumulative share in percent.
func ParsePprofTop(out []byte) (totalSeconds float64, cumPct map[string]float64, err error) {
	cumPct = map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if _, rest, ok := strings.Cut(line, "Total samples = "); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0, nil, fmt.Errorf("pprof: no total in %q", line)
			}
			d, err := time.ParseDuration(f[0])
			if err != nil {
				return 0, nil, fmt.Errorf("pprof: total %q: %v", f[0], err)
			}
			totalSeconds = d.Seconds()
			continue
		}
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasSuffix(f[4], "%") {
			continue
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		if err != nil {
			continue // a header line
		}
		name := f[5]
		if _, ok := cumPct[name]; !ok {
			cumPct[name] = pct
		}
	}
	if err := sc.Err(); err != nil {
		return 0, nil, err
	}
	if totalSeconds == 0 {
		return 0, nil, fmt.Errorf("pprof: no \"Total samples\" line (empty profile?)")
	}
	return totalSeconds, cumPct, nil
}
