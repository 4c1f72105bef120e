package engine

import (
	"bytes"
	"context"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/gatelog/gatelog/record/decision"
)

// FiredRule is a rule whose body held during an evaluation.
type FiredRule struct {
	// Rule is the rule's reference, e.g. data.gatelog.deny_reasons.
	Rule string
	// File and Row locate the rule.
	File string
	Row  int
	// Times counts how often it fired (once per value of a multi-value rule).
	Times int
}

func (f FiredRule) String() string {
	s := fmt.Sprintf("%s:%d %s", f.File, f.Row, f.Rule)
	if f.Times > 1 {
		s += fmt.Sprintf(" (x%d)", f.Times)
	}
	return s
}

// Explanation says how a decision came about.
type Explanation struct {
	// Fired lists the rules that fired, in the order they first did.
	Fired []FiredRule
	// Trace is OPA's full evaluation trace with locations
	// (topdown.PrettyTraceWithLocation), as `opa eval --explain full`.
	Trace string
}

// Explain evaluates req like Decide while tracing it with OPA's query
// tracer. It is slower than Decide and meant for people, not the hot path.
func (e *Engine) Explain(ctx context.Context, req decision.Request) (decision.Decision, decision.Policy, Explanation) {
	c := e.cur.Load()
	buf := topdown.NewBufferTracer()
	d := evaluate(ctx, c.query, req, rego.EvalQueryTracer(buf))
	return d, c.policy, explain(*buf)
}

func explain(events []*topdown.Event) Explanation {
	var ex Explanation
	seen := map[string]int{}
	for _, ev := range events {
		if ev.Op != topdown.ExitOp {
			continue
		}
		r, ok := ev.Node.(*ast.Rule)
		if !ok || r.Location == nil {
			continue
		}
		name := r.Head.Ref().String()
		if r.Module != nil && r.Module.Package != nil {
			name = r.Module.Package.Path.Extend(r.Head.Ref().GroundPrefix()).String()
			if len(r.Head.Ref()) > len(r.Head.Ref().GroundPrefix()) {
				name = r.Module.Package.Path.Extend(r.Head.Ref()).String()
			}
		}
		key := fmt.Sprintf("%s:%d", r.Location.File, r.Location.Row)
		if i, ok := seen[key]; ok {
			ex.Fired[i].Times++
			continue
		}
		seen[key] = len(ex.Fired)
		ex.Fired = append(ex.Fired, FiredRule{Rule: name, File: r.Location.File, Row: r.Location.Row, Times: 1})
	}
	var b bytes.Buffer
	topdown.PrettyTraceWithLocation(&b, events)
	ex.Trace = b.String()
	return ex
}
