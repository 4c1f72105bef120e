package main_test

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gatelog/gatelog/internal/poll"
)

// auditPolicy allows deploys, denies the rest, and alerts on production.
const auditPolicy = `package gatelog

default decision := {"allow": false, "reasons": ["no rule allows this action"]}

decision := {"allow": true, "reasons": ["deploys are allowed"], "alerts": [a | some a in alerts]} if {
	input.action == "deploy"
}

alerts contains {"severity": "high", "code": "prod_deploy", "message": "deploy to production"} if {
	input.resource.environment == "production"
}
`

// TestAuditSearchVerifyAlertsAndRebuild runs what docs/auditors.md (Audit
// search) and docs/operators.md (Alerts, The audit index) show, with the real binary: decisions, a
// verified search in three formats, counts, the alert stream and a webhook
// sink, and an offline rebuild of a deleted index giving the same answers.
func TestAuditSearchVerifyAlertsAndRebuild(t *testing.T) {
	bin := buildGatelog(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	pol := filepath.Join(dir, "policies")
	if err := os.MkdirAll(pol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pol, "decision.rego"), []byte(auditPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var hooks []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hooks = append(hooks, string(b))
		mu.Unlock()
	}))
	defer hook.Close()
	alertsCfg := filepath.Join(dir, "alerts.json")
	if err := os.WriteFile(alertsCfg, []byte(`{"sinks":[{"type":"webhook","url":"`+hook.URL+`"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startServe(t, bin, data, "--policies", pol, "--alerts-config", alertsCfg)
	key, err := os.ReadFile(filepath.Join(data, "bootstrap-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"GATELOG_API_KEY=" + strings.TrimSpace(string(key)), "GATELOG_SERVER=http://" + d.Addr}
	for i, req := range []string{
		`{"subject":{"id":"alice"},"action":"deploy","resource":{"environment":"production","repository":"acme/shop"}}`,
		`{"subject":{"id":"alice"},"action":"deploy","resource":{"environment":"staging"}}`,
		`{"subject":{"id":"bob"},"action":"secret.read"}`,
		`{"subject":{"id":"alice"},"action":"deploy","resource":{"environment":"production"}}`,
	} {
		f := filepath.Join(dir, fmt.Sprintf("req%d.json", i))
		if err := os.WriteFile(f, []byte(req), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, out := run(t, bin, env, "decide", "--input", f, "--out", f+".receipt"); code != 0 && code != 2 {
			t.Fatalf("decide: %d %s", code, out)
		}
	}
	keys := []string{"--log-key", filepath.Join(data, "keys/log.pub"), "--signer-key", filepath.Join(data, "keys/decision.pub")}

	code, out := run(t, bin, env, append([]string{"audit", "search", "--subject", "alice", "--action", "deploy", "--since", "7d", "--verify"}, keys...)...)
	if code != 0 || strings.Count(out, "verified ") != 3 || strings.Contains(out, "NOT VERIFIED") {
		t.Fatalf("audit search --verify: %d\n%s", code, out)
	}
	if !strings.Contains(out, "acme/shop production") || !strings.Contains(out, "prod_deploy") {
		t.Errorf("table lacks the resource or the alert:\n%s", out)
	}

	code, out = run(t, bin, env, append([]string{"audit", "search", "--outcome", "deny", "--csv", "--verify"}, keys...)...)
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(recs) != 2 || recs[1][4] != "bob" || recs[1][len(recs[1])-2] != "true" {
		t.Fatalf("audit search --csv: %d %v\n%s", code, err, out)
	}

	code, out = run(t, bin, env, "audit", "search", "--alert", "prod_deploy", "--json")
	var rows []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 2 || rows[0]["log_index"] != 4.0 { // entry 0: the start-up policy record
		t.Fatalf("audit search --json: %d\n%s", code, out)
	}
	before := out

	code, out = run(t, bin, env, "audit", "counts", "--by", "subject", "--kind", "decision")
	if code != 0 || !strings.Contains(out, "alice    3      3        0") || !strings.Contains(out, "bob      1      0        1") {
		t.Errorf("audit counts:\n%s", out)
	}

	code, out = run(t, bin, env, "alerts", "tail", "--recent", "10", "--count", "2")
	if code != 0 || strings.Count(out, "prod_deploy") != 2 || !strings.Contains(out, "log index 4") {
		t.Errorf("alerts tail: %d\n%s", code, out)
	}
	poll.Until(t, "the webhook receives both alerts", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(hooks) == 2
	})

	if code, out := run(t, bin, env, "audit", "search", "--since", "last tuesday"); code != 1 || !strings.Contains(out, "since") {
		t.Errorf("bad --since: %d %s", code, out)
	}

	// The index is derived data: delete it, rebuild it offline, same answers.
	d.Stop(t)
	for _, f := range []string{"index.db", "index.db-wal", "index.db-shm"} {
		_ = os.Remove(filepath.Join(data, f))
	}
	code, out = run(t, bin, env, "index", "rebuild", "--data", data)
	if code != 0 || !strings.Contains(out, ": 5 entries") {
		t.Fatalf("index rebuild: %d %s", code, out)
	}
	d = startServe(t, bin, data, "--policies", pol, "--alerts-config", alertsCfg)
	env[1] = "GATELOG_SERVER=http://" + d.Addr
	if code, out := run(t, bin, env, "audit", "search", "--alert", "prod_deploy", "--json"); code != 0 || out != before {
		t.Errorf("after rebuild: %d\n%s\nwant\n%s", code, out, before)
	}
	if code, out := run(t, bin, env, "index", "rebuild", "--server", "http://"+d.Addr); code != 0 || !strings.Contains(out, "5 entries") {
		t.Errorf("online rebuild: %d %s", code, out)
	}
	d.Stop(t)
	mu.Lock()
	defer mu.Unlock()
	if len(hooks) != 2 {
		t.Errorf("webhook got %d deliveries after restarts, want exactly 2", len(hooks))
	}
}
