package validation_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/internal/daemontest"
	"github.com/gatelog/gatelog/internal/poll"
	"github.com/gatelog/gatelog/plugins/builtin"
	"github.com/gatelog/gatelog/plugins/gitlab"
	"github.com/gatelog/gatelog/plugins/gitlab/validation"
	"github.com/gatelog/gatelog/plugins/host"
	"github.com/gatelog/gatelog/plugins/webhook"
	"github.com/gatelog/gatelog/policies"
	"github.com/gatelog/gatelog/translog/index"
)

// TestMain serves the built-in gitlab adapter when the daemon's host starts
// this test binary as its adapter process.
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == "adapter" && os.Args[2] == "serve" {
		if err := builtin.Serve(os.Args[3]); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const token = "glvt-test-token"

func openDaemon(t *testing.T) *daemontest.Daemon {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return daemontest.Open(t, daemon.Config{
		Policies:          policies.FS(),
		Adapters:          []host.Config{{Name: "gitlab", Builtin: "gitlab"}},
		AdapterExecutable: self,
		Webhooks:          []webhook.Opener{validation.Opener(validation.Config{Token: []byte(token), AnswerWithin: 10 * time.Second})},
	})
}

// validate posts a captured GitLab external validation request (body and
// headers from plugins/gitlab/testdata) with the given token.
func validate(t *testing.T, d *daemontest.Daemon, name, tok string) *http.Response {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "testdata", name+".payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, d.URL()+"/v1/adapters/gitlab", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(gitlab.TokenHeader, tok)
	req.Header.Set("X-Gitlab-Correlation-Id", "01JD3K5Q8R2W6Y9Z0A1B2C3D4E")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// searchRows reads the audit index through the API.
func searchRows(t *testing.T, d *daemontest.Daemon, query string) []index.Row {
	t.Helper()
	code, raw := d.Get("/v1/audit/search?" + query)
	if code != http.StatusOK {
		t.Fatalf("search: %d %s", code, raw)
	}
	var sr struct {
		Results []index.Row `json:"results"`
	}
	if err := json.Unmarshal(raw, &sr); err != nil {
		t.Fatal(err)
	}
	return sr.Results
}

// The hook answers GitLab in its own terms: a wrong token is a 406 and
// logs nothing; with the instance's token the pipeline is decided by the
// bundled policy through the one record path, the instance recorded as the
// caller vouching for the GitLab user, and the answer is GitLab's: 200 to
// create the pipeline only for an allow, 406 otherwise.
func TestValidation(t *testing.T) {
	d := openDaemon(t)
	if resp := validate(t, d, "deploy-prod-main", "glvt-wrong"); resp.StatusCode != gitlab.StatusRejected {
		t.Errorf("wrong token: %d, want %d", resp.StatusCode, gitlab.StatusRejected)
	}
	resp := validate(t, d, "deploy-prod-main", token)
	if resp.StatusCode != gitlab.StatusAccepted && resp.StatusCode != gitlab.StatusRejected {
		t.Fatalf("answer %d is neither GitLab's accept nor its reject", resp.StatusCode)
	}
	var rows []index.Row
	poll.Until(t, "the decision in the audit index", func() bool {
		rows = searchRows(t, d, "kind=decision")
		return len(rows) > 0
	})
	if len(rows) != 1 {
		t.Fatalf("%d decisions logged, want 1 (the wrong token logs none): %+v", len(rows), rows)
	}
	r := rows[0]
	if r.Caller != "webhook:gitlab:gitlab" || r.Subject != "alice" {
		t.Errorf("decision by caller %q for subject %q, want webhook:gitlab:gitlab for alice", r.Caller, r.Subject)
	}
	if want := r.Allow; (resp.StatusCode == gitlab.StatusAccepted) != want {
		t.Errorf("answered %d for a decision with allow=%v", resp.StatusCode, want)
	}
	if strings.Contains(string(mustBody(t, resp)), token) {
		t.Error("the answer carries the token")
	}
}

func mustBody(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
