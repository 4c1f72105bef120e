package tekton

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/gatelog/gatelog/engine/decision"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/adapter/adaptertest"
)

var suite = adaptertest.Suite{
	New:      func() adapter.Adapter { return New() },
	Settings: map[string]string{SettingNamespaceEnvironments: "payments=production, finance=production"},
	Allowed:  allowed,
	Garbage: [][]byte{
		[]byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{"group":"tekton.dev","kind":"PipelineRun"},"operation":"CREATE","userInfo":{"username":"x"},"object":"not an object"}}`),
		[]byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{"group":"tekton.dev","kind":"TaskRun"},"operation":"CREATE","userInfo":{"username":"x"},"object":{"spec":{"params":[{"name":"a","value":{"b":1}}]}}}}`),
		[]byte(`{"body":"not json","context":{"trigger_id":"namespaces/a/triggers/b"}}`),
		[]byte(`{"body":"{\"sender\":{\"login\":7}}","context":{"trigger_id":"x"}}`),
		[]byte(`{"body":"{\"sender\":{\"login\":\"eve\"}}","context":{"trigger_id":"x"},"interceptor_params":{"action":5}}`),
	},
}

// allowed decodes the adapter's answer with the upstream types: an
// AdmissionReview must echo the request's uid, an InterceptorResponse must
// decode strictly.
func allowed(in adapter.Native, resp adapter.Response) (bool, error) {
	var probe struct{ Kind string }
	_ = json.Unmarshal(in.Body, &probe)
	if probe.Kind == "AdmissionReview" {
		var req, ans admissionv1.AdmissionReview
		if err := json.Unmarshal(in.Body, &req); err != nil || req.Request == nil {
			return false, fmt.Errorf("a 200 answer to a payload that is no AdmissionReview")
		}
		if err := strictDecode(resp.Body, &ans); err != nil {
			return false, err
		}
		if ans.APIVersion != "admission.k8s.io/v1" || ans.Kind != "AdmissionReview" || ans.Response == nil {
			return false, fmt.Errorf("not an admission.k8s.io/v1 AdmissionReview response: %s", resp.Body)
		}
		if ans.Response.UID != req.Request.UID {
			return false, fmt.Errorf("response uid %q, request uid %q", ans.Response.UID, req.Request.UID)
		}
		if !ans.Response.Allowed && (ans.Response.Result == nil || ans.Response.Result.Message == "") {
			return false, fmt.Errorf("a denial without status.message")
		}
		return ans.Response.Allowed, nil
	}
	var ans InterceptorResponse
	if err := strictDecode(resp.Body, &ans); err != nil {
		return false, err
	}
	if ans.Continue != (ans.Status.Code == codes.OK) {
		return false, fmt.Errorf("continue %v with status code %v", ans.Continue, ans.Status.Code)
	}
	return ans.Continue, nil
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func TestConformance(t *testing.T) { suite.Run(t) }

func FuzzTranslate(f *testing.F) { suite.Fuzz(f) }

// The fixtures use the field names of the upstream types: every
// AdmissionReview decodes strictly into k8s.io/api/admission/v1, every
// InterceptorRequest into the Triggers type.
func TestFixturesMatchUpstreamTypes(t *testing.T) {
	paths, err := filepath.Glob("testdata/*.payload.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(filepath.Base(p), "interceptor-") {
			var ir InterceptorRequest
			if err := strictDecode(b, &ir); err != nil {
				t.Errorf("%s: %v", p, err)
			}
			continue
		}
		var rev admissionv1.AdmissionReview
		if err := strictDecode(b, &rev); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func render(t *testing.T, fixture string, out adapter.Outcome) adapter.Response {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", fixture+".payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := New().Render(t.Context(), adapter.Native{Body: body}, out)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestAdmissionDenyCarriesReasonsAndDecision(t *testing.T) {
	rc := &decision.Receipt{DecisionID: "d-123", Allow: false, Reasons: []string{"needs approval", "outside window"}, LogIndex: 77, UUID: "abc"}
	resp := render(t, "pipelinerun-create", adapter.Outcome{Receipt: rc})
	if resp.Status != http.StatusOK || resp.Headers.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", resp.Status, resp.Headers.Get("Content-Type"))
	}
	var rev admissionv1.AdmissionReview
	if err := strictDecode(resp.Body, &rev); err != nil {
		t.Fatal(err)
	}
	r := rev.Response
	if r.UID != "0df28fbd-5f5f-4b2c-9b1a-2b5e0a6f1c34" || r.Allowed {
		t.Fatalf("response = %+v", r)
	}
	if r.Result.Code != 403 || r.Result.Reason != "Forbidden" || !strings.Contains(r.Result.Message, "needs approval; outside window") {
		t.Errorf("status = %+v", r.Result)
	}
	if len(r.Warnings) != 1 || r.Warnings[0] != "gatelog.dev/decision: d-123 log-index 77" {
		t.Errorf("warnings = %q", r.Warnings)
	}
	if r.AuditAnnotations["decision-id"] != "d-123" || r.AuditAnnotations["log-index"] != "77" || r.AuditAnnotations["log-entry-uuid"] != "abc" {
		t.Errorf("audit annotations = %v", r.AuditAnnotations)
	}
}

func TestAdmissionAllowHasNoStatus(t *testing.T) {
	rc := &decision.Receipt{DecisionID: "d-9", Allow: true, LogIndex: 3}
	var rev admissionv1.AdmissionReview
	if err := strictDecode(render(t, "taskrun-inline-dryrun", adapter.Outcome{Receipt: rc}).Body, &rev); err != nil {
		t.Fatal(err)
	}
	if !rev.Response.Allowed || rev.Response.Result != nil || rev.Response.Warnings[0] != "gatelog.dev/decision: d-9 log-index 3" {
		t.Errorf("response = %+v", rev.Response)
	}
}

func TestAdmissionFailureStatus(t *testing.T) {
	for _, tc := range []struct {
		kind   adapter.FailureKind
		code   int32
		reason string
	}{
		{adapter.BadRequest, 400, "BadRequest"},
		{adapter.Unauthenticated, 401, "Unauthorized"},
		{adapter.Unavailable, 503, "ServiceUnavailable"},
		{adapter.Internal, 500, "InternalError"},
	} {
		var rev admissionv1.AdmissionReview
		out := adapter.Outcome{Failure: &adapter.Failure{Kind: tc.kind, Message: "log unavailable"}}
		if err := strictDecode(render(t, "pipelinerun-create", out).Body, &rev); err != nil {
			t.Fatal(err)
		}
		r := rev.Response
		if r.Allowed || r.Result.Code != tc.code || string(r.Result.Reason) != tc.reason || r.Result.Message != "gatelog: log unavailable" {
			t.Errorf("%s: response = %+v, status %+v", tc.kind, r, r.Result)
		}
	}
}

func TestInterceptorAnswers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		out      adapter.Outcome
		proceed  bool
		code     codes.Code
		message  string
		decision string
	}{
		{"allow", adapter.Outcome{Receipt: &decision.Receipt{DecisionID: "d-1", Allow: true, LogIndex: 5}}, true, codes.OK, "", "d-1"},
		{"deny", adapter.Outcome{Receipt: &decision.Receipt{DecisionID: "d-2", Reasons: []string{"frozen"}, LogIndex: 6}}, false, codes.PermissionDenied, "gatelog denied: frozen (gatelog.dev/decision: d-2 log-index 6)", "d-2"},
		{"unavailable", adapter.Outcome{Failure: &adapter.Failure{Kind: adapter.Unavailable, Message: "down"}}, false, codes.Unavailable, "gatelog: down", ""},
		{"bad request", adapter.Outcome{Failure: &adapter.Failure{Kind: adapter.BadRequest, Message: "bad"}}, false, codes.InvalidArgument, "gatelog: bad", ""},
	} {
		resp := render(t, "interceptor-github-push", tc.out)
		var ans InterceptorResponse
		if err := strictDecode(resp.Body, &ans); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if resp.Status != http.StatusOK || ans.Continue != tc.proceed || ans.Status.Code != tc.code || ans.Status.Message != tc.message {
			t.Errorf("%s: status %d, answer %+v", tc.name, resp.Status, ans)
		}
		ext, _ := ans.Extensions["gatelog"].(map[string]any)
		if got, _ := ext["decision_id"].(string); got != tc.decision {
			t.Errorf("%s: extensions.gatelog = %v, want decision_id %q", tc.name, ans.Extensions, tc.decision)
		}
	}
}

