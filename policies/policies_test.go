package policies_test

import (
	"context"
	"io/fs"
	"sort"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/gatelog/gatelog/policies"
)

// minCoverage is the share of each policy file's rules and expressions the
// Rego tests must evaluate.
const minCoverage = 90.0

// loadLibrary loads the embedded library the way `opa test policies/` does:
// every .rego file as a module, data.yaml as data.
func loadLibrary(t *testing.T) *loader.Result {
	t.Helper()
	res, err := loader.NewFileLoader().WithFS(policies.FS()).All([]string{"."})
	if err != nil {
		t.Fatalf("load embedded policies: %v", err)
	}
	if len(res.Modules) == 0 {
		t.Fatal("load embedded policies: no .rego files")
	}
	return res
}

func isTestFile(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// TestRego runs the Rego unit tests with builtin errors raised, as the engine
// evaluates, and checks the coverage of every policy file.
func TestRego(t *testing.T) {
	ctx := context.Background()
	res := loadLibrary(t)
	store, err := res.Store()
	if err != nil {
		t.Fatalf("load data.yaml: %v", err)
	}
	modules := res.ParsedModules()

	txn := storage.NewTransactionOrDie(ctx, store)
	defer store.Abort(ctx, txn)

	cov := cover.New()
	ch, err := tester.NewRunner().
		SetStore(store).
		SetModules(modules).
		RaiseBuiltinErrors(true).
		SetCoverageQueryTracer(cov).
		SetCoverageRuns(nil).
		RunTests(ctx, txn)
	if err != nil {
		t.Fatalf("compile policies and tests: %v", err)
	}

	testsPerFile := map[string]int{}
	passed := 0
	for r := range ch {
		testsPerFile[r.Location.File]++
		switch {
		case r.Error != nil:
			t.Errorf("%s (%s): error: %v", r.Name, r.Location, r.Error)
		case r.Fail:
			t.Errorf("%s (%s): FAIL", r.Name, r.Location)
		case r.Skip:
			t.Errorf("%s (%s): skipped; the library has no unfinished tests", r.Name, r.Location)
		default:
			passed++
		}
	}
	t.Logf("%d Rego tests passed", passed)

	for name := range modules {
		if isTestFile(name) && name != "fixtures_test.rego" && testsPerFile[name] == 0 {
			t.Errorf("%s: no test ran", name)
		}
	}

	report := cov.Report(modules)
	var names []string
	covered, notCovered := 0, 0
	for name, fr := range report.Files {
		if isTestFile(name) {
			continue
		}
		names = append(names, name)
		covered += fr.CoveredLines
		notCovered += fr.NotCoveredLines
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatal("coverage report has no policy files")
	}
	for _, name := range names {
		fr := report.Files[name]
		t.Logf("coverage %s: %.1f%%", name, fr.Coverage)
		if fr.Coverage < minCoverage {
			t.Errorf("coverage of %s is %.1f%%, want at least %.0f%%; lines not covered: %v", name, fr.Coverage, minCoverage, fr.NotCovered)
		}
	}
	total := 100 * float64(covered) / float64(covered+notCovered)
	t.Logf("coverage of policy files: %.1f%%", total)
	if total < minCoverage {
		t.Errorf("coverage of policy files is %.1f%%, want at least %.0f%%", total, minCoverage)
	}
}

// TestStrict compiles the library as `opa check --strict` does: unused
// variables and imports, shadowed keywords and deprecated builtins are errors.
func TestStrict(t *testing.T) {
	modules := loadLibrary(t).ParsedModules()
	c := ast.NewCompiler().
		WithStrict(true).
		WithEnablePrintStatements(true).
		WithUseTypeCheckAnnotations(true)
	if c.Compile(modules); c.Failed() {
		t.Fatalf("strict compile: %v", c.Errors)
	}
	if c.GetRulesExact(ast.MustParseRef("data.gatelog.decision")) == nil {
		t.Fatal("data.gatelog.decision is not defined")
	}
}

// TestFS checks the embedded files are the policy directory's, at its root.
func TestFS(t *testing.T) {
	for _, name := range []string{"data.yaml", "decision.rego", "decision_test.rego"} {
		if _, err := fs.Stat(policies.FS(), name); err != nil {
			t.Errorf("embedded policy files lack %s: %v", name, err)
		}
	}
}
