package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestPolicyBench measures the example requests against the bundled
// library, as text and as JSON, and an author's own policy whose time goes
// to one rule, which the profile must put first.
func TestPolicyBench(t *testing.T) {
	bin := buildGatelog(t)
	reqs := []string{"../../examples/requests/deploy-prod.json", "../../examples/requests/deploy-prod-denied.json"}

	code, out := run(t, bin, nil, append([]string{"policy", "bench", "--time", "100ms", "--profile-runs", "3", "--top", "5"}, reqs...)...)
	expectExit(t, code, out, 0, "(embedded library)", "ns/op", "allocs/op", "top rules by time, deploy-prod.json", "data.gatelog.")
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && strings.HasSuffix(f[0], ".json") {
			rows[f[0]] = f
		}
	}
	for file, verdict := range map[string]string{"deploy-prod.json": "allow", "deploy-prod-denied.json": "deny"} {
		f, ok := rows[file]
		if !ok {
			t.Fatalf("no row for %s:\n%s", file, out)
		}
		if f[1] != verdict {
			t.Errorf("%s: decision %s, want %s", file, f[1], verdict)
		}
		ns, _ := strconv.ParseFloat(f[2], 64)
		allocs, _ := strconv.ParseFloat(f[3], 64)
		if ns <= 0 || allocs < 100 {
			t.Errorf("%s: %s ns/op, %s allocs/op: not a policy evaluation", file, f[2], f[3])
		}
	}

	// An author's policy: --json, and the slow rule ranks first.
	dir := t.TempDir()
	policy := `package gatelog

decision := {"allow": true, "reasons": ["ok"], "alerts": [], "obligations": {}} if {
	slow
}

slow if {
	some i in numbers.range(1, 3000)
	i == 3000
}
`
	if err := os.WriteFile(filepath.Join(dir, "mine.rego"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = run(t, bin, nil, "policy", "bench", "--json", "--time", "50ms", "--profile-runs", "2", "--policies", dir, reqs[0])
	expectExit(t, code, out, 0)
	var got struct {
		Origin   string `json:"origin"`
		Requests []struct {
			File string `json:"file"`
			Cost struct {
				N           int     `json:"n"`
				NsPerOp     float64 `json:"ns_per_op"`
				AllocsPerOp float64 `json:"allocs_per_op"`
				Decision    struct {
					Allow bool `json:"allow"`
				} `json:"decision"`
			} `json:"cost"`
			Rules []struct {
				Rule       string  `json:"rule"`
				File       string  `json:"file"`
				Row        int     `json:"row"`
				EvalsPerOp float64 `json:"evals_per_op"`
			} `json:"top_rules"`
		} `json:"requests"`
	}
	start := regexp.MustCompile(`(?m)^\{`).FindStringIndex(out)
	if start == nil {
		t.Fatalf("no JSON in:\n%s", out)
	}
	if err := json.Unmarshal([]byte(out[start[0]:]), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if !strings.Contains(got.Origin, dir) || len(got.Requests) != 1 {
		t.Fatalf("origin %q, %d requests", got.Origin, len(got.Requests))
	}
	r := got.Requests[0]
	if !r.Cost.Decision.Allow || r.Cost.N < 1 || r.Cost.NsPerOp <= 0 {
		t.Errorf("cost %+v", r.Cost)
	}
	if len(r.Rules) == 0 || r.Rules[0].Rule != "data.gatelog.slow" || r.Rules[0].File != "mine.rego" || r.Rules[0].Row != 7 || r.Rules[0].EvalsPerOp < 3000 {
		t.Errorf("top rules %+v, want data.gatelog.slow (mine.rego:7, ≥ 3000 evaluations) first", r.Rules)
	}

	code, out = run(t, bin, nil, "policy", "bench")
	expectExit(t, code, out, 1, "give at least one request file")
	code, out = run(t, bin, nil, "policy", "bench", "--time", "0s", reqs[0])
	expectExit(t, code, out, 1, "--time must be positive")
}
