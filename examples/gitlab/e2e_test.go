// End to end: the built gatelog binary, started with this directory's
// adapters.json, webhooks.json (and a token file beside it) and
// policy-data.yaml and the bundled policy library, answers GitLab's
// external pipeline validation requests — built from GitLab's own
// Validate::External payload code and documentation examples, see
// plugins/gitlab/testdata/README.md — with the status GitLab reads (200
// creates the pipeline, 406 rejects it); every decision is in the log and
// verifies offline with the daemon's public keys alone.
package gitlab_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/gitlab"
	"github.com/gatelog/gatelog/plugins/host"
)

const token = "glvt-validation-token-for-tests"

// answer is the 406/200 body: GitLab reads only the status, the body is
// for whoever looks at the call.
type answer struct {
	Allow      bool     `json:"allow"`
	Message    string   `json:"message"`
	Reasons    []string `json:"reasons"`
	Error      string   `json:"error"`
	DecisionID string   `json:"decision_id"`
	LogIndex   *int64   `json:"log_index"`
}

// startGatelog runs `gatelog serve` as the README says, with webhooks.json
// copied beside a fresh token file (it names the file relative to itself)
// and answer_within replaced when within is not "".
func startGatelog(t *testing.T, bin, adaptersJSON, within string) *e2e.Daemon {
	t.Helper()
	dir := t.TempDir()
	raw, err := os.ReadFile("webhooks.json")
	if err != nil {
		t.Fatal(err)
	}
	if within != "" {
		var w map[string]map[string]any
		if err := json.Unmarshal(raw, &w); err != nil {
			t.Fatal(err)
		}
		w["gitlab"]["answer_within"] = within
		if raw, err = json.Marshal(w); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "webhooks.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gitlab-validation-token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e2e.Start(t, bin, nil,
		"--adapters-config", adaptersJSON,
		"--webhooks-config", filepath.Join(dir, "webhooks.json"),
		"--policy-data", e2e.Path(t, "examples/gitlab/policy-data.yaml"))
}

