package tekton

// With both gates of examples/tekton installed, the PipelineRun an
// EventListener creates after the interceptor's allow passes the admission
// webhook too, created by the EventListener's service account. These
// helpers build that run as Triggers does: the TriggerTemplate of the
// shipped event-listener.yaml with its params substituted
// (pkg/template: $(tt.params.NAME)) from the trigger's bindings (evaluated
// against the event body and the interceptors' extensions), plus the labels
// pkg/resources/create.go adds; and the AdmissionReview the API server sends
// for its create.

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gatelog/gatelog/internal/e2e"
)

// listenerServiceAccount is the EventListeners' service account in
// event-listener.yaml (serviceAccountName: tekton-triggers-sa, namespace
// ci), as the API server authenticates its token.
var listenerServiceAccount = authenticationv1.UserInfo{
	Username: "system:serviceaccount:ci:tekton-triggers-sa",
	UID:      "6b5a4f3e-2d1c-4b0a-9988-776655443321",
	Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"},
	Extra: map[string]authenticationv1.ExtraValue{
		"authentication.kubernetes.io/credential-id": {"JTI=8e7d6c5b-4a39-4827-b6a5-f4e3d2c1b0a9"},
		"authentication.kubernetes.io/pod-name":      {"el-github-listener-6d5c4b3a2-x7y8z"},
		"authentication.kubernetes.io/pod-uid":       {"1c2d3e4f-5061-4728-9930-4b5c6d7e8f90"},
	},
}

// triggeredRun renders the PipelineRun that trigger `name` of listener
// `listener` creates for the event body, given the interceptors'
// extensions.
func triggeredRun(t *testing.T, listener, name, eventID string, body []byte, extensions map[string]any) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(e2e.Path(t, "examples/tekton/event-listener.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var event any
	if err := json.Unmarshal(body, &event); err != nil {
		t.Fatal(err)
	}
	type binding struct{ Name, Value string }
	var bindings []binding
	var template string
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	for {
		var doc map[string]any
		if dec.Decode(&doc) != nil {
			break
		}
		meta, _ := doc["metadata"].(map[string]any)
		spec, _ := doc["spec"].(map[string]any)
		switch {
		case doc["kind"] == "EventListener" && meta["name"] == listener:
			for _, tr := range spec["triggers"].([]any) {
				tm := tr.(map[string]any)
				if tm["name"] != name {
					continue
				}
				for _, b := range tm["bindings"].([]any) {
					bm := b.(map[string]any)
					bindings = append(bindings, binding{bm["name"].(string), bm["value"].(string)})
				}
			}
		case doc["kind"] == "TriggerTemplate":
			rt, err := json.Marshal(spec["resourcetemplates"].([]any)[0])
			if err != nil {
				t.Fatal(err)
			}
			template = string(rt)
		}
	}
	if len(bindings) == 0 || template == "" {
		t.Fatalf("no trigger %s/%s or no TriggerTemplate in event-listener.yaml", listener, name)
	}
	for _, b := range bindings {
		v := b.Value
		switch {
		case strings.HasPrefix(v, "$(body.") && strings.HasSuffix(v, ")"):
			v = lookup(event, strings.TrimSuffix(strings.TrimPrefix(v, "$(body."), ")"))
		case strings.HasPrefix(v, "$(extensions.") && strings.HasSuffix(v, ")"):
			v = lookup(extensions, strings.TrimSuffix(strings.TrimPrefix(v, "$(extensions."), ")"))
		}
		if v == "" {
			t.Fatalf("binding %s = %s is empty for this event", b.Name, b.Value)
		}
		template = strings.ReplaceAll(template, "$(tt.params."+b.Name+")", v)
	}
	var run map[string]any
	if err := json.Unmarshal([]byte(template), &run); err != nil {
		t.Fatal(err)
	}
	meta := run["metadata"].(map[string]any)
	labels, _ := meta["labels"].(map[string]any)
	if labels == nil {
		labels = map[string]any{}
	}
	labels["triggers.tekton.dev/eventlistener"] = listener
	labels["triggers.tekton.dev/triggers-eventid"] = eventID
	labels["triggers.tekton.dev/trigger"] = name
	meta["labels"] = labels
	meta["namespace"] = "ci"
	return run
}

// admitRun sends the create of run by the EventListener's service account
// as the API server does, with a caller that may vouch (the API server's
// credential, here an API key with decide and vouch as in
// examples/tekton/e2e_test.go), and returns the answer.
func admitRun(t *testing.T, d *e2e.Daemon, apiServerKey, uid string, run map[string]any) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, err := json.Marshal(run)
	if err != nil {
		t.Fatal(err)
	}
	options, _ := json.Marshal(metav1.CreateOptions{TypeMeta: metav1.TypeMeta{Kind: "CreateOptions", APIVersion: "meta.k8s.io/v1"}})
	gvk := metav1.GroupVersionKind{Group: "tekton.dev", Version: "v1", Kind: "PipelineRun"}
	gvr := metav1.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"}
	dryRun := false
	rev := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID(uid), Kind: gvk, Resource: gvr, RequestKind: &gvk, RequestResource: &gvr,
			Namespace: "ci", Operation: admissionv1.Create, UserInfo: listenerServiceAccount,
			Object: runtime.RawExtension{Raw: raw}, DryRun: &dryRun, Options: runtime.RawExtension{Raw: options},
		},
	}
	body, err := json.Marshal(rev)
	if err != nil {
		t.Fatal(err)
	}
	code, _, out := d.Post(t, "/v1/adapters/tekton", body, http.Header{"Authorization": {"Bearer " + apiServerKey}})
	var got admissionv1.AdmissionReview
	if err := strictDecode(out, &got); err != nil || code != http.StatusOK || got.Response == nil || string(got.Response.UID) != uid {
		t.Fatalf("admission answer %d: %v\n%s", code, err, out)
	}
	return got.Response
}

// newAPIServerKey creates the API server's credential: decide and vouch.
func newAPIServerKey(t *testing.T, d *e2e.Daemon) string {
	t.Helper()
	code, _, body := d.Post(t, "/v1/apikeys", []byte(`{"name":"kube-apiserver","permissions":["decide","vouch"]}`),
		http.Header{"Authorization": {"Bearer " + d.APIKey}})
	var created struct{ Key string }
	if err := json.Unmarshal(body, &created); err != nil || code != http.StatusCreated || created.Key == "" {
		t.Fatalf("create the API server's key: %d %s", code, body)
	}
	return created.Key
}
