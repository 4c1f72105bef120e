package policies_test

import (
	"context"
	"fmt"

	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/gatelog/gatelog/policies"
	"github.com/gatelog/gatelog/record/decision"
)

// Evaluate data.gatelog.decision with the bundled library and its default
// configuration: a release manager may deploy to production with MFA, and
// is told why not without it.
func ExampleFS() {
	ctx := context.Background()
	lib, err := loader.NewFileLoader().WithFS(policies.FS()).All([]string{"."})
	if err != nil {
		panic(err)
	}
	store, err := lib.Store()
	if err != nil {
		panic(err)
	}
	opts := []func(*rego.Rego){rego.Query("data.gatelog.decision"), rego.Store(store)}
	for _, m := range lib.ParsedModules() {
		opts = append(opts, rego.ParsedModule(m))
	}
	query, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		panic(err)
	}

	req := decision.Request{
		Subject: decision.Subject{
			ID:       "alice",
			Groups:   []string{"release-managers"},
			AuthTime: "2026-03-04T09:50:00Z",
			Verified: true,
		},
		Action:   "deploy",
		Resource: decision.Resource{System: "github", Environment: "production", Ref: "refs/heads/main"},
		Context:  decision.Context{Time: "2026-03-04T10:00:00Z"},
	}
	for _, mfa := range []bool{true, false} {
		req.Subject.MFA = mfa
		rs, err := query.Eval(ctx, rego.EvalInput(req))
		if err != nil {
			panic(err)
		}
		d := rs[0].Expressions[0].Value.(map[string]any)
		fmt.Printf("mfa %v: allow %v\n", mfa, d["allow"])
		for _, r := range d["reasons"].([]any) {
			fmt.Println("  ", r)
		}
	}
	// Output:
	// mfa true: allow true
	//    allowed by role "release-manager" (group "release-managers")
	// mfa false: allow false
	//    privileged action "deploy" on system "github", environment "production" requires multi-factor authentication, and subject "alice" did not use it (subject.mfa is not true)
}
