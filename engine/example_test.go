package engine_test

import (
	"context"
	"fmt"
	"testing/fstest"
	"time"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/record/decision"
)

// A policy whose time goes to one loop: Measure gives the cost of a
// decision, Profile names the rule that takes it.
func ExampleEngine_Profile() {
	ctx := context.Background()
	e, err := engine.NewFromSource(ctx, engine.Source{FS: fstest.MapFS{"p.rego": {Data: []byte(`package gatelog

decision := {"allow": true, "reasons": ["known action"], "alerts": [], "obligations": {}} if {
	known_action
}

known_action if {
	some i in numbers.range(1, 500)
	input.action == sprintf("action-%d", [i])
}
`)}}})
	if err != nil {
		panic(err)
	}
	req := decision.Request{Action: "action-500"}
	cost, err := e.Measure(ctx, req, 20*time.Millisecond)
	if err != nil {
		panic(err)
	}
	fmt.Println("allow:", cost.Decision.Allow, "allocations counted:", cost.AllocsPerOp > 0)
	rules, err := e.Profile(ctx, req, 2)
	if err != nil {
		panic(err)
	}
	fmt.Printf("slowest rule: %s (%s:%d), %.0f expression evaluations per decision\n",
		rules[0].Rule, rules[0].File, rules[0].Row, rules[0].EvalsPerOp)
	// Output:
	// allow: true allocations counted: true
	// slowest rule: data.gatelog.known_action (p.rego:7), 1002 expression evaluations per decision
}
