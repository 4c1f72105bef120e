// Package policy_test proves that the bundled policy library decides as it
// did before it was rewritten for speed: the library as it was at the start
// of that work is frozen in testdata/baseline, and every request of a
// generated replay corpus must get the same decision (allow, reasons,
// alerts, obligations) from both, under several configurations.
package policy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/gatelog/gatelog/policies"
)

// baselineDir holds the policy files (no tests, no data) as they were
// before the performance rewrite of issue #24. It is test data: nothing
// ships or loads it but this package.
const baselineDir = "testdata/baseline"

// dataConfig is one data document the library is evaluated with.
type dataConfig struct {
	name string
	data map[string]any
}

// configs returns the configurations of the comparison: the bundled
// defaults, the Acme example, no configuration at all, and the two of
// testdata/configs that flip every switch and mistype some settings.
func configs(t testing.TB) []dataConfig {
	t.Helper()
	out := []dataConfig{{name: "none", data: map[string]any{}}}
	for _, p := range []string{
		filepath.Join("..", "..", "policies", "data.yaml"),
		filepath.Join("..", "..", "examples", "policies", "acme.yaml"),
		filepath.Join("testdata", "configs", "variant.yaml"),
		filepath.Join("testdata", "configs", "partial.yaml"),
	} {
		res, err := loader.NewFileLoader().All([]string{p})
		if err != nil {
			t.Fatalf("load %s: %v", p, err)
		}
		out = append(out, dataConfig{name: filepath.Base(p), data: res.Documents})
	}
	return out
}

// modules loads the Rego modules of fsys, without the Rego tests.
func modules(t testing.TB, fsys fs.FS) map[string]*ast.Module {
	t.Helper()
	res, err := loader.NewFileLoader().WithFS(fsys).Filtered([]string{"."},
		func(_ string, info fs.FileInfo, _ int) bool {
			return !info.IsDir() && (!strings.HasSuffix(info.Name(), ".rego") || strings.HasSuffix(info.Name(), "_test.rego"))
		})
	if err != nil {
		t.Fatalf("load policy modules: %v", err)
	}
	if len(res.Modules) == 0 {
		t.Fatal("no policy modules")
	}
	return res.ParsedModules()
}

// prepare compiles modules with data as the engine does (builtin errors
// are errors) and prepares data.gatelog.decision.
func prepare(t testing.TB, mods map[string]*ast.Module, data map[string]any) rego.PreparedEvalQuery {
	t.Helper()
	opts := []func(*rego.Rego){
		rego.Query("data.gatelog.decision"),
		rego.Store(inmem.NewFromObject(data)),
		rego.StrictBuiltinErrors(true),
	}
	for _, m := range mods {
		opts = append(opts, rego.ParsedModule(m))
	}
	q, err := rego.New(opts...).PrepareForEval(context.Background())
	if err != nil {
		t.Fatalf("prepare data.gatelog.decision: %v", err)
	}
	return q
}

// regoLocation is the file:line an evaluation error starts with; it names
// where in the library the builtin failed, which a rewrite may move.
var regoLocation = regexp.MustCompile(`\S+\.rego:\d+: `)

// evaluate returns the decision as canonical JSON, or the evaluation error
// (the engine's deny reason) without its Rego location.
func evaluate(q rego.PreparedEvalQuery, input any) string {
	rs, err := q.Eval(context.Background(), rego.EvalInput(input))
	if err != nil {
		return "error: " + regoLocation.ReplaceAllString(err.Error(), "")
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return "undefined"
	}
	b, err := json.Marshal(rs[0].Expressions[0].Value)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(b)
}

