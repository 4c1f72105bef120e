package tekton

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/record/decision"
)

func payload(t *testing.T, fixture string) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", fixture+".payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// configured is an adapter with the settings of examples/tekton/adapters.json.
func configured(t *testing.T) *Adapter {
	t.Helper()
	a := New()
	if err := a.Configure(t.Context(), suite.Settings); err != nil {
		t.Fatal(err)
	}
	return a
}

// What each upstream example means to a policy.
func TestAdmissionTranslate(t *testing.T) {
	const catalog = "https://github.com/tektoncd/catalog.git"
	for _, tc := range []struct {
		fixture, action, env, repo, ref, refKey, refName string
		mfa, dryRun                                      bool
	}{
		{"pipelinerun-git-resolver", ActionPipelineTrigger, "", catalog, "refs/heads/main", "pipeline", "pipeline/buildpacks/0.2/buildpacks.yaml", false, false},
		{"pipelinerun-git-resolver-production-developer", ActionDeploy, "production", catalog, "refs/heads/main", "pipeline", "pipeline/buildpacks/0.2/buildpacks.yaml", false, false},
		{"pipelinerun-git-resolver-production", ActionDeploy, "production", catalog, "refs/heads/main", "pipeline", "pipeline/buildpacks/0.2/buildpacks.yaml", true, false},
		{"pipelinerun-git-resolver-production-dryrun", ActionDeploy, "production", catalog, "refs/heads/main", "pipeline", "pipeline/buildpacks/0.2/buildpacks.yaml", false, true},
		{"taskrun-controller-fetch-from-git", ActionStepRun, "production", "", "", "task", "git-clone", false, false},
		{"taskrun-forged-controller-labels", ActionDeploy, "production", "", "", "task", "git-clone", false, false},
		{"pipelinerun-hub-resolver", ActionPipelineTrigger, "", "", "", "pipeline", "buildpacks", false, false},
		{"pipelinerun-cluster-resolver", ActionPipelineTrigger, "", "", "", "pipeline", "some-pipeline", false, false},
		{"taskrun-bundles-resolver", ActionStepRun, "", "ghcr.io/tektoncd/catalog/upstream/tasks/git-clone@sha256:65e61544c5870c8828233406689d812391735fd4100cb444bbd81531cb958bb3",
			"sha256:65e61544c5870c8828233406689d812391735fd4100cb444bbd81531cb958bb3", "task", "git-clone", false, false},
		{"taskrun-git-resolver", ActionStepRun, "", catalog, "refs/heads/main", "task", "task/git-clone/0.10/git-clone.yaml", false, false},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			req, err := configured(t).Translate(t.Context(), adapter.Native{Body: payload(t, tc.fixture)})
			if err != nil {
				t.Fatal(err)
			}
			r := req.Resource
			if req.Action != tc.action || r.Environment != tc.env || r.Repository != tc.repo || r.Ref != tc.ref ||
				r.Attributes[tc.refKey] != tc.refName || req.Subject.MFA != tc.mfa || req.Context.DryRun != tc.dryRun {
				t.Errorf("action %q env %q repository %q ref %q %s %v mfa %v dry run %v",
					req.Action, r.Environment, r.Repository, r.Ref, tc.refKey, r.Attributes[tc.refKey], req.Subject.MFA, req.Context.DryRun)
			}
			if tc.mfa && req.Subject.Claims["mfa_source"] != "k8s-userinfo-extra:gatelog.dev/amr" {
				t.Errorf("mfa without its source: claims %v", req.Subject.Claims)
			}
		})
	}
}

