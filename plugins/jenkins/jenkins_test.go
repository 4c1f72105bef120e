package jenkins

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/adapter/adaptertest"
	"github.com/gatelog/gatelog/record/decision"
)

var suite = adaptertest.Suite{
	New:      func() adapter.Adapter { return New() },
	Settings: map[string]string{SettingJobEnvironments: "infra/=production"},
	Allowed:  allowed,
	Garbage: [][]byte{
		[]byte(`{"JOB_NAME":"a","parameters":"nope"}`),
		[]byte(`{"JOB_NAME":"a","causes":{"userId":"x"}}`),
		[]byte(`{"JOB_NAME":"a","build":{"actions":[{"parameters":[{"name":1}]}]}}`),
		[]byte(`{"JOB_NAME":7}`),
	},
}

// allowed reads the answer the way the shared-library step does: a 2xx
// status and "allow": true.
func allowed(_ adapter.Native, resp adapter.Response) (bool, error) {
	var ans answer
	dec := json.NewDecoder(bytes.NewReader(resp.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ans); err != nil {
		return false, err
	}
	if ans.Allow != (resp.Status == http.StatusOK) {
		return false, fmt.Errorf("allow %v with status %d", ans.Allow, resp.Status)
	}
	return ans.Allow, nil
}

func TestConformance(t *testing.T) { suite.Run(t) }

func FuzzTranslate(f *testing.F) { suite.Fuzz(f) }

func translate(t *testing.T, a *Adapter, fixture string) decision.Request {
	t.Helper()
	body, err := os.ReadFile("testdata/" + fixture + ".payload.json")
	if err != nil {
		t.Fatal(err)
	}
	req, err := a.Translate(t.Context(), adapter.Native{Body: body})
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// Nothing in a build's JSON is identity: the change author and the user in
// a cause are unverified context, and the subject is the job (which the
// daemon replaces with the verified token's subject).
func TestPayloadClaimsAreUnverified(t *testing.T) {
	req := translate(t, New(), "multibranch-pr-change-author")
	if req.Subject.ID != "https://jenkins.example.com/job/storefront/job/PR-318/" || req.Subject.Verified {
		t.Errorf("subject = %+v", req.Subject)
	}
	if req.Context.Change != nil {
		t.Errorf("context.change = %+v: CHANGE_AUTHOR must not look like a verified change author", req.Context.Change)
	}
	if req.Context.Unverified["change_author"] != "mallory" {
		t.Errorf("context.unverified = %v", req.Context.Unverified)
	}
	req = translate(t, New(), "deploy-step-user-cause")
	if req.Subject.ID == "alice" || req.Context.Unverified["triggered_by"] != "alice" {
		t.Errorf("subject %q, unverified %v: the user in a cause is unverified context", req.Subject.ID, req.Context.Unverified)
	}
}

func TestJobEnvironmentsWinOverPayload(t *testing.T) {
	a := New()
	if err := a.Configure(t.Context(), map[string]string{SettingJobEnvironments: "payments/=production-eu, payments/deploy=prod-de"}); err != nil {
		t.Fatal(err)
	}
	if env := translate(t, a, "deploy-step-user-cause").Resource.Environment; env != "prod-de" {
		t.Errorf("environment %q, want the longest prefix's prod-de", env)
	}
	if env := translate(t, a, "multibranch-pr-change-author").Resource.Environment; env != "staging" {
		t.Errorf("environment %q, want the payload's staging when no prefix matches", env)
	}
}

func TestRenderStatuses(t *testing.T) {
	for _, tc := range []struct {
		out    adapter.Outcome
		status int
	}{
		{adapter.Outcome{Receipt: &decision.Receipt{DecisionID: "d", Allow: true}}, 200},
		{adapter.Outcome{Receipt: &decision.Receipt{DecisionID: "d", Reasons: []string{"no"}}}, 403},
		{adapter.Outcome{Failure: &adapter.Failure{Kind: adapter.Unauthenticated, Message: "token expired"}}, 401},
		{adapter.Outcome{Failure: &adapter.Failure{Kind: adapter.Unavailable, Message: "log down"}}, 503},
	} {
		resp, err := New().Render(t.Context(), adapter.Native{}, tc.out)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != tc.status {
			t.Errorf("%+v: status %d, want %d: %s", tc.out, resp.Status, tc.status, resp.Body)
		}
	}
}

func TestConfigureRejectsUnknownSettings(t *testing.T) {
	if err := New().Configure(t.Context(), map[string]string{"token": "x"}); !errors.Is(err, adapter.ErrBadSettings) {
		t.Errorf("Configure = %v", err)
	}
}

// Every way Jenkins reports a branch becomes one full ref.
func TestRefsAreNormalised(t *testing.T) {
	for _, tc := range []struct{ payload, want string }{
		{`{"JOB_NAME":"deploy","GIT_BRANCH":"origin/main"}`, "refs/heads/main"},
		{`{"JOB_NAME":"shop/main","BRANCH_NAME":"main","GIT_BRANCH":"main"}`, "refs/heads/main"},
		{`{"JOB_NAME":"shop/feature%2Fx","BRANCH_NAME":"feature/x"}`, "refs/heads/feature/x"},
		{`{"JOB_NAME":"deploy","GIT_BRANCH":"refs/tags/v1.2.0"}`, "refs/tags/v1.2.0"},
		{`{"build":{"url":"https://ci.example.com/job/deploy/3/","actions":[{"lastBuiltRevision":{"SHA1":"9d3cab8d46e5823fee43a0b6c2f19d5dccfa4c3a","branch":[{"SHA1":"9d3cab8d46e5823fee43a0b6c2f19d5dccfa4c3a","name":"refs/remotes/origin/master"}]},"remoteUrls":["https://git.example.com/deploy.git"]}]}}`, "refs/heads/master"},
		{`{"JOB_NAME":"deploy","GIT_BRANCH":"origin/release","build":{"url":"https://ci.example.com/job/deploy/3/","actions":[{"lastBuiltRevision":{"SHA1":"9d3c","branch":[{"name":"refs/remotes/origin/master"}]}}]}}`, "refs/heads/release"},
		{`{"JOB_NAME":"deploy"}`, ""},
	} {
		req, err := New().Translate(t.Context(), adapter.Native{Body: []byte(tc.payload)})
		if err != nil {
			t.Fatalf("%s: %v", tc.payload, err)
		}
		if req.Resource.Ref != tc.want {
			t.Errorf("%s: ref %q, want %q", tc.payload, req.Resource.Ref, tc.want)
		}
	}
}

// The build REST API object alone (under "build") is a whole payload: the
// job comes from the build's URL, the checkout from the Git plugin's
// BuildData. Fixtures are builds captured from build.opnfv.org and
// jenkins.zowe.org (testdata/README.md).
func TestBuildRESTObjectAlone(t *testing.T) {
	req := translate(t, New(), "rest-api-freestyle-upstream")
	r := req.Resource
	if r.Name != "apex-deploy-virtual-os-onos-nofeature-ha-master" || r.Ref != "refs/heads/master" || r.Repository != "" ||
		r.Attributes["commit"] != "9d3cab8d46e5823fee43a0b6c2f19d5dccfa4c3a" || r.Attributes["build_number"] != "107" || req.Action != "pipeline.trigger" {
		t.Errorf("freestyle build: %+v action %q", r, req.Action)
	}
	if req.Subject.ID != "https://build.opnfv.org/ci/job/apex-deploy-virtual-os-onos-nofeature-ha-master/" {
		t.Errorf("subject %q: the job URL, as the oidc-provider plugin's default sub", req.Subject.ID)
	}
	// Two checkouts (the shared library and the project): no ref is
	// guessed, both are recorded.
	req = translate(t, New(), "rest-api-multibranch-deploy")
	r = req.Resource
	if r.Name != "zowe-docs-site/users/jack/lf-jenkins" || r.Ref != "" || r.Repository != "" || r.Environment != "production" {
		t.Errorf("multibranch build: %+v", r)
	}
	if co, _ := r.Attributes["git_checkouts"].([]any); len(co) != 2 {
		t.Errorf("git_checkouts = %v", r.Attributes["git_checkouts"])
	}
	_, err := New().Translate(t.Context(), adapter.Native{Body: []byte(`{"build":{"number":3,"actions":[]}}`)})
	if !errors.Is(err, adapter.ErrBadPayload) || !strings.Contains(err.Error(), `"build.url"`) {
		t.Errorf("build without url: %v", err)
	}
}

func TestJobOfBuildURL(t *testing.T) {
	for _, tc := range []struct{ url, name, jobURL string }{
		{"https://jenkins.example.com/job/payments/job/deploy/142/", "payments/deploy", "https://jenkins.example.com/job/payments/job/deploy/"},
		{"https://build.opnfv.org/ci/job/apex/107/", "apex", "https://build.opnfv.org/ci/job/apex/"},
		{"https://jenkins.example.com/job/shop/job/feature%252Fx/7/", "shop/feature%2Fx", "https://jenkins.example.com/job/shop/job/feature%252Fx/"},
		{"https://jenkins.example.com/job/a/lastBuild/", "", ""},
		{"https://jenkins.example.com/7/", "", ""},
		{"job/a/7/", "", ""},
	} {
		name, u := jobOfBuildURL(tc.url)
		if name != tc.name || u != tc.jobURL {
			t.Errorf("jobOfBuildURL(%q) = %q, %q; want %q, %q", tc.url, name, u, tc.name, tc.jobURL)
		}
	}
	for in, want := range map[string]string{
		"zowe-docs-site » users/jack/lf-jenkins #5": "zowe-docs-site/users/jack/lf-jenkins",
		"nightly #903": "nightly",
		"#3":           "",
		"a »  » b #1":  "",
	} {
		if got := jobOfDisplayName(in); got != want {
			t.Errorf("jobOfDisplayName(%q) = %q, want %q", in, got, want)
		}
	}
}
