package policies_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/gatelog/gatelog/policies"
	"github.com/gatelog/gatelog/record/decision"
)

// prepareDecision compiles the library's Rego modules with the given data
// documents, as the engine does (builtin errors are errors), and prepares
// the query on data.gatelog.decision.
func prepareDecision(t *testing.T, data map[string]any) rego.PreparedEvalQuery {
	t.Helper()
	mods, err := loader.NewFileLoader().WithFS(policies.FS()).Filtered([]string{"."},
		func(_ string, info fs.FileInfo, _ int) bool {
			return !info.IsDir() && !strings.HasSuffix(info.Name(), ".rego")
		})
	if err != nil {
		t.Fatalf("load policy modules: %v", err)
	}
	opts := []func(*rego.Rego){
		rego.Query("data.gatelog.decision"),
		rego.Store(inmem.NewFromObject(data)),
		rego.StrictBuiltinErrors(true),
	}
	for _, m := range mods.ParsedModules() {
		opts = append(opts, rego.ParsedModule(m))
	}
	q, err := rego.New(opts...).PrepareForEval(context.Background())
	if err != nil {
		t.Fatalf("prepare data.gatelog.decision: %v", err)
	}
	return q
}

// loadData loads one JSON or YAML data file as data documents.
func loadData(t *testing.T, path string) map[string]any {
	t.Helper()
	res, err := loader.NewFileLoader().All([]string{path})
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return res.Documents
}

// decide reads a request file strictly, as the daemon does, and evaluates it.
func decide(t *testing.T, q rego.PreparedEvalQuery, path string) decision.Decision {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	req, err := decision.ParseRequest(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if req.Context.Time == "" {
		t.Fatalf("%s: context.time must be set so the example is deterministic", path)
	}
	rs, err := q.Eval(context.Background(), rego.EvalInput(req))
	if err != nil {
		t.Fatalf("%s: evaluate: %v", path, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("%s: data.gatelog.decision is undefined", path)
	}
	b, err := json.Marshal(rs[0].Expressions[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	var d decision.Decision
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: decision %s does not have the Decision shape: %v", path, b, err)
	}
	if len(d.Reasons) == 0 {
		t.Errorf("%s: decision has no reasons", path)
	}
	return d
}

func hasReason(d decision.Decision, text string) bool {
	return slices.ContainsFunc(d.Reasons, func(r string) bool { return strings.Contains(r, text) })
}

func alertCodes(d decision.Decision) []string {
	codes := []string{}
	for _, a := range d.Alerts {
		codes = append(codes, a.Code)
	}
	sort.Strings(codes)
	return codes
}

// TestExampleRequests checks the requests of the README's walk-through against
// the default configuration in policies/data.yaml.
func TestExampleRequests(t *testing.T) {
	q := prepareDecision(t, loadData(t, "data.yaml"))
	for _, tc := range []struct {
		file   string
		allow  bool
		reason string
	}{
		{"deploy-prod.json", true, `allowed by role "release-manager" (group "release-managers")`},
		{"deploy-prod-denied.json", false, `privileged action "deploy" on system "github", repository "acme/shop", environment "production"`},
		{"deploy-prod-denied.json", false, `requires multi-factor authentication`},
		{"pipeline-trigger.json", true, `allowed by role "pipeline-runner" (any authenticated subject)`},
	} {
		d := decide(t, q, filepath.Join("..", "examples", "requests", tc.file))
		if d.Allow != tc.allow || !hasReason(d, tc.reason) {
			t.Errorf("%s: got allow %v, reasons %q; want allow %v with a reason containing %q", tc.file, d.Allow, d.Reasons, tc.allow, tc.reason)
		}
		if len(d.Alerts) != 0 {
			t.Errorf("%s: unexpected alerts %v", tc.file, d.Alerts)
		}
	}
}

// expectation is one entry of examples/policies/expected.json.
type expectation struct {
	Allow  bool     `json:"allow"`
	Reason string   `json:"reason"`
	Alerts []string `json:"alerts"`
}

// TestExampleOrganisation evaluates every request of the Acme example
// against its configuration and checks the documented outcome.
func TestExampleOrganisation(t *testing.T) {
	dir := filepath.Join("..", "examples", "policies")
	q := prepareDecision(t, loadData(t, filepath.Join(dir, "acme.yaml")))

	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]expectation
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&want); err != nil {
		t.Fatalf("expected.json: %v", err)
	}

	files, err := filepath.Glob(filepath.Join(dir, "requests", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("%d request files but %d expectations: every request needs one", len(files), len(want))
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			exp, ok := want[name]
			if !ok {
				t.Fatalf("expected.json has no entry for %s", name)
			}
			d := decide(t, q, path)
			if d.Allow != exp.Allow {
				t.Errorf("allow = %v, want %v; reasons %q", d.Allow, exp.Allow, d.Reasons)
			}
			if !hasReason(d, exp.Reason) {
				t.Errorf("no reason contains %q; reasons %q", exp.Reason, d.Reasons)
			}
			wantAlerts := slices.Clone(exp.Alerts)
			sort.Strings(wantAlerts)
			if got := alertCodes(d); !slices.Equal(got, wantAlerts) {
				t.Errorf("alerts = %v, want %v", got, wantAlerts)
			}
		})
	}
}
