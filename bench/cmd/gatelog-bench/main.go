// Command gatelog-bench runs gatelog's benchmarks and writes results.json:
//
//	gatelog-bench compare   gatelog serve vs opa run --server, 1/4/16/64 clients
//	gatelog-bench append    Tessera raw appends vs translog.Log.Append
//	gatelog-bench growth    the log grown to 10^5 or more entries
//	gatelog-bench startup   time to first decision and policy reload
//	gatelog-bench policy    the policy library alone: µs and allocations per decision
//	gatelog-bench scaleout  one daemon vs two sharing a log in MariaDB
//	gatelog-bench load      drive an already running daemon (for profiling)
//	gatelog-bench report    results.json as the Markdown tables bench/README.md quotes
//
// Run it from the repository root (make bench, bench-quick, bench-long).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/gatelog/gatelog/bench"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gatelog-bench compare|append|growth|startup|policy|scaleout|load|report [flags]")
		os.Exit(2)
	}
	// Tessera, run in-process by the append mode, logs through klog.
	klog.SetSlogLogger(slog.New(slog.DiscardHandler))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch os.Args[1] {
	case "compare":
		err = compare(ctx, os.Args[2:])
	case "append":
		err = appendCmd(ctx, os.Args[2:])
	case "growth":
		err = growth(ctx, os.Args[2:])
	case "startup":
		err = startup(ctx, os.Args[2:])
	case "policy":
		err = policyCost(ctx, os.Args[2:])
	case "scaleout":
		err = scaleOut(ctx, os.Args[2:])
	case "load":
		err = load(ctx, os.Args[2:])
	case "report":
		err = report(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatelog-bench:", err)
		os.Exit(1)
	}
}

// common flags
type common struct {
	out     string
	note    string
	workDir string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.out, "out", "", "update this results.json (empty: print only)")
	fs.StringVar(&c.note, "note", "", "note recorded with the machine description")
	fs.StringVar(&c.workDir, "work", "", "scratch directory (default: a new temporary one, removed after)")
}

