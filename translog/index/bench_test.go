package index_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/index"
)

// BenchmarkCatchUp is the follower's cost per entry: one op indexes 512
// decisions on the example deploy request into an empty SQLite index,
// read back from the log (log) or handed over as they were appended
// (sequenced). It reports ns/entry and allocs/entry.
func BenchmarkCatchUp(b *testing.B) {
	const n = 512
	ctx := context.Background()
	tl := newTestLog(&testing.T{})
	b.Cleanup(func() { tl.log.Close(ctx) })
	raw, err := os.ReadFile("../../examples/requests/deploy-prod.json")
	if err != nil {
		b.Fatal(err)
	}
	req, err := decision.ParseRequest(raw)
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]decision.Record, n)
	entries := make([]translog.Entry, n)
	var wg sync.WaitGroup
	for i := range n {
		recs[i] = decision.Record{
			Kind: decision.KindDecision, DecisionID: "bench-" + time.Duration(i).String(), Request: req,
			Caller:   decision.Caller{ID: "ci-bot", Kind: "api_key"},
			Decision: decision.Decision{Allow: i%2 == 0, Reasons: []string{`allowed by role "release-manager"`}},
			Policy:   decision.Policy{Revision: "r1", SHA256: "aa11", Entrypoint: "gatelog/decision", OPAVersion: "1.22.2"},
			Time:     now.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano),
		}
		if i%8 == 0 {
			recs[i].Decision.Alerts = []decision.Alert{{Severity: "high", Code: "first_privileged_use", Message: "first use"}}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			env, err := tl.signer.Sign(recs[i])
			if err != nil {
				b.Error(err)
				return
			}
			if entries[i], err = tl.log.Append(ctx, recs[i].DecisionID, env, tl.signerPEM); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	if _, err := tl.log.InclusionProof(ctx, n-1, true); err != nil {
		b.Fatal(err)
	}
	for _, sequenced := range []bool{false, true} {
		name := "log"
		if sequenced {
			name = "sequenced"
		}
		b.Run(name, func(b *testing.B) {
			ix, err := index.OpenSQLite(ctx, filepath.Join(b.TempDir(), "index.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer ix.Close()
			src := tl.log.Reader()
			var ms0, ms1 runtime.MemStats
			var mallocs uint64
			var elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				if err := ix.Reset(ctx); err != nil {
					b.Fatal(err)
				}
				runtime.ReadMemStats(&ms0)
				start := time.Now()
				b.StartTimer()
				if sequenced {
					for i := range n {
						ix.Sequenced(entries[i], recs[i])
					}
				}
				if got, err := ix.CatchUp(ctx, src, nil); err != nil || got != n {
					b.Fatalf("CatchUp = %d, %v", got, err)
				}
				b.StopTimer()
				elapsed += time.Since(start)
				runtime.ReadMemStats(&ms1)
				mallocs += ms1.Mallocs - ms0.Mallocs
				b.StartTimer()
			}
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*n), "ns/entry")
			b.ReportMetric(float64(mallocs)/float64(b.N*n), "allocs/entry")
		})
	}
}
