// End to end: a real daemon with the built-in gitlab adapter (a separate
// process, as in production) answers GitLab's external pipeline validation
// with 200 or 406 and logs every decision; the example's CI file and
// instance setting are what the README says.
package gitlab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatelog/gatelog/engine/server"
	"github.com/gatelog/gatelog/plugins/builtin"
	"github.com/gatelog/gatelog/plugins/gitlab"
	"github.com/gatelog/gatelog/plugins/host"
)

// The test binary doubles as the gatelog binary: the daemon starts the
// built-in adapter as `<this executable> adapter serve gitlab`.
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == "adapter" && os.Args[2] == "serve" {
		if err := builtin.Serve(os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const token = "glvt-validation-token-for-tests"

// policy: alice, vouched for by the instance, may ship pipelines that
// deploy to production; anyone GitLab names may run the others.
const policy = `package gatelog

default decision := {"allow": false, "reasons": ["only release managers ship pipelines that deploy to production"]}

decision := {"allow": true, "reasons": ["pipelines without deploys may run"]} if {
	input.action == "pipeline.trigger"
	input.subject.verified
}

decision := {"allow": true, "reasons": ["alice is a release manager; GitLab vouches for her"]} if {
	input.action == "deploy"
	input.resource.environment == "production"
	input.subject.id == "alice"
	input.subject.asserted_by == "webhook:gitlab:gitlab"
}
`

type daemon struct {
	srv  *server.Server
	http *httptest.Server
}

func adapterSettings(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("adapters.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfgs []host.Config
	if err := json.Unmarshal(raw, &cfgs); err != nil || len(cfgs) != 1 || cfgs[0].Builtin != "gitlab" {
		t.Fatalf("adapters.json: %v %+v", err, cfgs)
	}
	return cfgs[0].Settings
}

func startDaemon(t *testing.T, within time.Duration) *daemon {
	t.Helper()
	return startDaemonWith(t, within, adapterSettings(t))
}

func startDaemonWith(t *testing.T, within time.Duration, settings map[string]string) *daemon {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.Open(context.Background(), server.Config{
		DataDir:            t.TempDir(),
		Policies:           fstest.MapFS{"decision.rego": {Data: []byte(policy)}},
		CheckpointInterval: 100 * time.Millisecond,
		Adapters:           []host.Config{{Name: "gitlab", Builtin: "gitlab", Settings: settings}},
		AdapterExecutable:  self,
		Webhooks:           server.Webhooks{GitLab: &server.GitLabWebhook{Token: []byte(token), AnswerWithin: within}},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{srv: srv, http: httptest.NewServer(srv.Handler())}
	t.Cleanup(func() {
		d.http.Close()
		if err := srv.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return d
}

func payload(t *testing.T, fixture, user string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "plugins", "gitlab", "testdata", fixture+".payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	p["user"].(map[string]any)["username"] = user
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type answer struct {
	Allow      bool     `json:"allow"`
	Message    string   `json:"message"`
	Reasons    []string `json:"reasons"`
	DecisionID string   `json:"decision_id"`
	LogIndex   *int64   `json:"log_index"`
}

// validate posts like GitLab's Validate::External: the JSON body, no JSON
// content type, the correlation ID and the token.
func (d *daemon) validate(t *testing.T, body []byte, tok string) (int, answer) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.http.URL+"/v1/adapters/gitlab", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Gitlab-Correlation-Id", "01JD3K5Q8R2W6Y9Z0A1B2C3D4E")
	if tok != "" {
		req.Header.Set(gitlab.TokenHeader, tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var ans answer
	if err := json.Unmarshal(raw, &ans); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, ans
}

func TestExternalPipelineValidation(t *testing.T) {
	d := startDaemon(t, 0)

	// alice's pipeline deploys to production: accepted, and logged.
	status, ans := d.validate(t, payload(t, "push-main-deploys", "alice"), token)
	if status != http.StatusOK || !ans.Allow || ans.LogIndex == nil || *ans.LogIndex != 0 {
		t.Fatalf("alice: %d %+v", status, ans)
	}

	// Wrong or missing token: 406 (GitLab would create the pipeline on a
	// 401), and nothing logged.
	for name, tok := range map[string]string{"wrong": "glvt-guessed", "missing": ""} {
		status, ans := d.validate(t, payload(t, "push-main-deploys", "alice"), tok)
		if status != http.StatusNotAcceptable || ans.Allow || ans.DecisionID != "" || !strings.Contains(ans.Message, "X-Gitlab-Token") {
			t.Errorf("%s token: %d %+v", name, status, ans)
		}
	}

	// mallory's production pipeline: 406 with the reasons; its log index
	// follows alice's directly, so the refused calls logged nothing.
	status, ans = d.validate(t, payload(t, "push-main-deploys", "mallory"), token)
	if status != http.StatusNotAcceptable || ans.Allow || ans.LogIndex == nil || *ans.LogIndex != 1 ||
		!strings.Contains(ans.Message, "only release managers ship pipelines that deploy to production") {
		t.Errorf("mallory: %d %+v (want 406 at log index 1)", status, ans)
	}

	// A merge request pipeline that deploys nowhere is a trigger.
	status, ans = d.validate(t, payload(t, "merge-request-tests", "bob"), token)
	if status != http.StatusOK || !ans.Allow {
		t.Errorf("bob's tests: %d %+v", status, ans)
	}

	// A payload that is not a validation request: 406, not an accept.
	status, ans = d.validate(t, []byte(`{"project":{"path":"acme/shop"}}`), token)
	if status != http.StatusNotAcceptable || !strings.Contains(ans.Message, "user.username") {
		t.Errorf("bad payload: %d %+v", status, ans)
	}
}

// A decision that cannot be made within the budget is a 406 before GitLab
// stops waiting (and would create the pipeline).
func TestAnswerWithinBudget(t *testing.T) {
	d := startDaemon(t, time.Nanosecond)
	status, ans := d.validate(t, payload(t, "push-main-deploys", "alice"), token)
	if status != http.StatusNotAcceptable || ans.Allow {
		t.Errorf("out of time: %d %+v", status, ans)
	}
}

// An adapter that cannot run (settings it refuses) rejects every pipeline:
// GitLab would create it on the host's plain 503.
func TestAdapterDownRejects(t *testing.T) {
	d := startDaemonWith(t, 0, map[string]string{"no_such_setting": "x"})
	status, ans := d.validate(t, payload(t, "push-main-deploys", "alice"), token)
	if status != http.StatusNotAcceptable || ans.Allow {
		t.Errorf("adapter down: %d %+v", status, ans)
	}
}

func TestCIFile(t *testing.T) {
	raw, err := os.ReadFile(".gitlab-ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	var ci map[string]yaml.Node
	if err := yaml.Unmarshal(raw, &ci); err != nil {
		t.Fatal(err)
	}
	node, ok := ci["deploy-production"]
	if !ok {
		t.Fatal("no deploy-production job")
	}
	var deploy struct {
		Stage       string                    `yaml:"stage"`
		Environment string                    `yaml:"environment"`
		IDTokens    map[string]map[string]any `yaml:"id_tokens"`
		Script      []string                  `yaml:"script"`
	}
	if err := node.Decode(&deploy); err != nil || deploy.Environment != "production" {
		t.Fatalf("deploy-production job: %+v %v", deploy, err)
	}
	if deploy.IDTokens["GATELOG_ID_TOKEN"]["aud"] != "gatelog" {
		t.Errorf("id_tokens: %v", deploy.IDTokens)
	}
	if !strings.Contains(strings.Join(deploy.Script, "\n"), "gatelog decide --api-key-file") {
		t.Error("the deploy job does not run gatelog decide with its id token")
	}
	// The adapter maps the job to production, so validation sees a deploy.
	settings := adapterSettings(t)
	if !strings.Contains(settings[gitlab.SettingJobEnvironments], "deploy-production=production") {
		t.Errorf("adapters.json settings %v", settings)
	}
}

// instance-setting.sh sets the three application settings through GitLab's
// API (a stand-in here), with the token read from its file.
func TestInstanceSetting(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed: instance-setting.sh runs it")
	}
	var got url.Values
	var admin string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.URL.Path != "/api/v4/application/settings" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		admin = r.Header.Get("PRIVATE-TOKEN")
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got = r.PostForm
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"external_pipeline_validation_service_timeout":5}`)
	}))
	defer api.Close()
	tokFile := filepath.Join(t.TempDir(), "gitlab-validation-token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "instance-setting.sh")
	cmd.Env = append(os.Environ(), "GITLAB_URL="+api.URL, "GITLAB_ADMIN_TOKEN=glpat-admin", "GATELOG_URL=https://gatelog.acme.example:8443", "VALIDATION_TOKEN_FILE="+tokFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("instance-setting.sh: %v\n%s", err, out)
	}
	if admin != "glpat-admin" ||
		got.Get("external_pipeline_validation_service_url") != "https://gatelog.acme.example:8443/v1/adapters/gitlab" ||
		got.Get("external_pipeline_validation_service_token") != token ||
		got.Get("external_pipeline_validation_service_timeout") != "5" {
		t.Errorf("settings sent: %v (admin token %q)", got, admin)
	}
}
