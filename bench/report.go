package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is bench/results.json. Each harness mode fills its own section
// and leaves the others as they were.
type Report struct {
	Generated string          `json:"generated"`
	Machine   Machine         `json:"machine"`
	Compare   *Comparison     `json:"compare,omitempty"`
	Append    []AppendReport  `json:"append,omitempty"`
	Growth    *GrowthReport   `json:"growth,omitempty"`
	Startup   *StartupReport  `json:"startup,omitempty"`
	Profile   *ProfileSummary `json:"profile,omitempty"`
	Policy    *PolicyCost     `json:"policy,omitempty"`
	ScaleOut  *ScaleOutReport `json:"scale_out,omitempty"`
}

// Machine describes where the numbers were taken.
type Machine struct {
	Cores    int        `json:"cores"`
	CPU      string     `json:"cpu"`
	MemoryMB int64      `json:"memory_mb"`
	OS       string     `json:"os"`
	Go       string     `json:"go"`
	LoadAvg  [3]float64 `json:"load_avg_at_start"`
	// BusyBefore is the share of all cores' time spent busy (not idle or
	// waiting for I/O) during one second sampled just before the run,
	// while the harness itself was idle: what others were using. The load
	// average is kept for reference, but it still remembers the previous
	// stage of the same make bench for minutes, so it does not decide
	// Loaded.
	BusyBefore float64 `json:"cpu_busy_before_run"`
	Loaded     bool    `json:"loaded"`
	Note       string  `json:"note,omitempty"`
}

// Comparison is gatelog against OPA at each concurrency level.
type Comparison struct {
	Duration string   `json:"duration"`
	Warmup   string   `json:"warmup"`
	Runs     int      `json:"runs"`
	Requests []string `json:"requests"`
	// Answers are each request's decision from both servers.
	Answers  []Answer  `json:"answers"`
	Levels   []Level   `json:"levels"`
	HalfPeak *HalfPeak `json:"half_peak,omitempty"`
	// PolicyDir is the pinned copy of the policies both servers ran, for
	// anything else run afterwards on the same mix (not saved).
	PolicyDir string `json:"-"`
}

// Answer is the decision both servers gave one request.
type Answer struct {
	Request      string `json:"request"`
	OPAAllow     bool   `json:"opa_allow"`
	GatelogAllow bool   `json:"gatelog_allow"`
}

// Level is one concurrency level: the medians over the runs of each side.
type Level struct {
	Clients int     `json:"clients"`
	OPA     Side    `json:"opa"`
	Gatelog Side    `json:"gatelog"`
	Ratio   float64 `json:"ratio_rps_gatelog_over_opa"`
}

