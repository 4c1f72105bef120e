package main_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/record/decision"
)

// TestServePolicyData: `serve --policy-data` runs the bundled library with
// an organisation's configuration instead of its default data.yaml, and
// SIGHUP reads the file again.
func TestServePolicyData(t *testing.T) {
	bin := e2e.Build(t)
	orgData := filepath.Join(t.TempDir(), "org.yaml")
	copyFile(t, e2e.Path(t, "examples/policies/acme.yaml"), orgData)
	d := e2e.Start(t, bin, nil, "--policy-data", orgData)
	body, err := os.ReadFile(e2e.Path(t, "examples/requests/pipeline-trigger.json"))
	if err != nil {
		t.Fatal(err)
	}
	decide := func() decision.Receipt {
		t.Helper()
		code, _, raw := d.Post(t, "/v1/decide", body, http.Header{"Authorization": {"Bearer " + d.APIKey}})
		var rc decision.Receipt
		if err := json.Unmarshal(raw, &rc); err != nil || (code != http.StatusOK && code != http.StatusForbidden) {
			t.Fatalf("decide: %d %s", code, raw)
		}
		return rc
	}
	// Acme grants nothing to mere authentication; the default data lets any
	// authenticated caller trigger pipelines.
	rc := decide()
	if rc.Allow || !strings.Contains(strings.Join(rc.Reasons, "\n"), "roles held: none") {
		t.Fatalf("with acme.yaml: %+v", rc)
	}
	acme := d.Verify(t, rc.DecisionID).Record.Policy

	copyFile(t, e2e.Path(t, "policies/data.yaml"), orgData)
	if err := syscall.Kill(d.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for rc = decide(); !rc.Allow; rc = decide() {
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP with the default data: %+v\n%s", rc, d.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if def := d.Verify(t, rc.DecisionID).Record.Policy; def.SHA256 == acme.SHA256 {
		t.Errorf("the record names the same policy digest %s for both data files", def.SHA256)
	}

	// A data file that cannot be read stops the daemon at start, naming the flag.
	code, out := e2e.Run(t, bin, nil, "serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--policy-data", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 1 || !strings.Contains(out, "--policy-data") {
		t.Errorf("serve with a missing --policy-data file: exit %d: %s", code, out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
