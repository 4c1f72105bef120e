// End to end, the admission webhook as a cluster runs it: the built gatelog
// binary, started as the README says (the shipped adapters.json, the
// bundled policy, keys made on first start), gets the AdmissionReviews the
// API server sends for tektoncd/pipeline's own example runs
// (plugins/tekton/testdata, sources in its README) and answers them; the
// answers are read with the k8s.io/api types as the API server reads them,
// and every decision is found in the log and verified offline with the
// public keys alone.
package tekton_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/plugins/tekton"
	"github.com/gatelog/gatelog/record/decision"
)

// apiServer stands in for the Kubernetes API server. In a cluster it calls
// gatelog with a client certificate that the identity config grants decide
// and vouch (README section 2); here it is an API key with exactly those
// permissions, so the daemon treats its calls the same way: the subject in
// request.userInfo is vouched for by this caller.
type apiServer struct {
	d   *e2e.Daemon
	key string
}

func newAPIServer(t *testing.T, d *e2e.Daemon) apiServer {
	t.Helper()
	code, _, body := d.Post(t, "/v1/apikeys", []byte(`{"name":"kube-apiserver","permissions":["decide","vouch"]}`),
		http.Header{"Authorization": {"Bearer " + d.APIKey}})
	var created struct{ Key string }
	if err := json.Unmarshal(body, &created); err != nil || code != http.StatusCreated || created.Key == "" {
		t.Fatalf("create the API server's key: %d %s", code, body)
	}
	return apiServer{d: d, key: created.Key}
}

// review sends a fixture as the API server does and decodes the answer
// strictly with admissionv1 types, checking the uid is echoed.
func (s apiServer) review(t *testing.T, fixture string, credential string) (*admissionv1.AdmissionRequest, *admissionv1.AdmissionResponse) {
	t.Helper()
	body, err := os.ReadFile(e2e.Path(t, filepath.Join("plugins/tekton/testdata", fixture+".payload.json")))
	if err != nil {
		t.Fatal(err)
	}
	var sent admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &sent); err != nil {
		t.Fatal(err)
	}
	headers := http.Header{}
	if credential != "" {
		headers.Set("Authorization", "Bearer "+credential)
	}
	code, _, raw := s.d.Post(t, "/v1/adapters/tekton", body, headers)
	if code != http.StatusOK {
		t.Fatalf("%s: HTTP %d %s", fixture, code, raw)
	}
	var got admissionv1.AdmissionReview
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("%s: the answer is not an AdmissionReview: %v\n%s", fixture, err, raw)
	}
	if got.APIVersion != "admission.k8s.io/v1" || got.Kind != "AdmissionReview" || got.Response == nil || got.Response.UID != sent.Request.UID {
		t.Fatalf("%s: answer %s does not answer request uid %s", fixture, raw, sent.Request.UID)
	}
	return sent.Request, got.Response
}

// stamped applies the answer's JSONPatch to the object the way the API
// server does (RFC 6902, here OPA's json.patch) and returns the annotations
// the stored run gets: what Tekton Chains copies into provenance.
func stamped(t *testing.T, req *admissionv1.AdmissionRequest, resp *admissionv1.AdmissionResponse) map[string]any {
	t.Helper()
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch || len(resp.Patch) == 0 {
		t.Fatalf("an allow without a JSONPatch: %+v", resp)
	}
	var obj, ops any
	if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	rs, err := rego.New(rego.Query("x := json.patch(input.object, input.patch)"), rego.StrictBuiltinErrors(true),
		rego.Input(map[string]any{"object": obj, "patch": ops})).Eval(t.Context())
	if err != nil || len(rs) != 1 {
		t.Fatalf("apply patch %s: %v", resp.Patch, err)
	}
	ann, _ := rs[0].Bindings["x"].(map[string]any)["metadata"].(map[string]any)["annotations"].(map[string]any)
	return ann
}

