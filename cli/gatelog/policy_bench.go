//go:build !auditor

package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/record/decision"
)

// benchedRequest is one request file's line of `gatelog policy bench`.
type benchedRequest struct {
	File  string            `json:"file"`
	Cost  engine.Cost       `json:"cost"`
	Rules []engine.RuleTime `json:"top_rules"`
}

func policyBenchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure what each request costs the policy on the daemon's own evaluation path: ns/op, allocs/op, B/op, and the rules that take the time",
		Description: "Each request file is decided the way the daemon decides it (the input built from the parsed\n" +
			"request, the prepared query, the result read back) for --time, then --profile-runs more times\n" +
			"under OPA's profiler to rank the rules by the time of their own expressions. ns/op depends\n" +
			"on what else the machine does; allocs/op does not, and is the figure to compare.",
		ArgsUsage: "REQUEST.json...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "policies", Usage: "policy directory (default: the bundled library)"},
			&cli.StringFlag{Name: "bundle", Usage: "policy bundle (tar.gz)"},
			bundleKeyFlag,
			&cli.StringSliceFlag{Name: "policy-data", Usage: "data `FILE` (JSON/YAML) that replaces the policy's own data files, e.g. an organisation's configuration; repeatable"},
			&cli.DurationFlag{Name: "time", Value: time.Second, Usage: "how long to measure each request"},
			&cli.IntFlag{Name: "profile-runs", Value: 20, Usage: "evaluations of each request under the profiler (0: no profile)"},
			&cli.IntFlag{Name: "top", Value: 10, Usage: "rules to list per request"},
			&cli.BoolFlag{Name: "json", Usage: "print the figures as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.Exit("policy bench: give at least one request file", 1)
			}
			if c.Duration("time") <= 0 {
				return cli.Exit("policy bench: --time must be positive", 1)
			}
			if c.Int("profile-runs") < 0 || c.Int("top") < 0 {
				return cli.Exit("policy bench: --profile-runs and --top must not be negative", 1)
			}
			src, err := policyFromFlags(c)
			if err != nil {
				return cli.Exit("policy bench: "+err.Error(), 1)
			}
			reqs := make([]decision.Request, c.NArg())
			for i, f := range c.Args().Slice() {
				raw, err := readInput(f)
				if err != nil {
					return cli.Exit("policy bench: "+f+": "+err.Error(), 1)
				}
				if reqs[i], err = decision.ParseRequest(raw); err != nil {
					return cli.Exit("policy bench: "+f+": "+err.Error(), 1)
				}
				if reqs[i].Context.Time == "" {
					// The daemon always sets the decision time; do the same.
					reqs[i].Context.Time = time.Now().UTC().Format(time.RFC3339)
					fmt.Fprintf(c.App.ErrWriter, "note: %s has no context.time; using now (%s)\n", f, reqs[i].Context.Time)
				}
			}
			eng, err := engine.NewFromSource(c.Context, src)
			if err != nil {
				return cli.Exit("policy bench: "+err.Error(), 1)
			}
			out := make([]benchedRequest, len(reqs))
			for i, req := range reqs {
				f := c.Args().Get(i)
				fmt.Fprintf(c.App.ErrWriter, "measuring %s …\n", f)
				cost, err := eng.Measure(c.Context, req, c.Duration("time"))
				if err != nil {
					return cli.Exit("policy bench: "+f+": "+err.Error(), 1)
				}
				out[i] = benchedRequest{File: f, Cost: cost}
				if n := c.Int("profile-runs"); n > 0 {
					rules, err := eng.Profile(c.Context, req, n)
					if err != nil {
						return cli.Exit("policy bench: "+f+": "+err.Error(), 1)
					}
					out[i].Rules = rules[:min(len(rules), c.Int("top"))]
				}
			}
			w := c.App.Writer
			if c.Bool("json") {
				b, err := json.MarshalIndent(struct {
					Policy   decision.Policy  `json:"policy"`
					Origin   string           `json:"origin"`
					Requests []benchedRequest `json:"requests"`
				}{eng.Policy(), src.Origin, out}, "", "  ")
				if err != nil {
					return cli.Exit("policy bench: "+err.Error(), 1)
				}
				fmt.Fprintln(w, string(b))
				return nil
			}
			fmt.Fprintf(w, "policy: %s (%s)\n\n", describePolicy(eng.Policy()), src.Origin)
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "request\tdecision\tns/op\tallocs/op\tB/op\truns\t")
			for _, r := range out {
				verdict := "deny"
				if r.Cost.Decision.Allow {
					verdict = "allow"
				}
				fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%d\t\n", printable(filepath.Base(r.File)), verdict,
					r.Cost.NsPerOp, r.Cost.AllocsPerOp, r.Cost.BytesPerOp, r.Cost.N)
			}
			if err := tw.Flush(); err != nil {
				return cli.Exit("policy bench: "+err.Error(), 1)
			}
			for _, r := range out {
				if len(r.Rules) == 0 {
					continue
				}
				fmt.Fprintf(w, "\ntop rules by time, %s (OPA profiler, %d runs; profiled time, not real time):\n", printable(filepath.Base(r.File)), c.Int("profile-runs"))
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "  ns/op\texpr evals/op\trule\tlocation")
				for _, rt := range r.Rules {
					fmt.Fprintf(tw, "  %.0f\t%.1f\t%s\t%s:%d\n", rt.NsPerOp, rt.EvalsPerOp, printable(rt.Rule), printable(rt.File), rt.Row)
				}
				if err := tw.Flush(); err != nil {
					return cli.Exit("policy bench: "+err.Error(), 1)
				}
			}
			return nil
		},
	}
}