// An answer to something that is neither an AdmissionReview nor an
// InterceptorRequest is a non-200, which both callers treat as a failure.
func TestUnrecognisedPayloadNeverAllows(t *testing.T) {
	allow := adapter.Outcome{Receipt: &decision.Receipt{DecisionID: "d", Allow: true}}
	resp, err := New().Render(t.Context(), adapter.Native{Body: []byte(`{"hello":"world"}`)}, allow)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status < 400 {
		t.Errorf("status %d, want 4xx", resp.Status)
	}
}

func TestEnvironmentPrecedence(t *testing.T) {
	body, err := os.ReadFile("testdata/pipelinerun-create.payload.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		settings map[string]string
		want     string
	}{
		{nil, "production"}, // the label
		{map[string]string{SettingNamespaceEnvironments: "payments=prod-eu"}, "prod-eu"},
		{map[string]string{SettingEnvironmentLabel: "none"}, ""},
		{map[string]string{SettingEnvironmentLabel: "app.kubernetes.io/part-of"}, "payments"},
	} {
		a := New()
		if err := a.Configure(t.Context(), tc.settings); err != nil {
			t.Fatal(err)
		}
		req, err := a.Translate(t.Context(), adapter.Native{Body: body})
		if err != nil {
			t.Fatal(err)
		}
		if req.Resource.Environment != tc.want {
			t.Errorf("settings %v: environment %q, want %q", tc.settings, req.Resource.Environment, tc.want)
		}
	}
}

func TestConfigureRejectsMalformedSettings(t *testing.T) {
	err := New().Configure(t.Context(), map[string]string{SettingNamespaceEnvironments: "payments"})
	if !errors.Is(err, adapter.ErrBadSettings) || !strings.Contains(err.Error(), "namespace=environment") {
		t.Errorf("Configure = %v", err)
	}
}