// fixture reads a validation payload from the adapter's testdata, with
// user.username and user.id replaced when user is not "".
func fixture(t *testing.T, name, user string, id int) []byte {
	t.Helper()
	raw, err := os.ReadFile(e2e.Path(t, "plugins/gitlab/testdata/"+name+".payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	if user == "" {
		return raw
	}
	var p map[string]any
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	u := p["user"].(map[string]any)
	u["username"], u["id"], u["email"] = user, id, user+"@acme.example"
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// validate posts the way Validate::External does: the JSON body with no
// content type, X-Gitlab-Correlation-id and X-Gitlab-Token.
func validate(t *testing.T, d *e2e.Daemon, body []byte, tok, correlation string) (int, answer) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.URL+"/v1/adapters/gitlab", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Gitlab-Correlation-id", correlation)
	if tok != "" {
		req.Header.Set(gitlab.TokenHeader, tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var ans answer
	if err := json.Unmarshal(raw, &ans); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, ans
}

func TestExternalPipelineValidation(t *testing.T) {
	bin := e2e.Build(t)
	d := startGatelog(t, bin, e2e.Path(t, "examples/gitlab/adapters.json"), "")
	logIndex := int64(1) // the next decision's log index (0 is the start-up policy record)
	decided := func(t *testing.T, what string, ans answer) e2e.Verified {
		t.Helper()
		if ans.DecisionID == "" || ans.LogIndex == nil || *ans.LogIndex != logIndex {
			t.Fatalf("%s: answer %+v, want a decision at log index %d", what, ans, logIndex)
		}
		logIndex++
		v := d.Verify(t, ans.DecisionID)
		if v.Record.Decision.Allow != ans.Allow || !slices.Equal(v.Record.Decision.Reasons, ans.Reasons) {
			t.Errorf("%s: the log says %+v, GitLab was answered %+v", what, v.Record.Decision, ans)
		}
		sub := v.Record.Request.Subject
		if !sub.Verified || sub.AssertedBy != "webhook:gitlab:gitlab" || !sub.MFA || sub.Claims["mfa_source"] != gitlab.MFASourceInstanceSetting {
			t.Errorf("%s: subject %+v: want vouched for by the instance, MFA from the instance setting", what, sub)
		}
		return v
	}

	// alice, a release manager by policy-data.yaml, pushes to main: the
	// pipeline's deploy_prod job (GitLab's documentation's) is a deploy to
	// production, allowed; GitLab creates the pipeline.
	status, ans := validate(t, d, fixture(t, "deploy-prod-main", "", 0), token, "01JD3K5Q8R2W6Y9Z0A1B2C3D4E")
	if status != http.StatusOK || !ans.Allow {
		t.Fatalf("alice's deploy: %d %+v\n%s", status, ans, d.Log())
	}
	v := decided(t, "alice's deploy", ans)
	req := v.Record.Request
	if req.Action != "deploy" || req.Resource.Environment != "production" || req.Resource.Ref != "refs/heads/main" ||
		req.Resource.Repository != "acme/shop" || req.Subject.ID != "alice" || req.Source.RequestID != "01JD3K5Q8R2W6Y9Z0A1B2C3D4E" {
		t.Errorf("alice's deploy was decided as %+v", req)
	}
	if !slices.Contains(ans.Reasons, `allowed by role "gitlab-release-manager" (subject "alice")`) {
		t.Errorf("alice allowed for %v", ans.Reasons)
	}

	// A wrong or missing token: 406 (GitLab creates the pipeline on a 401)
	// and no decision in the log: the next one takes the next index.
	for name, tok := range map[string]string{"wrong": "glvt-guessed", "missing": ""} {
		status, ans := validate(t, d, fixture(t, "deploy-prod-main", "", 0), tok, "01JD3K5Q8R2W6Y9Z0A1B2C3D4F")
		if status != http.StatusNotAcceptable || ans.Allow || ans.DecisionID != "" || ans.LogIndex != nil || !strings.Contains(ans.Message, gitlab.TokenHeader) {
			t.Errorf("%s token: %d %+v", name, status, ans)
		}
	}

	// mallory, an ordinary developer, pushes the same pipeline: 406 with
	// the policy's reason in the body, the record and the daemon's log.
	status, ans = validate(t, d, fixture(t, "deploy-prod-main", "mallory", 412), token, "01JD3K5Q8R2W6Y9Z0A1B2C3D50")
	want := `no role of subject "mallory" permits action "deploy" on system "gitlab", repository "acme/shop", environment "production", kind "pipeline", name "acme/shop" (roles held: pipeline-runner)`
	if status != http.StatusNotAcceptable || ans.Allow || !slices.Contains(ans.Reasons, want) || !strings.Contains(ans.Message, want) {
		t.Fatalf("mallory's deploy: %d %+v", status, ans)
	}
	decided(t, "mallory's deploy", ans)
	if log := d.Log(); !strings.Contains(log, "gitlab pipeline rejected") || !strings.Contains(log, "01JD3K5Q8R2W6Y9Z0A1B2C3D50") || !strings.Contains(log, "roles held: pipeline-runner") {
		t.Errorf("the daemon's log does not show mallory's rejection and its reason:\n%s", log)
	}

	// bob's pipeline of GitLab's quick-start build and test jobs on main:
	// a trigger, which any authenticated user may do.
	status, ans = validate(t, d, fixture(t, "quickstart-tests", "", 0), token, "01JD3K5Q8R2W6Y9Z0A1B2C3D51")
	if status != http.StatusOK || !ans.Allow {
		t.Fatalf("bob's tests: %d %+v", status, ans)
	}
	if v := decided(t, "bob's tests", ans); v.Record.Request.Action != "pipeline.trigger" || v.Record.Request.Resource.Environment != "" {
		t.Errorf("bob's tests were decided as %+v", v.Record.Request)
	}

	// bob's merge request pipeline of the same project: GitLab lists
	// deploy_prod too (its rules are evaluated later), but the ref is not
	// protected: a trigger, with the deploy job recorded.
	status, ans = validate(t, d, fixture(t, "merge-request-deploy-config", "", 0), token, "01JD3K5Q8R2W6Y9Z0A1B2C3D55")
	if status != http.StatusOK || !ans.Allow {
		t.Fatalf("bob's merge request: %d %+v", status, ans)
	}
	if v := decided(t, "bob's merge request", ans); v.Record.Request.Action != "pipeline.trigger" ||
		v.Record.Request.Resource.Ref != "refs/merge-requests/12/head" ||
		!slices.Equal(v.Record.Request.Resource.Attributes["deploy_jobs"].([]any), []any{"deploy_prod"}) {
		t.Errorf("bob's merge request was decided as %+v", v.Record.Request)
	}

	// carol's pipeline on main whose stages say nothing (GitLab's own
	// external_spec.rb configuration): unknown intent on a protected ref
	// fails closed as a deploy to production, refused for her.
	status, ans = validate(t, d, fixture(t, "spec-unknown-stages", "", 0), token, "01JD3K5Q8R2W6Y9Z0A1B2C3D52")
	if status != http.StatusNotAcceptable || ans.Allow {
		t.Fatalf("carol's unknown pipeline: %d %+v", status, ans)
	}
	if v := decided(t, "carol's unknown pipeline", ans); v.Record.Request.Action != "deploy" || v.Record.Request.Resource.Attributes["intent"] != gitlab.IntentUnknown {
		t.Errorf("carol's pipeline was decided as %+v", v.Record.Request)
	}

	// alice's tag pipeline (GitLab's release_job) on v1.2.0: a deploy from
	// refs/tags/v1.2.0, a protected ref.
	status, ans = validate(t, d, fixture(t, "release-tag", "", 0), token, "01JD3K5Q8R2W6Y9Z0A1B2C3D53")
	if status != http.StatusOK || !ans.Allow {
		t.Fatalf("alice's release: %d %+v", status, ans)
	}
	if v := decided(t, "alice's release", ans); v.Record.Request.Resource.Ref != "refs/tags/v1.2.0" || v.Record.Request.Action != "deploy" {
		t.Errorf("alice's release was decided as %+v", v.Record.Request)
	}

	// A payload that is not a validation request: 406 naming the field,
	// not an accept.
	status, ans = validate(t, d, []byte(`{"project":{"id":1,"path":"acme/shop"}}`), token, "01JD3K5Q8R2W6Y9Z0A1B2C3D54")
	if status != http.StatusNotAcceptable || ans.Allow || !strings.Contains(ans.Message, "user.username") {
		t.Errorf("bad payload: %d %+v", status, ans)
	}

	// Neither the token nor personal data nor script text is in the
	// signed record.
	rec, err := json.Marshal(v.Record)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{token, "alice@acme.example", "10.20.30.40", "Deploy to production server"} {
		if bytes.Contains(rec, []byte(s)) {
			t.Errorf("alice's decision record carries %q", s)
		}
	}
}

// When gatelog cannot decide within answer_within, or its adapter cannot
// run, the answer is 406: GitLab would create the pipeline on a timeout or
// on the host's plain 503.
func TestFailuresReject(t *testing.T) {
	bin := e2e.Build(t)
	t.Run("out of time", func(t *testing.T) {
		d := startGatelog(t, bin, e2e.Path(t, "examples/gitlab/adapters.json"), "1ns")
		status, ans := validate(t, d, fixture(t, "quickstart-tests", "", 0), token, "01JD3K5Q8R2W6Y9Z0A1B2C3D60")
		if status != http.StatusNotAcceptable || ans.Allow {
			t.Errorf("out of time: %d %+v", status, ans)
		}
	})
	t.Run("adapter down", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "adapters.json")
		if err := os.WriteFile(bad, []byte(`[{"Name":"gitlab","Builtin":"gitlab","Settings":{"instance_requires_2fa":"maybe"}}]`), 0o644); err != nil {
			t.Fatal(err)
		}
		d := startGatelog(t, bin, bad, "")
		status, ans := validate(t, d, fixture(t, "quickstart-tests", "", 0), token, "01JD3K5Q8R2W6Y9Z0A1B2C3D61")
		if status != http.StatusNotAcceptable || ans.Allow {
			t.Errorf("adapter down: %d %+v", status, ans)
		}
	})
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

// The example's .gitlab-ci.yml, as GitLab's Validate::External would send
// it (every job: name, stage, image, services, tag_list, before_script +
// script + after_script), is a deploy to production on main under the
// shipped settings.
func TestCIFile(t *testing.T) {
	raw, err := os.ReadFile(".gitlab-ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	var ci yaml.Node
	if err := yaml.Unmarshal(raw, &ci); err != nil {
		t.Fatal(err)
	}
	type job struct {
		Stage       string   `yaml:"stage"`
		Image       string   `yaml:"image"`
		Environment string   `yaml:"environment"`
		Script      []string `yaml:"script"`
	}
	var builds []map[string]any
	var deploy job
	top := ci.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		name := top.Content[i].Value
		if slices.Contains([]string{"stages", "variables", "default", "workflow", "include"}, name) {
			continue
		}
		var j job
		if err := top.Content[i+1].Decode(&j); err != nil {
			t.Fatalf("job %s: %v", name, err)
		}
		if j.Stage == "" {
			j.Stage = "test"
		}
		var image any
		if j.Image != "" {
			image = j.Image
		}
		builds = append(builds, map[string]any{"name": name, "stage": j.Stage, "image": image, "services": nil, "tag_list": nil, "script": j.Script})
		if name == "deploy-production" {
			deploy = j
		}
	}
	if deploy.Environment != "production" {
		t.Fatalf("deploy-production job: %+v", deploy)
	}
	body, err := json.Marshal(map[string]any{
		"project":  map[string]any{"id": 4411, "path": "acme/shop"},
		"user":     map[string]any{"id": 87, "username": "alice"},
		"pipeline": map[string]any{"sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e", "ref": "main", "type": "push"},
		"builds":   builds,
	})
	if err != nil {
		t.Fatal(err)
	}
	a := gitlab.New()
	if err := a.Configure(t.Context(), adapterSettings(t)); err != nil {
		t.Fatal(err)
	}
	req, err := a.Translate(t.Context(), adapter.Native{Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if req.Action != "deploy" || req.Resource.Environment != "production" || !slices.Equal(req.Resource.Attributes["deploy_jobs"].([]any), []any{"deploy-production"}) {
		t.Errorf("the example's pipeline is asked as %s %q, deploy jobs %v", req.Action, req.Resource.Environment, req.Resource.Attributes["deploy_jobs"])
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
