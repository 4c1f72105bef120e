package jenkins

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"testing"

	"github.com/gatelog/gatelog/engine/decision"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/adapter/adaptertest"
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
