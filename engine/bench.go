package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/profiler"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/gatelog/gatelog/record/decision"
)

// Cost is what one decision costs the engine: the mean over N evaluations
// of exactly what Decide does (input built, policy evaluated, result read).
type Cost struct {
	N           int     `json:"n"`
	NsPerOp     float64 `json:"ns_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	// Decision is the decision the request gets.
	Decision decision.Decision `json:"decision"`
}

// Measure decides req repeatedly for at least d (and at least once after a
// warm-up) and returns the mean cost per decision. Allocations are counted
// with runtime.ReadMemStats over the whole run, as `go test -benchmem`
// does, so other goroutines of the process add to them: measure in a
// process that does nothing else.
func (e *Engine) Measure(ctx context.Context, req decision.Request, d time.Duration) (Cost, error) {
	c := e.cur.Load()
	first := evaluate(ctx, c.query, req) // warm-up: caches, interned values
	if err := ctx.Err(); err != nil {
		return Cost{}, err
	}
	var before, after runtime.MemStats
	n := 1
	for {
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		for range n {
			evaluate(ctx, c.query, req)
		}
		elapsed := time.Since(start)
		runtime.ReadMemStats(&after)
		if err := ctx.Err(); err != nil {
			return Cost{}, err
		}
		if elapsed >= d || n >= 1<<30 {
			return Cost{
				N:           n,
				NsPerOp:     float64(elapsed.Nanoseconds()) / float64(n),
				AllocsPerOp: float64(after.Mallocs-before.Mallocs) / float64(n),
				BytesPerOp:  float64(after.TotalAlloc-before.TotalAlloc) / float64(n),
				Decision:    first,
			}, nil
		}
		// Aim for d with the rate seen so far, growing at most 100-fold.
		next := n * 100
		if elapsed > 0 {
			if want := int(float64(n) * 1.2 * float64(d) / float64(elapsed)); want < next {
				next = want
			}
		}
		n = max(next, n+1)
	}
}

// RuleTime is the evaluation time OPA's profiler attributes to the
// expressions of one rule (not to the rules it refers to).
type RuleTime struct {
	// Rule is the rule's path, e.g. data.gatelog.off_hours; the bodies a
	// rule has in one file are counted together, at the first one's line.
	Rule string `json:"rule"`
	File string `json:"file"`
	Row  int    `json:"row"`
	// NsPerOp is the time per decision.
	NsPerOp float64 `json:"ns_per_op"`
	// EvalsPerOp is how often its expressions were evaluated per decision.
	EvalsPerOp float64 `json:"evals_per_op"`
}

// ErrNoProfile is returned by Profile when the profiler saw no expression.
var ErrNoProfile = errors.New("the profiler recorded no expression")

// Profile decides req runs times under OPA's profiler
// (github.com/open-policy-agent/opa/v1/profiler) and returns the rules by
// the time their own expressions took, most expensive first. The profiler
// slows evaluation several times over: the figures rank rules against each
// other, Measure gives the real cost.
func (e *Engine) Profile(ctx context.Context, req decision.Request, runs int) ([]RuleTime, error) {
	if runs < 1 {
		return nil, fmt.Errorf("profile: runs must be at least 1, got %d", runs)
	}
	c := e.cur.Load()
	p := profiler.New()
	for range runs {
		evaluate(ctx, c.query, req, rego.EvalQueryTracer(p))
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	stats := p.ReportTopNResults(-1, []string{"total_time_ns"})
	if len(stats) == 0 {
		return nil, ErrNoProfile
	}
	rules := ruleIndex(c.modules)
	byRule := map[string]*RuleTime{}
	for _, s := range stats {
		if s.Location == nil {
			continue
		}
		r := rules.find(s.Location.File, s.Location.Row)
		key := r.Rule + " " + r.File
		if r.Rule == "" {
			// The query itself or a line outside any rule.
			key = fmt.Sprintf("%s:%d", s.Location.File, s.Location.Row)
			r = RuleTime{Rule: "(query)", File: s.Location.File, Row: s.Location.Row}
		}
		t, ok := byRule[key]
		if !ok {
			t = &r
			byRule[key] = t
		}
		t.NsPerOp += float64(s.ExprTimeNs) / float64(runs)
		t.EvalsPerOp += float64(s.NumEval) / float64(runs)
	}
	out := make([]RuleTime, 0, len(byRule))
	for _, t := range byRule {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].NsPerOp != out[j].NsPerOp {
			return out[i].NsPerOp > out[j].NsPerOp
		}
		return out[i].Rule < out[j].Rule
	})
	return out, nil
}

// ruleSpan is the lines one rule (head, bodies, else branches) covers.
type ruleSpan struct {
	first, last int
	rule        RuleTime
}

type rulesByFile map[string][]ruleSpan

// ruleIndex lists, per file, the line span of every rule of modules.
func ruleIndex(modules map[string]*ast.Module) rulesByFile {
	idx := rulesByFile{}
	for _, m := range modules {
		for _, r := range m.Rules {
			if r.Location == nil {
				continue
			}
			path := m.Package.Path.Extend(r.Head.Ref().GroundPrefix()).String()
			last := r.Location.Row
			for e := r; e != nil; e = e.Else {
				if e.Location != nil {
					last = max(last, e.Location.Row+strings.Count(string(e.Location.Text), "\n"))
				}
			}
			idx[r.Location.File] = append(idx[r.Location.File], ruleSpan{
				first: r.Location.Row,
				last:  last,
				rule:  RuleTime{Rule: path, File: r.Location.File, Row: r.Location.Row},
			})
		}
	}
	return idx
}

// find returns the rule whose lines hold row; a rule's several bodies are
// reported under the first one's location.
func (idx rulesByFile) find(file string, row int) RuleTime {
	var found RuleTime
	for _, s := range idx[file] {
		if s.first <= row && row <= s.last {
			found = s.rule
			break
		}
	}
	if found.Rule == "" {
		return found
	}
	for _, s := range idx[file] {
		if s.rule.Rule == found.Rule && s.first < found.Row {
			found.Row = s.first
		}
	}
	return found
}
