package policy_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/policies"
	"github.com/gatelog/gatelog/record/decision"
)

// jsonPathDecide is how the engine decided before issue #24: the request
// encoded as JSON and parsed into the input, the data converted on every
// read (prepare's store), the result encoded and decoded into a Decision.
func jsonPathDecide(t *testing.T, q rego.PreparedEvalQuery, req decision.Request) decision.Decision {
	t.Helper()
	deny := func(r string) decision.Decision { return decision.Decision{Reasons: []string{r}} }
	b, err := json.Marshal(req)
	if err != nil {
		return deny("request could not be converted for the policy: " + err.Error())
	}
	input, err := ast.ValueFromReader(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := q.Eval(context.Background(), rego.EvalParsedInput(input))
	if err != nil {
		return deny("policy evaluation failed: " + err.Error())
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return deny("policy result is undefined: " + engine.Entrypoint + " produced no value")
	}
	m, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		t.Fatalf("result %T", rs[0].Expressions[0].Value)
	}
	allow, ok := m["allow"].(bool)
	if !ok {
		return deny(`policy result is malformed: "allow" is missing or not a boolean`)
	}
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var d decision.Decision
	if err := json.Unmarshal(b, &d); err != nil {
		return deny("policy result is malformed: " + err.Error())
	}
	d.Allow = allow
	if d.Reasons == nil {
		d.Reasons = []string{}
	}
	if !d.Allow && len(d.Reasons) == 0 {
		d.Reasons = []string{"denied by policy (no reason given)"}
	}
	return d
}

// TestEngineDecidesAsJSONPath holds the engine's direct input and result
// path (and its data kept as AST values) to the JSON round trip it
// replaced: every request of the corpus that the daemon would accept, and
// the example requests, under every configuration of the comparison.
func TestEngineDecidesAsJSONPath(t *testing.T) {
	var reqs []decision.Request
	for _, m := range corpus() {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if req, err := decision.ParseRequest(b); err == nil {
			reqs = append(reqs, req)
		} else if !errors.Is(err, decision.ErrBadRequest) {
			t.Fatal(err)
		}
	}
	for _, in := range exampleRequests(t) {
		b, _ := json.Marshal(in)
		req, err := decision.ParseRequest(b)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, req)
	}
	if len(reqs) < 900 {
		t.Fatalf("only %d requests parse", len(reqs))
	}
	files := map[string]string{
		"none":         "",
		"data.yaml":    filepath.Join("..", "..", "policies", "data.yaml"),
		"acme.yaml":    filepath.Join("..", "..", "examples", "policies", "acme.yaml"),
		"variant.yaml": filepath.Join("testdata", "configs", "variant.yaml"),
		"partial.yaml": filepath.Join("testdata", "configs", "partial.yaml"),
	}
	cfgs := map[string]map[string]any{}
	for _, c := range configs(t) {
		cfgs[c.name] = c.data
	}
	mods := modules(t, policies.FS())
	for name, file := range files {
		t.Run(name, func(t *testing.T) {
			data := map[string][]byte{}
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				data["config.yaml"] = b
			}
			src, err := engine.Embedded(policies.FS()).WithData(data)
			if err != nil {
				t.Fatal(err)
			}
			e, err := engine.NewFromSource(context.Background(), src)
			if err != nil {
				t.Fatal(err)
			}
			q := prepare(t, mods, cfgs[name])
			diffs := 0
			for i, req := range reqs {
				got, _ := e.Decide(context.Background(), req)
				want := jsonPathDecide(t, q, req)
				if !reflect.DeepEqual(got, want) {
					diffs++
					if diffs <= 3 {
						t.Errorf("request %d: engine %+v\nJSON path %+v", i, got, want)
					}
				}
			}
			if diffs > 0 {
				t.Errorf("%d of %d decisions differ", diffs, len(reqs))
			}
			t.Logf("%d requests", len(reqs))
		})
	}
}
