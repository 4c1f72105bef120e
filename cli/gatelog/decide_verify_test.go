package main_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/record/decision"
)

// TestDecideVerifiesBeforeItAllows: with the daemon's keys pinned, `gatelog
// decide` exits 0 only for a receipt that verifies and answers the request
// it sent; whatever else answers on the URL — a forged allow, a real
// receipt of another request, a tampered one — makes it exit 3 (not
// verified).
func TestDecideVerifiesBeforeItAllows(t *testing.T) {
	bin := e2e.Build(t)
	d := e2e.Start(t, bin, nil)
	examples := filepath.Join("..", "..", "examples", "requests")
	env := []string{"GATELOG_API_KEY=" + d.APIKey,
		"GATELOG_LOG_KEY=" + filepath.Join(d.Data, "keys", "log.pub"),
		"GATELOG_SIGNER_KEY=" + filepath.Join(d.Data, "keys", "decision.pub")}

	code, out := e2e.Run(t, bin, env, "decide", "--server", d.URL, "--input", filepath.Join(examples, "deploy-prod.json"))
	if code != 0 || !strings.Contains(out, "ALLOWED") || strings.Contains(out, "not verified") {
		t.Fatalf("decide with pinned keys at the real daemon: exit %d\n%s", code, out)
	}
	// A real, verifiable allow of another request, kept to be replayed.
	other := filepath.Join(t.TempDir(), "other.json")
	if code, out := e2e.Run(t, bin, env, "decide", "--server", d.URL, "--input", filepath.Join(examples, "pipeline-trigger.json"), "--out", other); code != 0 {
		t.Fatalf("decide: exit %d\n%s", code, out)
	}
	otherRaw, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	var flipped decision.Receipt
	_ = json.Unmarshal(otherRaw, &flipped)
	flipped.Reasons = []string{"approved by the security team"}
	flippedRaw, _ := json.Marshal(flipped)

	for _, tc := range []struct{ name, answer, why string }{
		{"forged allow", `{"decision_id":"x","allow":true,"reasons":["ok"],"log_index":1}`, "NOT VERIFIED"},
		{"another request's receipt", string(otherRaw), "answers another request"},
		{"tampered receipt", string(flippedRaw), "NOT VERIFIED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(tc.answer))
			}))
			defer fake.Close()
			code, out := e2e.Run(t, bin, env, "decide", "--server", fake.URL, "--input", filepath.Join(examples, "deploy-prod.json"))
			if code != 3 || !strings.Contains(out, tc.why) {
				t.Errorf("decide at a fake server: exit %d (want 3, %q)\n%s", code, tc.why, out)
			}
		})
	}

	// Without pinned keys they are pinned on first use, with their
	// fingerprints printed, and verified from then on: a fake server on the
	// same URL later is refused.
	pinFile := filepath.Join(t.TempDir(), "known_servers")
	noKeys := []string{"GATELOG_API_KEY=" + d.APIKey, "GATELOG_LOG_KEY=", "GATELOG_SIGNER_KEY=", "GATELOG_PIN_FILE=" + pinFile}
	code, out = e2e.Run(t, bin, noKeys, "decide", "--server", d.URL, "--input", filepath.Join(examples, "pipeline-trigger.json"))
	if code != 0 || !strings.Contains(out, "pinning the keys of "+d.URL) || !strings.Contains(out, "log key         SHA256:") || !strings.Contains(out, "ALLOWED") {
		t.Fatalf("decide, first use: exit %d\n%s", code, out)
	}
	if fi, err := os.Stat(pinFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pin file: %v %v, want mode 0600", fi, err)
	}
	code, out = e2e.Run(t, bin, noKeys, "decide", "--server", d.URL, "--input", filepath.Join(examples, "pipeline-trigger.json"))
	if code != 0 || strings.Contains(out, "pinning") {
		t.Fatalf("decide, second use: exit %d\n%s", code, out)
	}
	// Another daemon (other keys) answering on the pinned URL.
	impostor := e2e.Start(t, bin, nil)
	raw, err := os.ReadFile(pinFile)
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.ReplaceAll(string(raw), d.URL, impostor.URL)
	if err := os.WriteFile(pinFile, []byte(moved), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = e2e.Run(t, bin, []string{"GATELOG_API_KEY=" + impostor.APIKey, "GATELOG_LOG_KEY=", "GATELOG_SIGNER_KEY=", "GATELOG_PIN_FILE=" + pinFile},
		"decide", "--server", impostor.URL, "--input", filepath.Join(examples, "pipeline-trigger.json"))
	if code != 3 || !strings.Contains(out, "NOT VERIFIED") || !strings.Contains(out, "changed since they were pinned") {
		t.Errorf("decide at a daemon whose keys are not the pinned ones: exit %d\n%s", code, out)
	}
}