func (c *common) scratch() (string, func(), error) {
	if c.workDir != "" {
		return c.workDir, func() {}, os.MkdirAll(c.workDir, 0o755)
	}
	d, err := os.MkdirTemp("", "gatelog-bench-")
	if err != nil {
		return "", nil, err
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// begin prepares a run: the scratch directory (removed by cleanup unless
// -work named it) and the machine description, printed first so every
// table is read next to the machine it was measured on.
func (c *common) begin() (work string, m bench.Machine, cleanup func(), err error) {
	work, cleanup, err = c.scratch()
	if err != nil {
		return "", m, nil, err
	}
	m = bench.DescribeMachine()
	bench.PrintMachine(os.Stdout, m)
	return work, m, cleanup, nil
}

// beginWith is begin for a mode that sends requests: the mix in reqDir,
// loaded before anything is prepared.
func (c *common) beginWith(reqDir string) (reqs []bench.Request, work string, m bench.Machine, cleanup func(), err error) {
	if reqs, err = bench.LoadRequests(reqDir); err != nil {
		return nil, "", m, nil, err
	}
	work, m, cleanup, err = c.begin()
	return reqs, work, m, cleanup, err
}

// save updates the results file with f's section and the machine.
func (c *common) save(m bench.Machine, f func(*bench.Report)) error {
	if c.out == "" {
		return nil
	}
	r, err := bench.LoadReport(c.out)
	if err != nil {
		return err
	}
	if c.note != "" {
		m.Note = strings.TrimSpace(c.note + " " + m.Note)
	}
	r.Machine = m
	f(r)
	if err := r.Save(c.out); err != nil {
		return err
	}
	fmt.Printf("wrote %s\n", c.out)
	return nil
}

func parseLevels(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("levels: %q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func compare(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	var c common
	c.register(fs)
	gatelogBin := fs.String("gatelog", "bin/gatelog", "gatelog binary")
	opaBin := fs.String("opa", "bin/opa-v1.22.2", "opa binary")
	policyDir := fs.String("policies", "policies", "policy directory; both servers get a copy with the working hours pinned")
	reqDir := fs.String("requests", "examples/requests", "directory of request JSON files (the mix)")
	levels := fs.String("levels", "1,4,16,64", "concurrent clients per level")
	duration := fs.Duration("duration", 5*time.Second, "measured time per level and server")
	warmup := fs.Duration("warmup", time.Second, "warm-up before each measurement")
	runs := fs.Int("runs", 3, "runs (medians are reported)")
	half := fs.Bool("half-peak", true, "also pace gatelog at half its peak and report latency")
	profClients := fs.Int("profile", 0, "also take a CPU profile of gatelog at this many clients (0: no)")
	profOut := fs.String("profile-out", "bench/profiles/gatelog-cpu.pprof", "where to save that profile")
	_ = fs.Parse(args)
	lv, err := parseLevels(*levels)
	if err != nil {
		return err
	}
	reqs, work, m, cleanup, err := c.beginWith(*reqDir)
	if err != nil {
		return err
	}
	defer cleanup()
	cmp, err := bench.Compare(ctx, bench.CompareConfig{
		GatelogBin: *gatelogBin, OPABin: *opaBin, PolicyDir: *policyDir, Requests: reqs,
		Levels: lv, Warmup: *warmup, Duration: *duration, Runs: *runs, HalfPeak: *half,
		WorkDir: work, Progress: os.Stderr,
	})
	if err != nil {
		return err
	}
	for _, a := range cmp.Answers {
		fmt.Printf("request %-22s opa allow=%-5v gatelog allow=%v\n", a.Request, a.OPAAllow, a.GatelogAllow)
	}
	bench.PrintComparison(os.Stdout, cmp)
	var prof *bench.ProfileSummary
	if *profClients > 0 {
		var bodies [][]byte
		for _, r := range reqs {
			bodies = append(bodies, r.Body)
		}
		prof, err = bench.ProfileGatelog(ctx, *gatelogBin, filepath.Join(work, "profile"), bodies, *profClients, *duration, *profOut,
			"--policies", cmp.PolicyDir)
		if err != nil {
			return err
		}
		bench.PrintProfile(os.Stdout, prof)
	}
	if err := c.save(m, func(r *bench.Report) {
		r.Compare = cmp
		if prof != nil {
			r.Profile = prof
		}
	}); err != nil {
		return err
	}
	for _, l := range cmp.Levels {
		if l.Clients == 1 {
			fmt.Printf("p50 ms at 1 client: gatelog %.2f, opa %.2f\n", l.Gatelog.P50Ms, l.OPA.P50Ms)
		}
	}
	for _, l := range cmp.Levels {
		if l.Clients == 16 {
			fmt.Printf("ratio gatelog/opa at 16 clients: %.2f\n", l.Ratio)
		}
	}
	return nil
}

// load drives a running gatelog daemon, e.g. while taking a CPU profile
// from its --pprof listener.
func load(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "daemon URL")
	keyFile := fs.String("api-key-file", "gatelog-data/bootstrap-api-key", "file holding an API key with decide and vouch")
	reqDir := fs.String("requests", "examples/requests", "directory of request JSON files (the mix)")
	clients := fs.Int("clients", 16, "concurrent clients")
	duration := fs.Duration("duration", 10*time.Second, "how long")
	rate := fs.Float64("rate", 0, "pace to this many requests/s in total (0: as fast as answered)")
	_ = fs.Parse(args)
	reqs, err := bench.LoadRequests(*reqDir)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	t := bench.Target{Name: "gatelog", URL: strings.TrimRight(*server, "/") + "/v1/decide", Header: http.Header{
		"Authorization": {"Bearer " + strings.TrimSpace(string(key))}, "Content-Type": {"application/json"},
	}}
	for _, r := range reqs {
		t.Bodies = append(t.Bodies, r.Body)
	}
	st, err := bench.Run(ctx, t, bench.Options{Clients: *clients, Duration: *duration, Rate: *rate})
	if err != nil {
		return err
	}
	fmt.Printf("%d clients: %.0f req/s  p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  errors %d %s\n",
		st.Clients, st.RPS, st.P50Ms, st.P99Ms, st.P999Ms, st.Errors, st.FirstError)
	return nil
}

func report(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "bench/results.json", "results file to print")
	update := fs.String("update", "", "rewrite the generated block of this Markdown file instead of printing")
	_ = fs.Parse(args)
	r, err := bench.LoadReport(*in)
	if err != nil {
		return err
	}
	if *update == "" {
		bench.WriteMarkdown(os.Stdout, r)
		return nil
	}
	doc, err := os.ReadFile(*update)
	if err != nil {
		return err
	}
	doc, err = bench.UpdateMarkdown(doc, r)
	if err != nil {
		return fmt.Errorf("%s: %w", *update, err)
	}
	if err := os.WriteFile(*update, doc, 0o644); err != nil {
		return err
	}
	fmt.Printf("updated the tables in %s\n", *update)
	return nil
}

// scaleOut measures one daemon, then two sharing one log, on MariaDB.
func scaleOut(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("scaleout", flag.ExitOnError)
	var c common
	c.register(fs)
	gatelogBin := fs.String("gatelog", "bin/gatelog", "gatelog binary")
	policyDir := fs.String("policies", "policies", "policy directory; the daemons get a copy with the working hours pinned")
	reqDir := fs.String("requests", "examples/requests", "directory of request JSON files (the mix)")
	script := fs.String("mariadb", "scripts/mariadb.sh", "script that starts a throwaway MariaDB")
	clients := fs.Int("clients", 16, "concurrent clients in total")
	duration := fs.Duration("duration", 5*time.Second, "measured time per setup")
	warmup := fs.Duration("warmup", time.Second, "warm-up before each measurement")
	_ = fs.Parse(args)
	reqs, work, m, cleanup, err := c.beginWith(*reqDir)
	if err != nil {
		return err
	}
	defer cleanup()
	pinned, err := bench.PinPolicies(*policyDir, filepath.Join(work, "policies"))
	if err != nil {
		return err
	}
	var bodies [][]byte
	for _, r := range reqs {
		bodies = append(bodies, r.Body)
	}
	r, err := bench.ScaleOut(ctx, bench.ScaleOutConfig{
		GatelogBin: *gatelogBin, PolicyDir: pinned, MariaDBScript: *script, Requests: bodies,
		Clients: *clients, Warmup: *warmup, Duration: *duration, WorkDir: work, Progress: os.Stderr,
	})
	if err != nil {
		return err
	}
	bench.PrintScaleOut(os.Stdout, r)
	return c.save(m, func(rep *bench.Report) { rep.ScaleOut = r })
}
