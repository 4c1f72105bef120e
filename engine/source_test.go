package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/record/decision"
)

func TestRunTests(t *testing.T) {
	ctx := context.Background()
	rep, err := engine.RunTests(ctx, testedPolicy(), engine.TestOptions{Coverage: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total() != 2 || rep.Passed != 2 || !rep.OK() {
		t.Fatalf("report %+v, want 2 passing tests", rep)
	}
	total, files := rep.PolicyCoverage()
	if len(files) != 1 || files[0].File != "decision.rego" || total <= 50 || total > 100 {
		t.Errorf("coverage %.1f%% over %+v, want one policy file (tests excluded) mostly covered", total, files)
	}
	var out bytes.Buffer
	if _, err := rep.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"data.gatelog_test.test_trigger_allowed: PASS", "PASS: 2/2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	failing := testedPolicy()
	failing["more_test.rego"] = &fstest.MapFile{Data: []byte("package gatelog_test\n\nimport data.gatelog\n\ntest_deploy_allowed if {\n\tgatelog.decision.allow with input as {\"action\": \"deploy\"}\n}\n")}
	rep, err = engine.RunTests(ctx, failing, engine.TestOptions{Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Failed != 1 || rep.Passed != 2 {
		t.Fatalf("report %+v, want one failure", rep)
	}
	for _, r := range rep.Results {
		if r.Fail != (len(r.Trace) > 0) {
			t.Errorf("%s: fail=%v but %d trace events; only failures are traced", r.Name, r.Fail, len(r.Trace))
		}
	}
	if !strings.Contains(rep.FailureSummary(), "test_deploy_allowed") {
		t.Errorf("failure summary %q does not name the test", rep.FailureSummary())
	}
	out.Reset()
	if _, err := rep.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "test_deploy_allowed: FAIL") || !strings.Contains(out.String(), "FAIL: 1/3") {
		t.Errorf("output does not report the failure as opa test -v does:\n%s", out.String())
	}

	if _, err := engine.RunTests(ctx, policyFS("package gatelog\n\ndecision := {"), engine.TestOptions{}); !errors.Is(err, engine.ErrPolicy) {
		t.Errorf("broken policy: err %v, want ErrPolicy", err)
	}
}

// Prepare refuses a policy that compiles but whose tests fail; Swap puts a
// prepared policy in force and reports what it replaced.
func TestPrepareAndSwap(t *testing.T) {
	ctx := context.Background()
	e, err := engine.NewFromSource(ctx, engine.Source{FS: testedPolicy(), Revision: "a"})
	if err != nil {
		t.Fatal(err)
	}
	before := e.Policy()
	broken := testedPolicy()
	broken["decision.rego"] = &fstest.MapFile{Data: []byte(strings.Replace(basePolicy, `input.action == "pipeline.trigger"`, `input.action == "pipeline.run"`, 1))}
	if _, err := engine.Prepare(ctx, engine.Source{FS: broken}, true); err == nil || !strings.Contains(err.Error(), "test_trigger_allowed") {
		t.Fatalf("policy failing its tests: err %v, want one naming the failing test", err)
	}
	if _, err := engine.Prepare(ctx, engine.Source{FS: broken}, false); err != nil {
		t.Fatalf("without tests it compiles: %v", err)
	}
	good := testedPolicy()
	good["decision.rego"] = &fstest.MapFile{Data: []byte(strings.Replace(basePolicy, "open to all", "open", 1))}
	p, err := engine.Prepare(ctx, engine.Source{FS: good, Revision: "b"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.Tests == nil || p.Tests.Passed != 2 {
		t.Errorf("prepared tests %+v", p.Tests)
	}
	if old := e.Swap(p); old != before {
		t.Errorf("swap returned %+v, want %+v", old, before)
	}
	if e.Policy() != p.Policy() || e.Policy().Revision != "b" {
		t.Errorf("policy in force %+v, want %+v", e.Policy(), p.Policy())
	}
}

func TestLoadDirSnapshots(t *testing.T) {
	dir := t.TempDir()
	for name, f := range testedPolicy() {
		if err := os.WriteFile(filepath.Join(dir, name), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src, err := engine.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := engine.Digest(os.DirFS(dir))
	// A change after loading does not reach the snapshot.
	if err := os.WriteFile(filepath.Join(dir, "decision.rego"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := engine.Digest(src.FS)
	if err != nil || got != want {
		t.Errorf("snapshot digest %s (%v), want %s", got, err, want)
	}
	if _, err := engine.NewFromSource(context.Background(), src); err != nil {
		t.Errorf("snapshot does not compile: %v", err)
	}
	if _, err := engine.LoadDir(filepath.Join(dir, "decision.rego")); !errors.Is(err, engine.ErrPolicy) {
		t.Errorf("a file as directory: %v", err)
	}
}

func TestWithDataReplacesData(t *testing.T) {
	ctx := context.Background()
	src, err := engine.Source{FS: policyFS(basePolicy), Origin: "test"}.WithData(map[string][]byte{
		"org.yaml": []byte("gatelog_config:\n  freeze: summer\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.NewFromSource(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := e.Decide(ctx, decision.Request{Action: "deploy"}); d.Reasons[0] != "frozen: summer" {
		t.Errorf("data not replaced: %+v", d)
	}
	if _, err := (engine.Source{FS: policyFS(basePolicy)}).WithData(map[string][]byte{"x.rego": nil}); err == nil {
		t.Error("a .rego file was accepted as data")
	}
}

func TestExplainListsFiredRules(t *testing.T) {
	ctx := context.Background()
	e, err := engine.New(ctx, policyFS(basePolicy))
	if err != nil {
		t.Fatal(err)
	}
	req := decision.Request{Action: "pipeline.trigger", Subject: decision.Subject{ID: "a", Verified: true}}
	d, _, ex := e.Explain(ctx, req)
	want, _ := e.Decide(ctx, req)
	if d.Allow != want.Allow || d.Reasons[0] != want.Reasons[0] {
		t.Errorf("Explain decided %+v, Decide %+v", d, want)
	}
	var fired []string
	for _, f := range ex.Fired {
		fired = append(fired, f.String())
	}
	if len(fired) != 1 || fired[0] != "decision.rego:5 data.gatelog.decision" {
		t.Errorf("fired %q, want the allowing decision rule at decision.rego:5", fired)
	}
	if !strings.Contains(ex.Trace, "decision.rego:") || !strings.Contains(ex.Trace, "Exit") {
		t.Errorf("trace lacks locations or events:\n%s", ex.Trace)
	}
}

func ExampleRunTests() {
	rep, err := engine.RunTests(context.Background(), testedPolicy(), engine.TestOptions{Coverage: true})
	if err != nil {
		panic(err)
	}
	cov, _ := rep.PolicyCoverage()
	fmt.Printf("%d/%d passed, coverage %.0f%%\n", rep.Passed, rep.Total(), cov)
	// Output: 2/2 passed, coverage 83%
}