// Only the controller's authenticated username makes an owned TaskRun a
// step of its PipelineRun; the owner reference and labels alone do not.
func TestControllerIsKnownByUsernameOnly(t *testing.T) {
	body := payload(t, "taskrun-controller-fetch-from-git")
	for _, tc := range []struct {
		settings map[string]string
		want     string
	}{
		{nil, ActionStepRun},
		{map[string]string{SettingControllerUsername: "system:serviceaccount:openshift-pipelines:pipelines-controller"}, ActionDeploy},
	} {
		a := New()
		settings := map[string]string{SettingNamespaceEnvironments: "payments=production"}
		for k, v := range tc.settings {
			settings[k] = v
		}
		if err := a.Configure(t.Context(), settings); err != nil {
			t.Fatal(err)
		}
		req, err := a.Translate(t.Context(), adapter.Native{Body: body})
		if err != nil {
			t.Fatal(err)
		}
		if req.Action != tc.want {
			t.Errorf("settings %v: action %q, want %q", tc.settings, req.Action, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		edit func(review, owner map[string]any)
		want string
	}{
		// A child PipelineRun (pipelines in pipelines) is a step too.
		{"child PipelineRun", func(review, _ map[string]any) {
			review["kind"].(map[string]any)["kind"] = "PipelineRun"
		}, ActionStepRun},
		// Without a controlling PipelineRun it is not a step, even from the
		// controller.
		{"owner is not the controller", func(_, owner map[string]any) { owner["controller"] = false }, ActionDeploy},
		{"owner is not a PipelineRun", func(_, owner map[string]any) { owner["kind"] = "Deployment" }, ActionDeploy},
		{"owner is not Tekton's", func(_, owner map[string]any) { owner["apiVersion"] = "example.com/v1" }, ActionDeploy},
	} {
		var rev map[string]any
		if err := json.Unmarshal(body, &rev); err != nil {
			t.Fatal(err)
		}
		review := rev["request"].(map[string]any)
		meta := review["object"].(map[string]any)["metadata"].(map[string]any)
		tc.edit(review, meta["ownerReferences"].([]any)[0].(map[string]any))
		edited, _ := json.Marshal(rev)
		req, err := configured(t).Translate(t.Context(), adapter.Native{Body: edited})
		if err != nil {
			t.Fatal(err)
		}
		if req.Action != tc.want {
			t.Errorf("%s: action %q, want %q", tc.name, req.Action, tc.want)
		}
	}
}

func decodeReview(t *testing.T, resp adapter.Response) *admissionv1.AdmissionResponse {
	t.Helper()
	if resp.Status != http.StatusOK || resp.Headers.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", resp.Status, resp.Headers.Get("Content-Type"))
	}
	var rev admissionv1.AdmissionReview
	if err := strictDecode(resp.Body, &rev); err != nil {
		t.Fatal(err)
	}
	if rev.APIVersion != "admission.k8s.io/v1" || rev.Kind != "AdmissionReview" || rev.Response == nil {
		t.Fatalf("not an AdmissionReview answer: %s", resp.Body)
	}
	return rev.Response
}

// applyPatch applies a JSONPatch to the object of a fixture with OPA's
// json.patch (an RFC 6902 implementation that is not ours).
func applyPatch(t *testing.T, fixture string, patch []byte) map[string]any {
	t.Helper()
	var rev struct {
		Request struct {
			Object any `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(payload(t, fixture), &rev); err != nil {
		t.Fatal(err)
	}
	var ops any
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatalf("patch %s: %v", patch, err)
	}
	rs, err := rego.New(rego.Query("x := json.patch(input.object, input.patch)"),
		rego.Input(map[string]any{"object": rev.Request.Object, "patch": ops}), rego.StrictBuiltinErrors(true)).Eval(t.Context())
	if err != nil || len(rs) != 1 {
		t.Fatalf("json.patch: %v %v", rs, err)
	}
	return rs[0].Bindings["x"].(map[string]any)
}

// An allow carries a JSONPatch that stamps the decision onto the run
// (whatever annotations were there: none on a user's PipelineRun, the
// PipelineRun's copied stamps on the controller's TaskRun), so Tekton
// Chains finds it in the run's annotations.
func TestAdmissionAllowStampsDecision(t *testing.T) {
	rc := &decision.Receipt{DecisionID: "0193b5c6-d7e8-7f90-8a1b-2c3d4e5f6a7b", Allow: true, LogIndex: 1234, UUID: "1e2d3c4b5a697887aabbccddeeff00112233445566778899aabbccddeeff0011223344556677"}
	for _, fixture := range []string{"pipelinerun-git-resolver-production", "taskrun-controller-fetch-from-git"} {
		t.Run(fixture, func(t *testing.T) {
			r := decodeReview(t, render(t, fixture, adapter.Outcome{Receipt: rc}))
			if !r.Allowed || r.Result != nil || r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("response = %+v", r)
			}
			if len(r.Warnings) != 1 || r.Warnings[0] != "gatelog.dev/decision: 0193b5c6-d7e8-7f90-8a1b-2c3d4e5f6a7b log-index 1234" {
				t.Errorf("warnings %q", r.Warnings)
			}
			if r.AuditAnnotations["decision-id"] != rc.DecisionID || r.AuditAnnotations["log-index"] != "1234" || r.AuditAnnotations["log-entry-uuid"] != rc.UUID {
				t.Errorf("audit annotations %v", r.AuditAnnotations)
			}
			obj := applyPatch(t, fixture, r.Patch)
			ann := obj["metadata"].(map[string]any)["annotations"].(map[string]any)
			if ann[AnnotationDecisionID] != rc.DecisionID || ann[AnnotationLogIndex] != "1234" || ann[AnnotationLogEntryUUID] != rc.UUID {
				t.Errorf("annotations after the patch: %v", ann)
			}
			if fixture == "taskrun-controller-fetch-from-git" && ann["tekton.dev/displayName"] != "Buildpacks" {
				t.Errorf("the patch dropped the run's other annotations: %v", ann)
			}
		})
	}
}

func TestAdmissionDenyCarriesReasonsAndDecision(t *testing.T) {
	rc := &decision.Receipt{DecisionID: "d-123", Allow: false, Reasons: []string{"needs approval", "outside window"}, LogIndex: 77, UUID: "abc"}
	r := decodeReview(t, render(t, "pipelinerun-git-resolver-production-developer", adapter.Outcome{Receipt: rc}))
	if r.Allowed || r.Patch != nil || r.PatchType != nil {
		t.Fatalf("response = %+v", r)
	}
	if r.Result.Code != 403 || r.Result.Reason != "Forbidden" || r.Result.Message != "gatelog denied: needs approval; outside window (gatelog.dev/decision: d-123 log-index 77)" {
		t.Errorf("status = %+v", r.Result)
	}
	if r.AuditAnnotations["decision-id"] != "d-123" || r.AuditAnnotations["log-index"] != "77" || r.AuditAnnotations["log-entry-uuid"] != "abc" {
		t.Errorf("audit annotations = %v", r.AuditAnnotations)
	}
}

// A dry run's answer says it was not logged and carries nothing that
// looks like a receipt, whatever the outcome holds.
func TestAdmissionDryRun(t *testing.T) {
	for _, tc := range []struct {
		rc      *decision.Receipt
		warning string
		message string
	}{
		{&decision.Receipt{Allow: true, LogIndex: -1}, "gatelog: dry run: would be allowed; not logged", ""},
		{&decision.Receipt{Reasons: []string{"no role"}, LogIndex: -1}, "gatelog: dry run: would be denied; not logged", "gatelog denied: no role (dry run: not logged)"},
		{&decision.Receipt{DecisionID: "must-not-appear", Allow: true, LogIndex: 9}, "gatelog: dry run: would be allowed; not logged", ""},
	} {
		resp := render(t, "pipelinerun-git-resolver-production-dryrun", adapter.Outcome{Receipt: tc.rc})
		r := decodeReview(t, resp)
		if r.Allowed != tc.rc.Allow || r.Patch != nil || len(r.AuditAnnotations) != 0 || len(r.Warnings) != 1 || r.Warnings[0] != tc.warning {
			t.Errorf("response = %+v", r)
		}
		if tc.message != "" && (r.Result == nil || r.Result.Code != 403 || r.Result.Message != tc.message) {
			t.Errorf("status = %+v", r.Result)
		}
		if strings.Contains(string(resp.Body), "must-not-appear") {
			t.Errorf("a dry run answer carries a decision id: %s", resp.Body)
		}
	}
}

// An allow without a decision id (nothing logged) never lets a real
// create through.
func TestAdmissionAllowWithoutDecisionIDIsDenied(t *testing.T) {
	r := decodeReview(t, render(t, "pipelinerun-git-resolver", adapter.Outcome{Receipt: &decision.Receipt{Allow: true, LogIndex: -1}}))
	if r.Allowed || r.Patch != nil || r.Result == nil || r.Result.Code != 500 {
		t.Errorf("response = %+v", r)
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
		out := adapter.Outcome{Failure: &adapter.Failure{Kind: tc.kind, Message: "log unavailable"}}
		r := decodeReview(t, render(t, "pipelinerun-git-resolver", out))
		if r.Allowed || r.Patch != nil || r.Result.Code != tc.code || string(r.Result.Reason) != tc.reason || r.Result.Message != "gatelog: log unavailable" {
			t.Errorf("%s: response = %+v, status %+v", tc.kind, r, r.Result)
		}
	}
}

// The namespace wins over the label and the param: it is the one thing the
// creator of a run cannot choose freely.
func TestEnvironmentPrecedence(t *testing.T) {
	var rev map[string]any
	if err := json.Unmarshal(payload(t, "pipelinerun-git-resolver-production-developer"), &rev); err != nil {
		t.Fatal(err)
	}
	obj := rev["request"].(map[string]any)["object"].(map[string]any)
	obj["metadata"].(map[string]any)["labels"] = map[string]any{"gatelog.dev/environment": "staging", "app.kubernetes.io/part-of": "payments"}
	spec := obj["spec"].(map[string]any)
	spec["params"] = append(spec["params"].([]any), map[string]any{"name": "environment", "value": "dev"})
	body, _ := json.Marshal(rev)
	for _, tc := range []struct {
		settings map[string]string
		want     string
	}{
		{map[string]string{SettingNamespaceEnvironments: "payments=production"}, "production"},
		{nil, "staging"}, // the label
		{map[string]string{SettingEnvironmentLabel: "none"}, "dev"},
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

// Whatever the API server sends, rendering an allow never panics, and an
// answer that admits a real (not dry-run) create always carries a patch
// that stamps the decision id.
func FuzzRenderAdmissionAllow(f *testing.F) {
	paths, err := filepath.Glob("testdata/*.payload.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	a := New()
	rc := &decision.Receipt{DecisionID: "d-fuzz", Allow: true, LogIndex: 1, UUID: "u-fuzz"}
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := a.Render(t.Context(), adapter.Native{Body: body}, adapter.Outcome{Receipt: rc})
		if err != nil {
			t.Fatal(err)
		}
		var rev admissionv1.AdmissionReview
		if resp.Status != http.StatusOK || json.Unmarshal(resp.Body, &rev) != nil || rev.Response == nil || !rev.Response.Allowed {
			return
		}
		var sent admissionv1.AdmissionReview
		if json.Unmarshal(body, &sent) == nil && sent.Request != nil && sent.Request.DryRun != nil && *sent.Request.DryRun {
			return
		}
		var ops []jsonPatchOp
		if err := json.Unmarshal(rev.Response.Patch, &ops); err != nil || len(ops) == 0 {
			t.Fatalf("an allow without a stamping patch: %s", resp.Body)
		}
		stamped := false
		for _, op := range ops {
			if !strings.HasPrefix(op.Path, "/metadata/annotations") || op.Op != "add" {
				t.Fatalf("patch touches %s %s", op.Op, op.Path)
			}
			if m, ok := op.Value.(map[string]any); (ok && m[AnnotationDecisionID] == "d-fuzz") || (op.Path == "/metadata/annotations/gatelog.dev~1decision-id" && op.Value == "d-fuzz") {
				stamped = true
			}
		}
		if !stamped {
			t.Fatalf("patch does not stamp the decision id: %s", rev.Response.Patch)
		}
	})
}
