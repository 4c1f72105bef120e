package bench_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatelog/gatelog/bench"
	"github.com/gatelog/gatelog/policies"
)

// TestMeasurePolicy measures the example requests with the bundled library
// and checks the figures and the Markdown row beside the daemon's profile.
func TestMeasurePolicy(t *testing.T) {
	reqs, err := bench.LoadRequests("../examples/requests")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := bench.MeasurePolicy(context.Background(), policies.FS(), reqs, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(pc.Requests) != len(reqs) {
		t.Fatalf("%d results for %d requests", len(pc.Requests), len(reqs))
	}
	allow := map[string]bool{"deploy-prod": true, "deploy-prod-denied": false, "pipeline-trigger": true}
	var sum float64
	for _, r := range pc.Requests {
		if want, ok := allow[r.Request]; ok && r.Allow != want {
			t.Errorf("%s: allow %v, want %v", r.Request, r.Allow, want)
		}
		if r.Us <= 0 || r.Allocs < 100 || r.KB <= 1 {
			t.Errorf("%s: %.1f µs, %.0f allocs, %.1f kB per decision: not a policy evaluation", r.Request, r.Us, r.Allocs, r.KB)
		}
		sum += r.Allocs
	}
	if mean := sum / float64(len(pc.Requests)); mean != pc.MeanAllocs {
		t.Errorf("mean allocs %.1f, want %.1f", pc.MeanAllocs, mean)
	}
	var b strings.Builder
	bench.WriteMarkdown(&b, &bench.Report{
		Policy:  pc,
		Profile: &bench.ProfileSummary{CPUUsPerReq: map[string]float64{"policy evaluation (OPA topdown)": 512}},
	})
	out := b.String()
	for _, want := range []string{"**The policy library alone**", "next to the 512 µs of CPU per decision", "| deploy-prod-denied | false |"} {
		if !strings.Contains(out, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, out)
		}
	}
}
