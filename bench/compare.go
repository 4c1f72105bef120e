package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Request is one request of the mix, as the gatelog JSON the file holds.
type Request struct {
	Name string
	Body []byte
}

// LoadRequests reads every *.json file in dir, sorted by name.
func LoadRequests(dir string) ([]Request, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var out []Request
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		if !json.Valid(b) {
			return nil, fmt.Errorf("%s: not JSON", n)
		}
		out = append(out, Request{Name: strings.TrimSuffix(filepath.Base(n), ".json"), Body: b})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no *.json requests in %s", dir)
	}
	return out, nil
}

// ParseAnswer reads the allow bit from a decision reply: gatelog's receipt
// ({"allow": …}) or OPA's data API result ({"result": {"allow": …}}).
func ParseAnswer(server string, body []byte) (bool, error) {
	type decision struct {
		Allow *bool `json:"allow"`
	}
	var d decision
	switch server {
	case "gatelog":
		if err := json.Unmarshal(body, &d); err != nil {
			return false, fmt.Errorf("gatelog reply: %w", err)
		}
	case "opa":
		var r struct {
			Result *decision `json:"result"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return false, fmt.Errorf("opa reply: %w", err)
		}
		if r.Result == nil {
			return false, errors.New("opa reply: no result (is data.gatelog.decision defined?)")
		}
		d = *r.Result
	default:
		return false, fmt.Errorf("unknown server %q", server)
	}
	if d.Allow == nil {
		return false, fmt.Errorf("%s reply: no boolean \"allow\"", server)
	}
	return *d.Allow, nil
}

// CompareConfig is what Compare runs.
type CompareConfig struct {
	GatelogBin, OPABin string
	// PolicyDir holds the policies (the bundled ones: policies/). Both
	// servers are given a copy with the working hours pinned (PinPolicies).
	PolicyDir   string
	GatelogArgs []string
	Requests    []Request
	Levels      []int
	Warmup      time.Duration
	Duration    time.Duration
	Runs        int
	// HalfPeak also paces gatelog at half its peak throughput.
	HalfPeak bool
	// WorkDir holds gatelog's fresh data directories.
	WorkDir string
	// Progress, if set, gets a line per measurement.
	Progress io.Writer
}

// Compare runs both servers at every level, Runs times (fresh servers and
// a fresh gatelog log each run), and returns the medians.
func Compare(ctx context.Context, cfg CompareConfig) (*Comparison, error) {
	if cfg.Runs < 1 {
		cfg.Runs = 1
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	pinned, err := PinPolicies(cfg.PolicyDir, filepath.Join(cfg.WorkDir, "policies"))
	if err != nil {
		return nil, err
	}
	c := &Comparison{Duration: cfg.Duration.String(), Warmup: cfg.Warmup.String(), Runs: cfg.Runs, PolicyDir: pinned}
	cfg.PolicyDir = pinned
	cfg.GatelogArgs = append([]string{"--policies", pinned}, cfg.GatelogArgs...)
	bodies := make([][]byte, len(cfg.Requests))
	for i, r := range cfg.Requests {
		c.Requests = append(c.Requests, r.Name)
		bodies[i] = r.Body
	}
	runs := map[string][][]Stats{"opa": make([][]Stats, len(cfg.Levels)), "gatelog": make([][]Stats, len(cfg.Levels))}
	for run := range cfg.Runs {
		gl, opa, err := startBoth(ctx, cfg, fmt.Sprintf("run-%d", run))
		if err != nil {
			return nil, err
		}
		if run == 0 {
			if c.Answers, err = answers(ctx, cfg.Requests, gl, opa); err != nil {
				stopAll(gl, opa)
				return nil, err
			}
		}
		for li, clients := range cfg.Levels {
			order := []*Server{opa, gl}
			if (li+run)%2 == 1 {
				order = []*Server{gl, opa}
			}
			for _, s := range order {
				st, err := Run(ctx, s.Target(bodies), Options{Clients: clients, Warmup: cfg.Warmup, Duration: cfg.Duration, CPU: s.CPUTime})
				if err != nil {
					stopAll(gl, opa)
					return nil, err
				}
				if st.Requests == 0 {
					stopAll(gl, opa)
					return nil, fmt.Errorf("%s at %d clients answered nothing: %s\n%s", s.Name, clients, st.FirstError, s.Stderr())
				}
				fmt.Fprintf(progress, "run %d/%d  %-7s %3d clients: %7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d\n",
					run+1, cfg.Runs, s.Name, clients, st.RPS, st.P50Ms, st.P99Ms, st.Errors)
				runs[s.Name][li] = append(runs[s.Name][li], st)
			}
		}
		if err := stopAll(gl, opa); err != nil {
			return nil, err
		}
	}
	for li, clients := range cfg.Levels {
		l := Level{Clients: clients, OPA: Summarize(runs["opa"][li]), Gatelog: Summarize(runs["gatelog"][li])}
		if l.OPA.RPS > 0 {
			l.Ratio = l.Gatelog.RPS / l.OPA.RPS
		}
		c.Levels = append(c.Levels, l)
	}
	if cfg.HalfPeak {
		h, err := halfPeak(ctx, cfg, c, bodies, progress)
		if err != nil {
			return nil, err
		}
		c.HalfPeak = h
	}
	return c, nil
}

// halfPeak paces a fresh gatelog at half the best median throughput seen,
// then OPA at the same rate.
func halfPeak(ctx context.Context, cfg CompareConfig, c *Comparison, bodies [][]byte, progress io.Writer) (*HalfPeak, error) {
	h := &HalfPeak{}
	for _, l := range c.Levels {
		if l.Gatelog.RPS > h.PeakRPS {
			h.PeakRPS, h.Clients = l.Gatelog.RPS, max(l.Clients, 16)
		}
	}
	if h.PeakRPS == 0 {
		return nil, errors.New("gatelog answered nothing, so there is no peak to halve")
	}
	// paced runs s at half the peak, cfg.Runs times, and stops it.
	paced := func(s *Server) (Side, error) {
		defer s.Stop(30 * time.Second)
		var runs []Stats
		for run := range cfg.Runs {
			st, err := Run(ctx, s.Target(bodies), Options{Clients: h.Clients, Warmup: cfg.Warmup, Duration: cfg.Duration, Rate: h.PeakRPS / 2, CPU: s.CPUTime})
			if err != nil {
				return Side{}, err
			}
			fmt.Fprintf(progress, "run %d/%d  %s paced at %.0f req/s: p50 %6.2f ms  p99 %6.2f ms  errors %d\n",
				run+1, cfg.Runs, s.Name, h.PeakRPS/2, st.P50Ms, st.P99Ms, st.Errors)
			runs = append(runs, st)
		}
		return Summarize(runs), nil
	}
	gl, err := StartGatelog(ctx, cfg.GatelogBin, filepath.Join(cfg.WorkDir, "half-peak"), cfg.GatelogArgs...)
	if err != nil {
		return nil, err
	}
	if h.Side, err = paced(gl); err != nil {
		return nil, err
	}
	// OPA at the same rate: the tail the machine allows a request that
	// is neither signed nor logged.
	opa, err := StartOPA(ctx, cfg.OPABin, cfg.PolicyDir)
	if err != nil {
		return nil, err
	}
	o, err := paced(opa)
	if err != nil {
		return nil, err
	}
	h.OPA = &o
	return h, nil
}

func startBoth(ctx context.Context, cfg CompareConfig, name string) (gl, opa *Server, err error) {
	gl, err = StartGatelog(ctx, cfg.GatelogBin, filepath.Join(cfg.WorkDir, name), cfg.GatelogArgs...)
	if err != nil {
		return nil, nil, err
	}
	opa, err = StartOPA(ctx, cfg.OPABin, cfg.PolicyDir)
	if err != nil {
		_ = gl.Stop(30 * time.Second)
		return nil, nil, err
	}
	return gl, opa, nil
}

func stopAll(servers ...*Server) error {
	var errs []error
	for _, s := range servers {
		if err := s.Stop(30 * time.Second); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w\n%s", s.Name, err, s.Stderr()))
		}
	}
	return errors.Join(errs...)
}

func answers(ctx context.Context, reqs []Request, gl, opa *Server) ([]Answer, error) {
	var out []Answer
	for _, r := range reqs {
		a := Answer{Request: r.Name}
		for _, s := range []*Server{gl, opa} {
			body, err := s.Decide(ctx, r.Body)
			if err != nil {
				return nil, fmt.Errorf("request %s: %w", r.Name, err)
			}
			allow, err := ParseAnswer(s.Name, body)
			if err != nil {
				return nil, fmt.Errorf("request %s: %w", r.Name, err)
			}
			if s == gl {
				a.GatelogAllow = allow
			} else {
				a.OPAAllow = allow
			}
		}
		out = append(out, a)
	}
	return out, nil
}