// verifyStamp checks the run's annotations name a decision that is in the
// log, verifies offline, and is the decision the API server was answered
// with.
func verifyStamp(t *testing.T, d *e2e.Daemon, ann map[string]any, resp *admissionv1.AdmissionResponse) e2e.Verified {
	t.Helper()
	id, _ := ann[tekton.AnnotationDecisionID].(string)
	v := d.Verify(t, id)
	if ann[tekton.AnnotationLogIndex] != jsonInt(v.Receipt.LogIndex) || ann[tekton.AnnotationLogEntryUUID] != v.Receipt.UUID {
		t.Errorf("stamps %v, log entry index %d uuid %s", ann, v.Receipt.LogIndex, v.Receipt.UUID)
	}
	if resp.AuditAnnotations["decision-id"] != id || len(resp.Warnings) != 1 || !strings.HasPrefix(resp.Warnings[0], "gatelog.dev/decision: "+id+" ") {
		t.Errorf("audit annotations %v, warnings %q", resp.AuditAnnotations, resp.Warnings)
	}
	return v
}

func jsonInt(i int64) string { b, _ := json.Marshal(i); return string(b) }

func TestAdmissionEndToEnd(t *testing.T) {
	d := e2e.Start(t, e2e.Build(t), nil, "--adapters-config", e2e.Path(t, "examples/tekton/adapters.json"))
	api := newAPIServer(t, d)

	t.Run("a developer's resolver run outside any environment is allowed and stamped", func(t *testing.T) {
		req, resp := api.review(t, "pipelinerun-git-resolver", api.key)
		if !resp.Allowed || resp.Result != nil {
			t.Fatalf("response %+v", resp)
		}
		v := verifyStamp(t, d, stamped(t, req, resp), resp)
		r := v.Record.Request
		if r.Action != "pipeline.trigger" || r.Subject.ID != "bob@example.com" || !r.Subject.Verified || r.Subject.AssertedBy == "" ||
			r.Resource.Namespace != "ci" || r.Resource.Repository != "https://github.com/tektoncd/catalog.git" || r.Resource.Ref != "refs/heads/main" ||
			r.Resource.Attributes["pipeline"] != "pipeline/buildpacks/0.2/buildpacks.yaml" || r.Resource.Attributes["resolver"] != "git" || !v.Record.Decision.Allow {
			t.Errorf("record %+v", v.Record)
		}
	})

	t.Run("a release manager's production deploy is allowed; its controller TaskRun too", func(t *testing.T) {
		req, resp := api.review(t, "pipelinerun-git-resolver-production", api.key)
		if !resp.Allowed {
			t.Fatalf("response %+v %+v", resp, resp.Result)
		}
		v := verifyStamp(t, d, stamped(t, req, resp), resp)
		r := v.Record.Request
		if r.Action != "deploy" || r.Resource.Environment != "production" || r.Resource.Ref != "refs/heads/main" || !r.Subject.MFA ||
			r.Subject.Claims["mfa_source"] != "k8s-userinfo-extra:gatelog.dev/amr" || v.Record.Decision.Reasons[0] != `allowed by role "release-manager" (group "release-managers")` {
			t.Errorf("record %+v", v.Record)
		}

		req, resp = api.review(t, "taskrun-controller-fetch-from-git", api.key)
		if !resp.Allowed {
			t.Fatalf("controller TaskRun: response %+v %+v", resp, resp.Result)
		}
		ann := stamped(t, req, resp)
		tv := verifyStamp(t, d, ann, resp)
		tr := tv.Record.Request
		if tr.Action != "step.run" || tr.Subject.ID != tekton.DefaultControllerUsername || tr.Resource.Environment != "production" ||
			tv.Record.Decision.Reasons[0] != `allowed by role "tekton-controller" (subject "`+tekton.DefaultControllerUsername+`")` {
			t.Errorf("controller TaskRun record %+v", tv.Record)
		}
		// The stamps copied from the PipelineRun were replaced by the
		// TaskRun's own decision, and kept in its record as unverified.
		if ann[tekton.AnnotationDecisionID] == "0193a4f0-7c2e-7d41-9b8a-5f6e7d8c9b0a" || ann["tekton.dev/displayName"] != "Buildpacks" {
			t.Errorf("annotations after the patch %v", ann)
		}
		if u, _ := tr.Context.Unverified["annotations"].(map[string]any); u[tekton.AnnotationDecisionID] != "0193a4f0-7c2e-7d41-9b8a-5f6e7d8c9b0a" {
			t.Errorf("unverified context %v", tr.Context.Unverified)
		}
	})

	t.Run("a developer's production deploy is refused with the reasons", func(t *testing.T) {
		_, resp := api.review(t, "pipelinerun-git-resolver-production-developer", api.key)
		if resp.Allowed || resp.Patch != nil || resp.Result == nil || resp.Result.Code != http.StatusForbidden || resp.Result.Reason != "Forbidden" {
			t.Fatalf("response %+v %+v", resp, resp.Result)
		}
		msg := resp.Result.Message
		for _, want := range []string{
			`no role of subject "bob@example.com" permits action "deploy"`,
			`privileged action "deploy"`, "requires multi-factor authentication",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("status.message %q lacks %q", msg, want)
			}
		}
		v := d.Verify(t, resp.AuditAnnotations["decision-id"])
		if v.Record.Decision.Allow || v.Record.Request.Subject.ID != "bob@example.com" || !strings.Contains(msg, "gatelog.dev/decision: "+v.Record.DecisionID) {
			t.Errorf("record %+v", v.Record)
		}
	})

	t.Run("a TaskRun made by hand with the controller's labels and owner is gated", func(t *testing.T) {
		_, resp := api.review(t, "taskrun-forged-controller-labels", api.key)
		if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusForbidden ||
			!strings.Contains(resp.Result.Message, `no role of subject "bob@example.com" permits action "deploy"`) {
			t.Fatalf("response %+v %+v", resp, resp.Result)
		}
		v := d.Verify(t, resp.AuditAnnotations["decision-id"])
		if v.Record.Request.Action != "deploy" || v.Record.Request.Resource.Kind != "TaskRun" {
			t.Errorf("record %+v", v.Record)
		}
	})

	t.Run("a dry run is decided but not logged", func(t *testing.T) {
		// The dry run sits between two logged decisions; it takes no index.
		_, before := api.review(t, "taskrun-forged-controller-labels", api.key)
		_, resp := api.review(t, "pipelinerun-git-resolver-production-dryrun", api.key)
		_, after := api.review(t, "taskrun-forged-controller-labels", api.key)
		if resp.Allowed || resp.Patch != nil || len(resp.AuditAnnotations) != 0 || resp.Result == nil || resp.Result.Code != http.StatusForbidden ||
			!strings.Contains(resp.Result.Message, "(dry run: not logged)") ||
			len(resp.Warnings) != 1 || resp.Warnings[0] != "gatelog: dry run: would be denied; not logged" {
			t.Fatalf("dry run response %+v %+v", resp, resp.Result)
		}
		b, a := d.Receipt(t, before.AuditAnnotations["decision-id"]), d.Receipt(t, after.AuditAnnotations["decision-id"])
		if a.LogIndex != b.LogIndex+1 {
			t.Errorf("log indexes %d then %d around the dry run: it was logged", b.LogIndex, a.LogIndex)
		}
	})

	t.Run("without the API server's credential nothing is admitted", func(t *testing.T) {
		// Refused before the body is read, so the answer cannot be an
		// AdmissionReview: the API server (failurePolicy: Fail) refuses
		// the create.
		body, err := os.ReadFile(e2e.Path(t, "plugins/tekton/testdata/pipelinerun-git-resolver.payload.json"))
		if err != nil {
			t.Fatal(err)
		}
		code, _, raw := d.Post(t, "/v1/adapters/tekton", body, nil)
		if code != http.StatusUnauthorized || !strings.Contains(string(raw), "missing credentials") || strings.Contains(string(raw), `"allowed":true`) {
			t.Fatalf("HTTP %d %s", code, raw)
		}
	})

	// /v1/decide never takes a dry run: it logs every decision.
	req := decision.Request{Action: "pipeline.trigger", Context: decision.Context{DryRun: true}}
	raw, _ := json.Marshal(req)
	if code, _, body := d.Post(t, "/v1/decide", raw, http.Header{"Authorization": {"Bearer " + d.APIKey}}); code != http.StatusBadRequest || !strings.Contains(string(body), "context.dry_run") {
		t.Errorf("/v1/decide with context.dry_run: %d %s", code, body)
	}
}
