package bench

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"text/tabwriter"
	"time"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/record/decision"
)

// PolicyCost is what the policy library alone costs per decision: each
// request decided in process on the daemon's own evaluation path
// (engine.Measure, as `gatelog policy bench` reports it), without HTTP,
// signing or the log. It sits next to the daemon's "policy evaluation"
// share of its CPU profile.
type PolicyCost struct {
	Duration string              `json:"duration_per_request"`
	Requests []PolicyRequestCost `json:"requests"`
	// MeanUs and MeanAllocs are the means over the requests (the compare
	// mix sends them round robin).
	MeanUs     float64 `json:"mean_us_per_decision"`
	MeanAllocs float64 `json:"mean_allocs_per_decision"`
	// Note says when the machine was busy with other work during this
	// measurement (a run of this mode alone rewrites only this section).
	Note string `json:"note,omitempty"`
}

// PolicyRequestCost is one request's cost per decision.
type PolicyRequestCost struct {
	Request string  `json:"request"`
	Allow   bool    `json:"allow"`
	Us      float64 `json:"us_per_decision"`
	Allocs  float64 `json:"allocs_per_decision"`
	KB      float64 `json:"kb_per_decision"`
}

// MeasurePolicy decides each request with the policies for d and returns
// the cost per decision. A request without context.time gets a fixed one,
// as the daemon would stamp its clock.
func MeasurePolicy(ctx context.Context, policies fs.FS, reqs []Request, d time.Duration) (*PolicyCost, error) {
	eng, err := engine.New(ctx, policies)
	if err != nil {
		return nil, err
	}
	pc := &PolicyCost{Duration: d.String()}
	for _, r := range reqs {
		req, err := decision.ParseRequest(r.Body)
		if err != nil {
			return nil, fmt.Errorf("request %s: %w", r.Name, err)
		}
		if req.Context.Time == "" {
			req.Context.Time = "2026-03-04T10:00:00Z"
		}
		c, err := eng.Measure(ctx, req, d)
		if err != nil {
			return nil, fmt.Errorf("request %s: %w", r.Name, err)
		}
		pc.Requests = append(pc.Requests, PolicyRequestCost{
			Request: r.Name, Allow: c.Decision.Allow,
			Us: c.NsPerOp / 1000, Allocs: c.AllocsPerOp, KB: c.BytesPerOp / 1024,
		})
		pc.MeanUs += c.NsPerOp / 1000
		pc.MeanAllocs += c.AllocsPerOp
	}
	if n := float64(len(pc.Requests)); n > 0 {
		pc.MeanUs /= n
		pc.MeanAllocs /= n
	}
	return pc, nil
}

// PrintPolicyCost writes the per-request table.
func PrintPolicyCost(w io.Writer, pc *PolicyCost) {
	fmt.Fprintf(w, "\nthe policy library alone, in process (engine.Measure, %s per request): %.0f µs and %.0f allocations per decision on average\n",
		pc.Duration, pc.MeanUs, pc.MeanAllocs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "request\tallow\tµs/decision\tallocs/decision\tkB/decision\t")
	for _, r := range pc.Requests {
		fmt.Fprintf(tw, "%s\t%v\t%.0f\t%.0f\t%.1f\t\n", r.Request, r.Allow, r.Us, r.Allocs, r.KB)
	}
	tw.Flush()
}
