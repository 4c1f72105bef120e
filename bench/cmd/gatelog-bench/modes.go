package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatelog/gatelog/bench"
	"github.com/gatelog/gatelog/policies"
)

func appendCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("append", flag.ExitOnError)
	var c common
	c.register(fs)
	clients := fs.String("clients", "1,16,64", "concurrent appenders")
	duration := fs.Duration("duration", 5*time.Second, "time per side and level")
	_ = fs.Parse(args)
	levels, err := parseLevels(*clients)
	if err != nil {
		return err
	}
	work, m, cleanup, err := c.begin()
	if err != nil {
		return err
	}
	defer cleanup()
	fmt.Printf("\nappend path alone, %s per side: raw Tessera POSIX (await index; at translog's batching, then at Tessera's defaults) vs translog.Log.Append (one commit: envelope + leaf + index + SET)\n", *duration)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\ttessera/s\tp50 ms\tp99 ms\tdefaults/s\tp50 ms\ttranslog/s\tp50 ms\tp99 ms\toverhead\t")
	var all []bench.AppendReport
	for _, n := range levels {
		r, err := bench.CompareAppends(ctx, filepath.Join(work, "append-"+strconv.Itoa(n)), n, *duration)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%d appenders: tessera %.0f/s, translog %.0f/s\n", n, r.Tessera.PerSec, r.Translog.PerSec)
		fmt.Fprintf(tw, "%d\t%.0f\t%.2f\t%.2f\t%.0f\t%.2f\t%.0f\t%.2f\t%.2f\t%.2fx\t\n", n,
			r.Tessera.PerSec, r.Tessera.P50Ms, r.Tessera.P99Ms, r.TesseraDefaults.PerSec, r.TesseraDefaults.P50Ms,
			r.Translog.PerSec, r.Translog.P50Ms, r.Translog.P99Ms, r.Overhead)
		all = append(all, *r)
	}
	tw.Flush()
	return c.save(m, func(r *bench.Report) { r.Append = all })
}

func growth(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("growth", flag.ExitOnError)
	var c common
	c.register(fs)
	gatelogBin := fs.String("gatelog", "bin/gatelog", "gatelog binary")
	reqDir := fs.String("requests", "examples/requests", "directory of request JSON files (the mix)")
	policyDir := fs.String("policies", "policies", "policy directory; the daemon gets a copy with the working hours pinned")
	clients := fs.Int("clients", 64, "concurrent clients in each point's burst of decisions")
	burst := fs.Int("burst", 2000, "decisions sent through the daemon at each point")
	fillers := fs.Int("fill", 256, "concurrent in-process appenders growing the log between points")
	points := fs.String("points", "1000,10000,100000,1000000", "log sizes to measure at")
	resume := fs.Bool("resume", false, "continue the log a stopped run left in -work (points it reached are skipped) and keep the points it saved")
	_ = fs.Parse(args)
	if *resume && c.workDir == "" {
		return fmt.Errorf("-resume needs -work: the directory the stopped run grew its log in")
	}
	var pts []int64
	for f := range strings.SplitSeq(*points, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || n < 1 {
			return fmt.Errorf("points: %q is not a positive number", f)
		}
		pts = append(pts, n)
	}
	reqs, work, m, cleanup, err := c.beginWith(*reqDir)
	if err != nil {
		return err
	}
	defer cleanup()
	dataDir := filepath.Join(work, "growth")
	if _, err := os.Stat(dataDir); err == nil && !*resume {
		return fmt.Errorf("%s holds a log already: pass -resume to continue it, or name an empty -work", dataDir)
	}
	var prev *bench.GrowthReport
	if *resume && c.out != "" {
		r, err := bench.LoadReport(c.out)
		if err != nil {
			return err
		}
		prev = r.Growth
	}
	g, err := bench.Growth(ctx, bench.GrowthConfig{
		GatelogBin: *gatelogBin, DataDir: dataDir, PolicyDir: *policyDir, Requests: reqs,
		Clients: *clients, Burst: *burst, Fill: *fillers, Points: pts, Progress: os.Stderr,
		OnPoint: func(g *bench.GrowthReport) error {
			return c.save(m, func(r *bench.Report) { r.Growth = g.After(prev) })
		},
	})
	if err != nil {
		return err
	}
	fmt.Printf("\nlog growth: filled by %d in-process appenders, then a daemon started and measured at each size (%d clients)\n", g.Fill, g.Clients)
	g = g.After(prev)
	bench.PrintGrowth(os.Stdout, g)
	return c.save(m, func(r *bench.Report) { r.Growth = g })
}

func startup(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("startup", flag.ExitOnError)
	var c common
	c.register(fs)
	gatelogBin := fs.String("gatelog", "bin/gatelog", "gatelog binary")
	reqDir := fs.String("requests", "examples/requests", "directory of request JSON files (the first is used)")
	runs := fs.Int("runs", 5, "runs (medians are reported)")
	_ = fs.Parse(args)
	reqs, work, m, cleanup, err := c.beginWith(*reqDir)
	if err != nil {
		return err
	}
	defer cleanup()
	s, err := bench.Startup(ctx, *gatelogBin, policies.FS(), reqs[0], work, *runs)
	if err != nil {
		return err
	}
	fmt.Printf("\nstart-up, medians of %d: compile bundled policies %.0f ms, hot reload %.0f ms; fresh daemon ready %.0f ms, first decision %.0f ms\n",
		*runs, s.CompileMs, s.ReloadMs, s.FreshReadyMs, s.FreshFirstDecisionMs)
	return c.save(m, func(r *bench.Report) { r.Startup = s })
}

// policyCost measures the bundled policy library alone, per request, as
// `gatelog policy bench` does: the row beside the daemon's profile.
func policyCost(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("policy", flag.ExitOnError)
	var c common
	c.register(fs)
	reqDir := fs.String("requests", "examples/requests", "directory of request JSON files")
	duration := fs.Duration("duration", 2*time.Second, "measured time per request")
	_ = fs.Parse(args)
	reqs, _, m, cleanup, err := c.beginWith(*reqDir)
	if err != nil {
		return err
	}
	defer cleanup()
	pc, err := bench.MeasurePolicy(ctx, policies.FS(), reqs, *duration)
	if err != nil {
		return err
	}
	pc.Note = m.Note
	bench.PrintPolicyCost(os.Stdout, pc)
	return c.save(m, func(r *bench.Report) { r.Policy = pc })
}
