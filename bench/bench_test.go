package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/gatelog/gatelog/bench"
)

// TestMain keeps Tessera's klog lines (from the in-process append
// benchmarks) out of the test output.
func TestMain(m *testing.M) {
	klog.SetSlogLogger(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// buildGatelog compiles the real daemon.
func buildGatelog(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gatelog")
	if out, err := exec.Command("go", "build", "-o", bin, "../cli/gatelog").CombinedOutput(); err != nil {
		t.Fatalf("go build gatelog: %v\n%s", err, out)
	}
	return bin
}

// opaBinary is the pinned opa the Makefile builds into bin/, or, when it
// is not there, the same version installed into a temporary directory.
func opaBinary(t *testing.T) string {
	t.Helper()
	if p, err := filepath.Abs("../bin/opa-v1.22.2"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if testing.Short() {
		t.Skip("bin/opa-v1.22.2 is not built (make bin/opa-v1.22.2) and -short is set")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "install", "github.com/open-policy-agent/opa@v1.22.2")
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install opa: %v\n%s", err, out)
	}
	return filepath.Join(dir, "opa")
}

// TestSmoke runs the whole comparison briefly against both real servers
// so the harness cannot rot. It checks the numbers are sane, never how
// fast anything was.
func TestSmoke(t *testing.T) {
	gl, opa := buildGatelog(t), opaBinary(t)
	reqs, err := bench.LoadRequests("../examples/requests")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := bench.Compare(ctx, bench.CompareConfig{
		GatelogBin: gl, OPABin: opa, PolicyDir: "../policies", Requests: reqs,
		Levels: []int{1, 4}, Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond,
		Runs: 1, HalfPeak: true, WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Answers) != len(reqs) {
		t.Fatalf("answers for %d requests, want %d", len(c.Answers), len(reqs))
	}
	for _, a := range c.Answers {
		// Both servers run the same policy on the same request; gatelog
		// only replaces the time and binds the subject to the caller that
		// vouches for it, which the example requests do not depend on.
		if a.OPAAllow != a.GatelogAllow {
			t.Errorf("%s: opa allow=%v, gatelog allow=%v", a.Request, a.OPAAllow, a.GatelogAllow)
		}
	}
	if len(c.Levels) != 2 {
		t.Fatalf("%d levels, want 2", len(c.Levels))
	}
	for _, l := range c.Levels {
		for name, s := range map[string]bench.Side{"opa": l.OPA, "gatelog": l.Gatelog} {
			checkSide(t, fmt.Sprintf("%s at %d clients", name, l.Clients), s)
		}
		if l.Ratio <= 0 {
			t.Errorf("ratio at %d clients is %v", l.Clients, l.Ratio)
		}
	}
	if c.HalfPeak == nil || c.HalfPeak.PeakRPS <= 0 {
		t.Fatalf("half-peak run missing: %+v", c.HalfPeak)
	}
	checkSide(t, "gatelog at half its peak", c.HalfPeak.Side)
	if c.HalfPeak.OPA == nil {
		t.Fatal("half-peak run has no OPA at the same rate")
	}
	checkSide(t, "opa at gatelog's half peak", *c.HalfPeak.OPA)

	// The daemon's --pprof listener and the profile summary, on the
	// policies the comparison ran.
	var bodies [][]byte
	for _, r := range reqs {
		bodies = append(bodies, r.Body)
	}
	prof, err := bench.ProfileGatelog(ctx, gl, t.TempDir(), bodies, 4, time.Second, filepath.Join(t.TempDir(), "cpu.pprof"),
		"--policies", c.PolicyDir)
	if err != nil {
		t.Fatal(err)
	}
	if prof.Requests == 0 || prof.CPUSeconds <= 0 || prof.CPUUsPerReq["total"] <= 0 {
		t.Fatalf("profile measured nothing: %+v", prof)
	}
	if prof.Shares["policy evaluation (OPA topdown)"] <= 0 {
		t.Errorf("profile has no policy evaluation share: %v", prof.Shares)
	}

	out := filepath.Join(t.TempDir(), "results.json")
	r := &bench.Report{Machine: bench.DescribeMachine(), Compare: c}
	if err := r.Save(out); err != nil {
		t.Fatal(err)
	}
	back, err := bench.LoadReport(out)
	if err != nil {
		t.Fatal(err)
	}
	if back.Compare == nil || len(back.Compare.Levels) != 2 || back.Machine.Cores < 1 || back.Machine.CPU == "" {
		t.Fatalf("report did not survive a round trip: %+v", back)
	}
}

func checkSide(t *testing.T, what string, s bench.Side) {
	t.Helper()
	if s.Errors != 0 {
		t.Errorf("%s: %d errors: %+v", what, s.Errors, s.Runs)
	}
	if s.RPS <= 0 || len(s.Runs) == 0 || s.Runs[0].Requests == 0 {
		t.Errorf("%s: no requests measured: %+v", what, s)
	}
	if !(0 < s.P50Ms && s.P50Ms <= s.P99Ms && s.P99Ms <= s.P999Ms) {
		t.Errorf("%s: percentiles out of order: p50 %v p99 %v p99.9 %v", what, s.P50Ms, s.P99Ms, s.P999Ms)
	}
	if s.CPUUsPerReq < 0 {
		t.Errorf("%s: negative CPU per request %v", what, s.CPUUsPerReq)
	}
}

// TestGrowth grows a real daemon's log a little: the sizes are exact, and
// start-up, index catch-up, proofs, search, offline verification, a burst
// of decisions, RSS and disk use are all measured.
func TestGrowth(t *testing.T) {
	reqs, err := bench.LoadRequests("../examples/requests")
	if err != nil {
		t.Fatal(err)
	}
	var seen []int // points in the report at each OnPoint call
	dataDir := filepath.Join(t.TempDir(), "data")
	g, err := bench.Growth(context.Background(), bench.GrowthConfig{
		GatelogBin: buildGatelog(t), DataDir: dataDir, Requests: reqs,
		Clients: 4, Burst: 20, Fill: 8, Points: []int64{10, 100},
		OnPoint: func(g *bench.GrowthReport) error { seen = append(seen, len(g.Points)); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []int{1, 2}) {
		t.Errorf("OnPoint saw reports of %v points, want [1 2]", seen)
	}
	if len(g.Points) != 2 {
		t.Fatalf("%d points, want 2", len(g.Points))
	}
	if len(g.Log) != 64 {
		t.Errorf("log named %q, want its key's hex SHA-256", g.Log)
	}
	// A second run on the same data directory continues the log: the
	// points it has passed are skipped, and After puts the first run's in
	// front.
	g2, err := bench.Growth(context.Background(), bench.GrowthConfig{
		GatelogBin: buildGatelog(t), DataDir: dataDir, Requests: reqs,
		Clients: 4, Burst: 20, Fill: 8, Points: []int64{50, 100, 200},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(g2.Points) != 1 || g2.Points[0].Entries != 200 || g2.Log != g.Log {
		t.Fatalf("continued run measured %+v of log %s, want one point at 200 of %s", g2.Points, g2.Log, g.Log)
	}
	all := g2.After(g)
	var sizes []int64
	for _, p := range all.Points {
		sizes = append(sizes, p.Entries)
	}
	if !slices.Equal(sizes, []int64{10, 100, 200}) {
		t.Errorf("continued report has points at %v, want [10 100 200]", sizes)
	}
	if other := g2.After(&bench.GrowthReport{Log: "another", Points: g.Points}); len(other.Points) != 1 {
		t.Errorf("points of another log were kept: %+v", other.Points)
	}
	for i, p := range g.Points {
		if want := []int64{10, 100}[i]; p.Entries != want {
			t.Errorf("point %d has %d entries, want %d", i, p.Entries, want)
		}
		if p.FillPerSec <= 0 || p.AppendPerSec <= 0 || p.ProofMs <= 0 || p.VerifyUs <= 0 || p.SearchP50Ms <= 0 ||
			p.SearchP99Ms < p.SearchP50Ms || p.RSSMB <= 0 || p.RestRSSMB <= 0 || p.DiskBytesPerEntry <= 0 || p.FilesPerEntry <= 0 ||
			p.ReadyMs <= 0 || p.FirstDecisionMs < p.ReadyMs {
			t.Errorf("point %d not measured: %+v", i, p)
		}
	}
}

// TestRunCountsErrors drives a real HTTP server that fails every third
// request: failures are counted apart from the latency samples.
func TestRunCountsErrors(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"allow":true}`)
	}))
	defer srv.Close()
	st, err := bench.Run(context.Background(), bench.Target{Name: "t", URL: srv.URL, Bodies: [][]byte{[]byte(`{}`)}},
		bench.Options{Clients: 3, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests == 0 || st.Errors == 0 {
		t.Fatalf("want both successes and errors, got %+v", st)
	}
	if st.FirstError == "" {
		t.Errorf("first error not reported: %+v", st)
	}
}

// TestRunPaced checks a paced run never sends more than its schedule.
func TestRunPaced(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		fmt.Fprint(w, `{}`)
	}))
	defer srv.Close()
	opts := bench.Options{Clients: 4, Duration: 300 * time.Millisecond, Rate: 100}
	st, err := bench.Run(context.Background(), bench.Target{Name: "t", URL: srv.URL, Bodies: [][]byte{[]byte(`{}`)}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	// 100/s for 0.3 s is 30 due requests, plus at most one per client in flight.
	if got := n.Load(); got > 30+int64(opts.Clients) || st.Requests == 0 {
		t.Fatalf("paced at 100/s for 300ms: server saw %d, measured %d", got, st.Requests)
	}
	if st.OfferedRPS != 100 {
		t.Errorf("offered rate %v, want 100", st.OfferedRPS)
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	for _, o := range []bench.Options{{Clients: 0, Duration: time.Second}, {Clients: 1}} {
		if _, err := bench.Run(context.Background(), bench.Target{Bodies: [][]byte{{}}}, o); err == nil {
			t.Errorf("Run(%+v) = nil error", o)
		}
	}
}

// TestCompareAppends runs the append-path comparison briefly on real logs.
func TestCompareAppends(t *testing.T) {
	r, err := bench.CompareAppends(context.Background(), t.TempDir(), 4, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Tessera.Appends == 0 || r.Translog.Appends == 0 || r.Overhead <= 0 {
		t.Fatalf("append comparison measured nothing: %+v", r)
	}
	if r.Translog.P50Ms > r.Translog.P99Ms || r.Tessera.P50Ms > r.Tessera.P99Ms {
		t.Errorf("percentiles out of order: %+v", r)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := bench.Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestParseAnswer(t *testing.T) {
	for _, c := range []struct {
		server, body string
		allow, ok    bool
	}{
		{"gatelog", `{"decision_id":"x","allow":true,"reasons":[]}`, true, true},
		{"gatelog", `{"allow":false}`, false, true},
		{"gatelog", `{"code":503,"message":"log unavailable"}`, false, false},
		{"opa", `{"result":{"allow":true,"reasons":["ok"]}}`, true, true},
		{"opa", `{}`, false, false},
		{"opa", `{"result":{"allow":"yes"}}`, false, false},
		{"other", `{"allow":true}`, false, false},
	} {
		allow, err := bench.ParseAnswer(c.server, []byte(c.body))
		if (err == nil) != c.ok || allow != c.allow {
			t.Errorf("ParseAnswer(%s, %s) = %v, %v; want %v, ok=%v", c.server, c.body, allow, err, c.allow, c.ok)
		}
	}
}

func TestParseProc(t *testing.T) {
	rss, err := bench.ParseRSS([]byte("Name:\tgatelog\nVmPeak:\t 1 kB\nVmRSS:\t   51200 kB\n"))
	if err != nil || rss != 50<<20 {
		t.Errorf("ParseRSS = %d, %v; want %d", rss, err, 50<<20)
	}
	if _, err := bench.ParseRSS([]byte("VmRSS: lots\n")); err == nil {
		t.Error("ParseRSS accepted a malformed line")
	}
	anon, err := bench.ParseRSSAnon([]byte("VmRSS:\t   51200 kB\nRssAnon:\t   20480 kB\nRssFile:\t 30720 kB\n"))
	if err != nil || anon != 20<<20 {
		t.Errorf("ParseRSSAnon = %d, %v; want %d", anon, err, 20<<20)
	}
	// A command name with spaces and parentheses must not shift the fields.
	stat := "1234 (my (odd) cmd) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0"
	cpu, err := bench.ParseCPUTime([]byte(stat))
	if err != nil || cpu != 3*time.Second {
		t.Errorf("ParseCPUTime = %v, %v; want 3s", cpu, err)
	}
	if _, err := bench.ParseCPUTime([]byte("1234 (x) S 1")); err == nil {
		t.Error("ParseCPUTime accepted a short line")
	}
}

func FuzzParseAnswer(f *testing.F) {
	f.Add(true, []byte(`{"allow":true}`))
	f.Add(false, []byte(`{"result":{"allow":false}}`))
	f.Add(false, []byte(`{"result":null}`))
	f.Fuzz(func(t *testing.T, gatelog bool, body []byte) {
		server := "opa"
		if gatelog {
			server = "gatelog"
		}
		allow, err := bench.ParseAnswer(server, body)
		if err != nil && allow {
			t.Fatalf("allow=true together with error %v", err)
		}
	})
}

func FuzzParseProc(f *testing.F) {
	f.Add([]byte("VmRSS:\t 1024 kB\n"))
	f.Add([]byte("1 (a) S 1 2 3 4 5 6 7 8 9 10 11 12 0 0"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if rss, err := bench.ParseRSS(raw); err == nil && rss < 0 {
			t.Fatalf("negative RSS %d", rss)
		}
		if cpu, err := bench.ParseCPUTime(raw); err == nil && cpu < 0 {
			t.Fatalf("negative CPU time %v", cpu)
		}
	})
}

// BenchmarkAppend is the append path alone at 16 concurrent appenders:
// raw Tessera POSIX appends (at translog's batching, and at Tessera's
// defaults) against translog.Log.Append on the same disk.
// Compare the two ns/op; the overhead ratio is logged at the end.
func BenchmarkAppend(b *testing.B) {
	const clients = 16
	perOp := map[string]float64{}
	for _, side := range []struct {
		name string
		open func(context.Context, string) (bench.AppendFunc, func(context.Context) error, error)
	}{{"tessera", bench.OpenTessera}, {"tessera-defaults", bench.OpenTesseraDefaults}, {"translog", bench.OpenTranslog}} {
		b.Run(fmt.Sprintf("%s/clients=%d", side.name, clients), func(b *testing.B) {
			ctx := context.Background()
			add, closeFn, err := side.open(ctx, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			// Close waits for a checkpoint covering every entry: not timed.
			defer func() {
				b.StopTimer()
				if err := closeFn(ctx); err != nil {
					b.Error(err)
				}
			}()
			// The first append waits for the new log's first integration.
			if err := add(ctx, -1); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetParallelism((clients + 1) / 2) // ×GOMAXPROCS goroutines
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := add(ctx, int(next.Add(1))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			perOp[side.name] = float64(b.Elapsed()) / float64(b.N)
		})
	}
	if perOp["tessera"] > 0 && perOp["translog"] > 0 {
		fmt.Printf("append path at %d clients: raw Tessera %.0f/s, translog.Append %.0f/s, overhead %.2fx\n",
			clients, 1e9/perOp["tessera"], 1e9/perOp["translog"], perOp["translog"]/perOp["tessera"])
	}
}

func TestProfileShares(t *testing.T) {
	raw, err := os.ReadFile("profiles/gatelog-cpu-16.pprof")
	if err != nil {
		t.Fatal(err)
	}
	total, shares, err := bench.ProfileShares(raw)
	if err != nil {
		t.Fatal(err)
	}
	if total <= 0 {
		t.Fatalf("total %v CPU seconds", total)
	}
	// Every decision is evaluated and signed: both parts must show up,
	// and no share can exceed the whole.
	for _, part := range []string{"policy evaluation (OPA topdown)", "signing the record (receipt.Sign)"} {
		if shares[part] <= 0 {
			t.Errorf("%s: share %v", part, shares[part])
		}
	}
	for part, pct := range shares {
		if pct < 0 || pct > 100 {
			t.Errorf("%s: share %v%%", part, pct)
		}
	}
	if _, _, err := bench.ProfileShares([]byte("no profile here\n")); err == nil {
		t.Error("accepted bytes that are no profile")
	}
}

// The tables in bench/README.md are generated from results.json by
// `gatelog-bench report -update` (make bench runs it): they must be the
// committed results, not an older copy.
func TestReadmeTablesMatchResults(t *testing.T) {
	r, err := bench.LoadReport("results.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := bench.UpdateMarkdown(doc, r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc, want) {
		t.Error("bench/README.md's tables differ from results.json: run go run ./bench/cmd/gatelog-bench report -update bench/README.md")
	}
	var b strings.Builder
	bench.WriteMarkdown(&b, r)
	out := b.String()
	for _, l := range r.Compare.Levels {
		if row := fmt.Sprintf("| %d | %.0f |", l.Clients, l.OPA.RPS); !strings.Contains(out, row) {
			t.Errorf("no row starting %q", row)
		}
	}
	for _, p := range r.Growth.Points {
		if row := fmt.Sprintf("| %d | %.0f |", p.Entries, p.FillPerSec); !strings.Contains(out, row) {
			t.Errorf("no growth row starting %q", row)
		}
	}
	for _, part := range bench.ProfileParts {
		if !strings.Contains(out, "| "+part.Part+" |") {
			t.Errorf("no profile row for %q", part.Part)
		}
	}
	if _, err := bench.UpdateMarkdown([]byte("# no markers\n"), r); err == nil {
		t.Error("UpdateMarkdown accepted a file without the markers")
	}
}
