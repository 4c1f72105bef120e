package bench_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/bench"
	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/record/decision"
)

// TestPinPoliciesTurnsOffHoursOff decides a production deploy on a Sunday
// night with the bundled policies (an off_hours alert) and with the pinned
// copy (none): the bench's work must not depend on the day it runs.
func TestPinPoliciesTurnsOffHoursOff(t *testing.T) {
	raw, err := os.ReadFile("../examples/requests/deploy-prod.json")
	if err != nil {
		t.Fatal(err)
	}
	req, err := decision.ParseRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	req.Context.Time = "2026-12-06T03:00:00Z" // a Sunday, 03:00 UTC
	pinned, err := bench.PinPolicies("../policies", filepath.Join(t.TempDir(), "policies"))
	if err != nil {
		t.Fatal(err)
	}
	codes := func(dir string) []string {
		t.Helper()
		eng, err := engine.New(context.Background(), os.DirFS(dir))
		if err != nil {
			t.Fatal(err)
		}
		d, _ := eng.Decide(context.Background(), req)
		if !d.Allow {
			t.Fatalf("%s: deploy denied: %v", dir, d.Reasons)
		}
		var out []string
		for _, a := range d.Alerts {
			out = append(out, a.Code)
		}
		return out
	}
	if got := codes("../policies"); strings.Join(got, ",") != "off_hours" {
		t.Fatalf("bundled policies: alerts %v, want [off_hours] (is the test's time still outside the bundled working hours?)", got)
	}
	if got := codes(pinned); len(got) != 0 {
		t.Errorf("pinned policies: alerts %v, want none", got)
	}
	for _, f := range []string{"decision.rego", "alerts.rego"} {
		if _, err := os.Stat(filepath.Join(pinned, f)); err != nil {
			t.Errorf("pinned copy lacks %s: %v", f, err)
		}
	}
}

func TestPinPoliciesRefusesDataWithoutWorkingHours(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "data.yaml"), []byte("gatelog_config:\n  rbac: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := bench.PinPolicies(src, filepath.Join(t.TempDir(), "out")); err == nil || !strings.Contains(err.Error(), "working_hours") {
		t.Fatalf("err = %v, want one naming working_hours", err)
	}
}
