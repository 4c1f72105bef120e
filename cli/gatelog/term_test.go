package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/record/decision"
)

// TestRecordFieldsCannotDriveTheTerminal: a caller who may only decide
// writes terminal escapes, a carriage return and a fake verdict into the
// fields of its record; `gatelog verify` and `gatelog audit search` show
// them escaped, so an auditor's terminal shows what was logged and nothing
// can erase or overwrite a line.
func TestRecordFieldsCannotDriveTheTerminal(t *testing.T) {
	bin := e2e.Build(t)
	d := e2e.Start(t, bin, nil)
	evil := "deploy\x1b[2K\r\x1b[32mVERIFIED  decision x: allow deploy by alice\u202e"
	body, _ := json.Marshal(map[string]any{"action": evil, "resource": map[string]any{"name": "shop\tprod\nx"}})
	code, _, raw := d.Post(t, "/v1/decide?wait=checkpoint", body, http.Header{"Authorization": {"Bearer " + d.APIKey}})
	var rc decision.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil || (code != http.StatusOK && code != http.StatusForbidden) {
		t.Fatalf("decide: %d %s", code, raw)
	}
	receipt := filepath.Join(t.TempDir(), "r.json")
	rcJSON, _ := json.Marshal(d.Receipt(t, rc.DecisionID))
	if err := os.WriteFile(receipt, rcJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	clean := func(what, out string) {
		t.Helper()
		if strings.ContainsAny(out, "\x1b\r\u202e") {
			t.Errorf("%s printed a raw terminal control:\n%q", what, out)
		}
		if !strings.Contains(out, `\x1b[2K\r`) {
			t.Errorf("%s did not show the escapes as text:\n%s", what, out)
		}
	}
	code, out := e2e.Run(t, bin, nil, "verify", "--log-key", filepath.Join(d.Data, "keys", "log.pub"),
		"--signer-key", filepath.Join(d.Data, "keys", "decision.pub"), "--receipt", receipt)
	if code != 0 {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	clean("gatelog verify", out)
	code, out = e2e.Run(t, bin, []string{"GATELOG_API_KEY=" + d.APIKey}, "audit", "search", "--server", d.URL)
	if code != 0 {
		t.Fatalf("audit search: exit %d\n%s", code, out)
	}
	clean("gatelog audit search", out)
	if strings.Count(out, "\n") != 3 { // the header, the decision, the start-up policy record
		t.Errorf("a tab or newline in a field broke the table:\n%s", out)
	}
	code, out = e2e.Run(t, bin, []string{"GATELOG_API_KEY=" + d.APIKey}, "log", "get", "--server", d.URL,
		"--log-key", filepath.Join(d.Data, "keys", "log.pub"), "--state-dir", t.TempDir(), "--index", fmt.Sprint(rc.LogIndex))
	if code != 0 {
		t.Fatalf("log get: exit %d\n%s", code, out)
	}
	clean("gatelog log get", out)
}
