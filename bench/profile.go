package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/google/pprof/profile"
)

// ProfileParts names the parts of a decision and, for each, a pprof
// -focus expression: a sample counts for a part when any frame of its
// stack matches. Matching any frame (rather than taking one function's
// cumulative share) matters here: the CPU profiler keeps only the 64
// innermost frames, and OPA's evaluator recurses deeper than that, so a
// root such as net/http's serve loop or engine.Decide loses most of the
// evaluation's samples (the first profiles in bench/README.md showed
// evaluation at a fifth of its real cost for that reason). Shares overlap
// where one part calls another: the syscall rows are inside the log rows.
var ProfileParts = []struct{ Part, Focus string }{
	{"policy evaluation (OPA topdown)", `open-policy-agent/opa/v1/(topdown|rego)\.`},
	// (record|engine): profiles taken before the record types moved
	// out of engine/ name them there.
	{"request parsing", `gatelog/(record|engine)/decision\.ParseRequest`},
	{"signing the record (receipt.Sign)", `gatelog/(record|engine)/receipt\.\(\*Signer\)\.Sign`},
	{"entry body + hashing (entry.DSSEBody)", `gatelog/translog/entry\.(NewDSSE|DSSEBody)`},
	{"SET signature", `gatelog/translog\.\(\*Log\)\.signSET`},
	{"envelope store commits (bbolt)", `gatelog/translog\.\(\*store\)\.commitLoop`},
	{"tessera sequencing+integration (batch)", `tessera/storage/posix\.\(\*appender\)\.sequenceBatch`},
	{"audit index follower", `gatelog/translog/index\.`},
	{"reply encoding", `gatelog/(engine/server|daemon)\.(writeJSON|writeReceipt)`},
	{"encoding/json (anywhere)", `^encoding/json\.`},
	{"syscall openat (file creates)", `^syscall\.openat$`},
	{"syscall fsync", `^syscall\.(Fsync|Fdatasync)$`},
	{"garbage collection", `^runtime\.gcBgMarkWorker$`},
}

// ProfileGatelog starts a fresh daemon with --pprof, drives it with
// clients for d while taking a CPU profile of exactly that window, saves
// the profile to file and summarises it with `go tool pprof`. extra is
// added to the daemon's arguments.
func ProfileGatelog(ctx context.Context, gatelogBin, dataDir string, requests [][]byte, clients int, d time.Duration, file string, extra ...string) (*ProfileSummary, error) {
	pprofAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	gl, err := StartGatelog(ctx, gatelogBin, dataDir, append([]string{"--pprof", pprofAddr}, extra...)...)
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
	s := &ProfileSummary{Clients: clients, Seconds: d.Seconds(), Requests: r.st.Requests, RPS: r.st.RPS,
		File: file, Shares: map[string]float64{}, CPUUsPerReq: map[string]float64{}}
	total, shares, err := ProfileShares(prof)
	if err != nil {
		return nil, err
	}
	for _, p := range ProfileParts {
		pct := shares[p.Part]
		s.Shares[p.Part] = pct
		if r.st.Requests > 0 {
			s.CPUUsPerReq[p.Part] = total * pct / 100 / float64(r.st.Requests) * 1e6
		}
	}
	s.CPUSeconds = total
	if r.st.Requests > 0 {
		s.CPUUsPerReq["total"] = total / float64(r.st.Requests) * 1e6
	}
	return s, nil
}

// ProfileShares reads a CPU profile (pprof's gzipped protobuf) and returns
// its total CPU seconds and, for each of ProfileParts, the share in percent
// of the samples with a frame matching the part's expression.
func ProfileShares(raw []byte) (totalSeconds float64, shares map[string]float64, err error) {
	p, err := profile.ParseData(raw)
	if err != nil {
		return 0, nil, fmt.Errorf("parse CPU profile: %w", err)
	}
	vi := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			vi = i
		}
	}
	if vi < 0 {
		return 0, nil, errors.New("not a CPU profile: no cpu/nanoseconds sample type")
	}
	res := make([]*regexp.Regexp, len(ProfileParts))
	for i, part := range ProfileParts {
		if res[i], err = regexp.Compile(part.Focus); err != nil {
			return 0, nil, fmt.Errorf("part %q: %w", part.Part, err)
		}
	}
	var total int64
	per := make([]int64, len(ProfileParts))
	for _, smp := range p.Sample {
		v := smp.Value[vi]
		total += v
		for i, re := range res {
			if sampleMatches(smp, re) {
				per[i] += v
			}
		}
	}
	if total == 0 {
		return 0, nil, errors.New("empty CPU profile")
	}
	shares = map[string]float64{}
	for i, part := range ProfileParts {
		shares[part.Part] = 100 * float64(per[i]) / float64(total)
	}
	return float64(total) / 1e9, shares, nil
}

func sampleMatches(s *profile.Sample, re *regexp.Regexp) bool {
	for _, loc := range s.Location {
		for _, ln := range loc.Line {
			if ln.Function != nil && re.MatchString(ln.Function.Name) {
				return true
			}
		}
	}
	return false
}