// Side is one server's medians at a level, and the runs they come from.
type Side struct {
	RPS         float64 `json:"rps"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	P999Ms      float64 `json:"p999_ms"`
	CPUUsPerReq float64 `json:"cpu_us_per_req"`
	Errors      int     `json:"errors"`
	Runs        []Stats `json:"runs"`
}

// HalfPeak is gatelog paced at half its measured peak throughput, and OPA
// paced at the same rate.
type HalfPeak struct {
	PeakRPS float64 `json:"peak_rps"`
	Clients int     `json:"clients"`
	Side
	OPA *Side `json:"opa,omitempty"`
}

// ProfileSummary is where a CPU profile of the daemon under load says the
// time goes: each part's cumulative share of the sampled CPU time, and the
// same as CPU µs per decision.
type ProfileSummary struct {
	Clients     int                `json:"clients"`
	Seconds     float64            `json:"seconds"`
	Requests    int                `json:"requests"`
	RPS         float64            `json:"rps"`
	CPUSeconds  float64            `json:"cpu_seconds_sampled"`
	Shares      map[string]float64 `json:"shares_percent"`
	CPUUsPerReq map[string]float64 `json:"cpu_us_per_req"`
	File        string             `json:"file,omitempty"`
}

// PrintProfile writes the profile breakdown in ProfileParts order.
func PrintProfile(w io.Writer, p *ProfileSummary) {
	fmt.Fprintf(w, "\nwhere gatelog's CPU goes at %d clients (%.0f req/s, %.1f CPU-s sampled in %.0f s, %.0f µs CPU per decision; profile %s)\n",
		p.Clients, p.RPS, p.CPUSeconds, p.Seconds, p.CPUUsPerReq["total"], p.File)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "part\tshare of CPU\tµs per decision\t")
	for _, part := range ProfileParts {
		fmt.Fprintf(tw, "%s\t%5.1f%%\t%6.0f\t\n", part.Part, p.Shares[part.Part], p.CPUUsPerReq[part.Part])
	}
	tw.Flush()
}

// Summarize takes the medians of runs.
func Summarize(runs []Stats) Side {
	s := Side{Runs: runs}
	pick := func(f func(Stats) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		return Median(v)
	}
	s.RPS = pick(func(r Stats) float64 { return r.RPS })
	s.P50Ms = pick(func(r Stats) float64 { return r.P50Ms })
	s.P99Ms = pick(func(r Stats) float64 { return r.P99Ms })
	s.P999Ms = pick(func(r Stats) float64 { return r.P999Ms })
	s.CPUUsPerReq = pick(func(r Stats) float64 { return r.CPUUsPerReq })
	for _, r := range runs {
		s.Errors += r.Errors
	}
	return s
}

// Median is the middle value (the mean of the middle two for an even count).
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// DescribeMachine reads the core count, CPU model, memory and load.
func DescribeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(raw)
	}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(raw)) {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) == 2 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemoryMB = kb >> 10
				}
			}
		}
	}
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(raw))
		for i := 0; i < 3 && i < len(f); i++ {
			m.LoadAvg[i], _ = strconv.ParseFloat(f[i], 64)
		}
	}
	// Before we start anything, a quarter of the machine busy means
	// someone else is using the CPU.
	if busy, err := busyShare(time.Second); err == nil {
		m.BusyBefore = busy
		m.Loaded = busy >= 0.25
	}
	if m.Loaded {
		m.Note = fmt.Sprintf("taken on a loaded machine (%.0f%% of the CPU busy with other work in the second before the run): absolute numbers are low and noisy, compare the ratio and CPU per request", 100*m.BusyBefore)
	}
	return m
}

// busyShare samples /proc/stat over d: the share of all CPU time that was
// neither idle nor waiting for I/O.
func busyShare(d time.Duration) (float64, error) {
	read := func() (busy, total uint64, err error) {
		raw, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0, err
		}
		line, _, _ := strings.Cut(string(raw), "\n")
		f := strings.Fields(line)
		if len(f) < 6 || f[0] != "cpu" {
			return 0, 0, errors.New("/proc/stat: no cpu line")
		}
		// user nice system idle iowait irq softirq steal; guest time
		// (the columns after) is already counted in user and nice.
		for i, v := range f[1:min(len(f), 9)] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("/proc/stat: %w", err)
			}
			total += n
			if i != 3 && i != 4 { // idle, iowait
				busy += n
			}
		}
		return busy, total, nil
	}
	b0, t0, err := read()
	if err != nil {
		return 0, err
	}
	time.Sleep(d)
	b1, t1, err := read()
	if err != nil {
		return 0, err
	}
	if t1 <= t0 {
		return 0, errors.New("/proc/stat did not advance")
	}
	return float64(b1-b0) / float64(t1-t0), nil
}

func cpuModel(cpuinfo []byte) string {
	for line := range strings.Lines(string(cpuinfo)) {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// LoadReport reads a results file; a missing file is an empty report.
func LoadReport(path string) (*Report, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Report{}, nil
	}
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// Save writes the report as indented JSON.
func (r *Report) Save(path string) error {
	r.Generated = time.Now().UTC().Format(time.RFC3339)
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}

// PrintMachine writes one line describing the machine.
func PrintMachine(w io.Writer, m Machine) {
	fmt.Fprintf(w, "machine: %d cores, %s, %d MB, %s, %s, load %.2f %.2f %.2f, %.0f%% busy before the run\n",
		m.Cores, m.CPU, m.MemoryMB, m.OS, m.Go, m.LoadAvg[0], m.LoadAvg[1], m.LoadAvg[2], 100*m.BusyBefore)
	if m.Note != "" {
		fmt.Fprintf(w, "note: %s\n", m.Note)
	}
}

// PrintComparison writes the side-by-side table.
func PrintComparison(w io.Writer, c *Comparison) {
	fmt.Fprintf(w, "\ngatelog (evaluate + sign + durable append) vs opa run --server; %d run(s) of %s after %s warm-up; medians\n", c.Runs, c.Duration, c.Warmup)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\t|\topa req/s\tp50 ms\tp99 ms\tp99.9 ms\tcpu µs/req\t|\tgatelog req/s\tp50 ms\tp99 ms\tp99.9 ms\tcpu µs/req\terrors\t|\tratio\t")
	for _, l := range c.Levels {
		fmt.Fprintf(tw, "%d\t|\t%.0f\t%.2f\t%.2f\t%.2f\t%.0f\t|\t%.0f\t%.2f\t%.2f\t%.2f\t%.0f\t%d\t|\t%.2f\t\n",
			l.Clients, l.OPA.RPS, l.OPA.P50Ms, l.OPA.P99Ms, l.OPA.P999Ms, l.OPA.CPUUsPerReq,
			l.Gatelog.RPS, l.Gatelog.P50Ms, l.Gatelog.P99Ms, l.Gatelog.P999Ms, l.Gatelog.CPUUsPerReq, l.Gatelog.Errors+l.OPA.Errors, l.Ratio)
	}
	tw.Flush()
	if h := c.HalfPeak; h != nil {
		fmt.Fprintf(w, "gatelog paced at half its peak (%.0f of %.0f req/s, %d clients): p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms\n",
			h.PeakRPS/2, h.PeakRPS, h.Clients, h.P50Ms, h.P99Ms, h.P999Ms)
		if o := h.OPA; o != nil {
			fmt.Fprintf(w, "opa paced at the same rate: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms\n", o.P50Ms, o.P99Ms, o.P999Ms)
		}
	}
}
