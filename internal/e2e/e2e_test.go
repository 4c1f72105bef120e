package e2e_test

import (
	"encoding/json"
	"net/http"
	"os"
	"testing"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/record/decision"
)

// TestDecideAndVerify: the harness starts the real daemon with its
// defaults, a decision made through /v1/decide is found and verifies, and
// the record read back is the one that was decided.
func TestDecideAndVerify(t *testing.T) {
	d := e2e.Start(t, e2e.Build(t), nil)
	body, err := os.ReadFile(e2e.Path(t, "examples/requests/pipeline-trigger.json"))
	if err != nil {
		t.Fatal(err)
	}
	code, _, raw := d.Post(t, "/v1/decide", body, http.Header{"Authorization": {"Bearer " + d.APIKey}})
	var rc decision.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil || code != http.StatusOK || !rc.Allow {
		t.Fatalf("decide: %d %s", code, raw)
	}
	v := d.Verify(t, rc.DecisionID)
	if v.Record.DecisionID != rc.DecisionID || v.Record.Request.Action != "pipeline.trigger" || !v.Record.Decision.Allow {
		t.Errorf("record read back: %+v", v.Record)
	}
}
