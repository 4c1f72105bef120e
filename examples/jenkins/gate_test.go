// Tests for the Jenkins shared library: the request gatelogGate builds and
// the HTTP call it makes (resources/gatelog/decide.sh, run as is with curl).
package jenkins_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/engine/decision"
)

// groovyRequest is the request vars/gatelogGate.groovy builds for
// gatelogGate(action: 'deploy', environment: 'production',
// attributes: [service: 'payments-api']) in a main-branch build started by a
// user, field for field (JsonOutput.toJson of the same maps).
func groovyRequest() map[string]any {
	return map[string]any{
		"action": "deploy",
		"resource": map[string]any{
			"system": "jenkins", "kind": "job", "name": "payments/main", "environment": "production",
			"repository": "https://git.example.com/payments/api.git", "ref": "main",
			"attributes": map[string]any{
				"build_url": "https://jenkins.example.com/job/payments/job/main/57/", "build_number": "57",
				"node": "linux-agent-3", "commit": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d", "service": "payments-api",
			},
		},
		"context": map[string]any{"unverified": map[string]any{
			"causes": []any{map[string]any{"class": "hudson.model.Cause$UserIdCause", "description": "Started by user Alice", "user_id": "alice"}},
		}},
		"source": map[string]any{"adapter": "jenkins-shared-library", "request_id": "jenkins-payments-main-57"},
	}
}

func TestGroovyStepUsesTheTestedScript(t *testing.T) {
	groovy, err := os.ReadFile("vars/gatelogGate.groovy")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"libraryResource('gatelog/decide.sh')",
		"sh .gatelog/decide.sh .gatelog/request.json .gatelog/receipt.json",
		"variable: 'GATELOG_TOKEN'",
		"GATELOG_URL=",
		"status == 2",
		"status != 0",
	} {
		if !strings.Contains(string(groovy), want) {
			t.Errorf("vars/gatelogGate.groovy no longer contains %q", want)
		}
	}
	jf, err := os.ReadFile("Jenkinsfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(jf), "gatelogGate(action: 'deploy', environment: 'production'") {
		t.Error("Jenkinsfile does not call gatelogGate(action: 'deploy', environment: 'production')")
	}
}

// daemon stands in for POST /v1/decide: it checks the call like the daemon
// does (method, bearer token, a request that parses strictly) and answers
// with the given status and receipt.
func daemon(t *testing.T, status int, answer any) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/decide" {
			t.Errorf("%s %s, want POST /v1/decide", r.Method, r.URL.Path)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer oidc.token.value" {
			t.Errorf("Authorization %q", got)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		body, _ := io.ReadAll(r.Body)
		req, err := decision.ParseRequest(body)
		if err != nil {
			t.Errorf("the daemon would reject the request: %v\n%s", err, body)
		}
		if req.Subject.ID != "" {
			t.Errorf("the request claims a subject %q; identity must come from the token", req.Subject.ID)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(answer)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func runDecide(t *testing.T, url string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	reqFile := filepath.Join(dir, "request.json")
	b, err := json.Marshal(groovyRequest())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(reqFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "resources/gatelog/decide.sh", reqFile, filepath.Join(dir, "receipt.json"))
	cmd.Env = append(os.Environ(), "GATELOG_URL="+url, "GATELOG_TOKEN=oidc.token.value", "GATELOG_RETRIES=0", "GATELOG_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func TestDecideScript(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed: the shared library step runs it on the Jenkins agent")
	}
	for _, tc := range []struct {
		name   string
		status int
		answer any
		exit   int
	}{
		{"allow", 200, decision.Receipt{DecisionID: "d-1", Allow: true, Reasons: []string{"deploy window open"}, LogIndex: 9}, 0},
		{"deny", 200, decision.Receipt{DecisionID: "d-2", Allow: false, Reasons: []string{`needs "allow": true from an approver`}, LogIndex: 10}, 2},
		{"log down", 503, map[string]any{"code": 503, "message": "decision not logged, so denied"}, 1},
		{"token refused", 401, map[string]any{"code": 401, "message": "token expired"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := daemon(t, tc.status, tc.answer)
			if code, out := runDecide(t, srv.URL); code != tc.exit {
				t.Errorf("exit %d, want %d:\n%s", code, tc.exit, out)
			}
		})
	}
	// Nobody listening: blocked, not allowed.
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	if code, out := runDecide(t, url); code != 1 {
		t.Errorf("unreachable daemon: exit %d, want 1:\n%s", code, out)
	}
}
