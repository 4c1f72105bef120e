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

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/adapter/adaptertest"
	"github.com/gatelog/gatelog/record/decision"
)

var suite = adaptertest.Suite{
	New:      func() adapter.Adapter { return New() },
	Settings: map[string]string{SettingNamespaceEnvironments: "payments=production, finance=production", SettingMFAExtraKey: "gatelog.dev/amr"},
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

func TestConfigureRejectsMalformedSettings(t *testing.T) {
	err := New().Configure(t.Context(), map[string]string{SettingNamespaceEnvironments: "payments"})
	if !errors.Is(err, adapter.ErrBadSettings) || !strings.Contains(err.Error(), "namespace=environment") {
		t.Errorf("Configure = %v", err)
	}
}
