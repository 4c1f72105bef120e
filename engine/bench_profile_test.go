package engine_test

import (
	"context"
	"os"
	"testing"
	"testing/fstest"
	"time"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/policies"
	"github.com/gatelog/gatelog/record/decision"
)

func exampleRequest(t *testing.T, name string) decision.Request {
	t.Helper()
	raw, err := os.ReadFile("../examples/requests/" + name)
	if err != nil {
		t.Fatal(err)
	}
	req, err := decision.ParseRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestMeasureGivesTheDecisionAndItsCost(t *testing.T) {
	ctx := context.Background()
	e, err := engine.New(ctx, policies.FS())
	if err != nil {
		t.Fatal(err)
	}
	req := exampleRequest(t, "deploy-prod-denied.json")
	want, _ := e.Decide(ctx, req)
	c, err := e.Measure(ctx, req, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if c.N < 2 || c.NsPerOp <= 0 {
		t.Errorf("ran %d times at %.0f ns/op", c.N, c.NsPerOp)
	}
	// The bundled library allocates hundreds of times per decision; a
	// count near zero would mean the loop evaluated nothing.
	if c.AllocsPerOp < 100 || c.BytesPerOp < 1000 {
		t.Errorf("%.0f allocs/op, %.0f B/op: too few for a policy evaluation", c.AllocsPerOp, c.BytesPerOp)
	}
	if c.Decision.Allow != want.Allow || len(c.Decision.Reasons) != len(want.Reasons) || c.Decision.Reasons[0] != want.Reasons[0] {
		t.Errorf("decision %+v, Decide gives %+v", c.Decision, want)
	}
}

func TestProfileRanksRules(t *testing.T) {
	ctx := context.Background()
	// A policy whose time goes to one rule: slow iterates 2,000 values,
	// fast compares one.
	src := engine.Source{FS: fstest.MapFS{"p.rego": {Data: []byte(`package gatelog

decision := {"allow": fast, "reasons": ["r"], "alerts": [], "obligations": {}} if {
	slow
}

slow if {
	some i in numbers.range(1, 2000)
	i > 1999
}

fast := input.action == "deploy"
`)}}}
	e, err := engine.NewFromSource(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := e.Profile(ctx, decision.Request{Action: "deploy"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) < 2 {
		t.Fatalf("rules %+v", rules)
	}
	top := rules[0]
	if top.Rule != "data.gatelog.slow" || top.File != "p.rego" || top.Row != 7 {
		t.Errorf("top rule %+v, want data.gatelog.slow at p.rego:7", top)
	}
	if top.EvalsPerOp < 2000 {
		t.Errorf("slow: %.0f evaluations per decision, want ≥ 2000", top.EvalsPerOp)
	}
	for _, r := range rules[1:] {
		if r.NsPerOp > top.NsPerOp {
			t.Errorf("%+v ranks below %+v", r, top)
		}
	}
	if _, err := e.Profile(ctx, decision.Request{}, 0); err == nil {
		t.Error("Profile with 0 runs: no error")
	}
}
