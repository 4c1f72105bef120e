package bench

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/gatelog/gatelog/engine"
)

// StartupReport is how long gatelog takes to get going.
type StartupReport struct {
	// CompileMs is engine.New on the policies: load, compile, prepare.
	CompileMs float64 `json:"policy_compile_ms"`
	// ReloadMs is engine.Reload of the same policies (the hot-reload path:
	// compile the new set, then swap it in).
	ReloadMs float64 `json:"policy_reload_ms"`
	// FreshReadyMs and FreshFirstDecisionMs are from exec of `gatelog serve`
	// on an empty data directory (keys are generated) to /readyz and to the
	// first answered decision.
	FreshReadyMs         float64 `json:"fresh_ready_ms"`
	FreshFirstDecisionMs float64 `json:"fresh_first_decision_ms"`
}

// Startup times policy compilation and reload in-process (median of runs)
// and a fresh daemon's start.
func Startup(ctx context.Context, gatelogBin string, policies fs.FS, req Request, workDir string, runs int) (*StartupReport, error) {
	r := &StartupReport{}
	var err error
	if r.CompileMs, err = medianOf(runs, func() error {
		_, err := engine.New(ctx, policies)
		return err
	}); err != nil {
		return nil, fmt.Errorf("compile policies: %w", err)
	}
	eng, err := engine.New(ctx, policies)
	if err != nil {
		return nil, err
	}
	if r.ReloadMs, err = medianOf(runs, func() error {
		_, _, err := eng.Reload(ctx, policies)
		return err
	}); err != nil {
		return nil, fmt.Errorf("reload policies: %w", err)
	}
	r.CompileMs /= 1000
	r.ReloadMs /= 1000
	var ready, first []float64
	for i := range runs {
		begin := time.Now()
		gl, err := StartGatelog(ctx, gatelogBin, filepath.Join(workDir, fmt.Sprintf("startup-%d", i)))
		if err != nil {
			return nil, err
		}
		ready = append(ready, ms(time.Since(begin)))
		_, err = gl.Decide(ctx, req.Body)
		first = append(first, ms(time.Since(begin)))
		if serr := gl.Stop(time.Minute); err == nil {
			err = serr
		}
		if err != nil {
			return nil, err
		}
	}
	r.FreshReadyMs, r.FreshFirstDecisionMs = Median(ready), Median(first)
	return r, nil
}