// exampleRequests returns the request files shipped in examples/, which
// the README and the Acme walkthrough use.
func exampleRequests(t *testing.T) map[string]any {
	t.Helper()
	var files []string
	for _, g := range []string{"../../examples/requests/*.json", "../../examples/policies/requests/*.json"} {
		m, err := filepath.Glob(g)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 20 {
		t.Fatalf("found %d example requests, want the 20 of examples/", len(files))
	}
	out := map[string]any{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = v
	}
	return out
}

// TestSameDecisions evaluates the corpus and the example requests with the
// frozen library and with policies/, under every configuration, and fails
// on any difference in the decision document.
func TestSameDecisions(t *testing.T) {
	baseline := modules(t, os.DirFS(baselineDir))
	current := modules(t, policies.FS())
	reqs := corpus()
	examples := exampleRequests(t)
	for _, cfg := range configs(t) {
		t.Run(cfg.name, func(t *testing.T) {
			old := prepare(t, baseline, cfg.data)
			now := prepare(t, current, cfg.data)
			diffs := 0
			check := func(name string, input any) {
				want, got := evaluate(old, input), evaluate(now, input)
				if want != got {
					diffs++
					if diffs <= 5 {
						in, _ := json.Marshal(input)
						t.Errorf("%s: decision changed\ninput:  %s\nbefore: %s\nafter:  %s", name, in, want, got)
					}
				}
			}
			for i, in := range reqs {
				check("corpus["+strconv.Itoa(i)+"]", in)
			}
			for name, in := range examples {
				check(name, in)
			}
			if diffs > 0 {
				t.Errorf("%d of %d decisions changed", diffs, len(reqs)+len(examples))
			}
		})
	}
}

// ruleOutcomes are the kinds of reason, alert and obligation the bundled
// policies can give. The corpus must reach each of them under some
// configuration, or the comparison would not cover that rule.
var ruleOutcomes = []string{
	`reason:subject is not authenticated: subject.verified is not true`,
	`reason:subject is not authenticated: subject.id is empty`,
	`reason:context.time is missing or not an RFC 3339 time`,
	`reason:may not grant a role to itself`,
	`reason:has never used privileged action`,
	`reason:is only allowed during working hours`,
	`reason:rotate it before privileged action`,
	`reason:expired at`,
	`reason:subject.credential_expires_at is not an RFC 3339 time`,
	`reason:is only allowed from protected refs`,
	`reason:is blocked by freeze window`,
	`reason:has a start or end that is not an RFC 3339 time`,
	`reason:break-glass requires a non-empty context.break_glass_reason`,
	`reason:requires multi-factor authentication`,
	`reason:requires subject.auth_time to check`,
	`reason:requires a login within the last`,
	`reason:no role of subject`,
	`reason:authored change`,
	`reason:approved change`,
	`reason:allowed by role "pipeline-runner" (any authenticated subject)`,
	`reason:allowed by role "release-manager" (group`,
	`reason:allowed by role "tekton-controller" (subject`,
	`reason:allowed by role "dependency-bot" (subject`,
	`reason:allowed by role "reader" (any authenticated subject)`,
	`reason:allowed by break-glass override`,
	`reason:overridden: `,
	`alert:self_grant`,
	`alert:first_privileged_use`,
	`alert:off_hours`,
	`alert:stale_credential`,
	`alert:break_glass`,
	`obligation:post_incident_review`,
	`allow:true`,
	`allow:false`,
}

// TestCorpusCoversEveryRule checks that the corpus reaches every kind of
// outcome with the frozen library, so TestSameDecisions compares them all.
func TestCorpusCoversEveryRule(t *testing.T) {
	baseline := modules(t, os.DirFS(baselineDir))
	seen := map[string]int{}
	reqs := corpus()
	for _, cfg := range configs(t) {
		q := prepare(t, baseline, cfg.data)
		for _, in := range reqs {
			out := evaluate(q, in)
			if strings.HasPrefix(out, "error: ") {
				seen["error"]++
				continue
			}
			var d struct {
				Allow       bool             `json:"allow"`
				Reasons     []string         `json:"reasons"`
				Alerts      []map[string]any `json:"alerts"`
				Obligations map[string]any   `json:"obligations"`
			}
			if err := json.NewDecoder(bytes.NewReader([]byte(out))).Decode(&d); err != nil {
				t.Fatalf("decision %s: %v", out, err)
			}
			seen["allow:"+boolString(d.Allow)]++
			for _, r := range d.Reasons {
				for _, o := range ruleOutcomes {
					if strings.HasPrefix(o, "reason:") && strings.Contains(r, o[len("reason:"):]) {
						seen[o]++
					}
				}
			}
			for _, a := range d.Alerts {
				seen["alert:"+a["code"].(string)]++
			}
			for k := range d.Obligations {
				seen["obligation:"+k]++
			}
		}
	}
	for _, o := range ruleOutcomes {
		if seen[o] == 0 {
			t.Errorf("no request of the corpus gives %q", o)
		}
	}
	var lines []string
	for o, n := range seen {
		lines = append(lines, o+": "+strconv.Itoa(n))
	}
	sort.Strings(lines)
	t.Logf("outcomes over %d requests:\n%s", len(reqs), strings.Join(lines, "\n"))
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
