// Tests that the Tekton example manifests are what the README says: they
// decode into the upstream Kubernetes types, point at the tekton adapter
// endpoint, fail closed, and bind the fields the adapter really returns.
package tekton_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/gatelog/gatelog/engine/decision"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/tekton"
)

const endpoint = "/v1/adapters/tekton"

// docs reads every YAML document in a file as JSON.
func docs(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var out [][]byte
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, b)
	}
}

// The one admission webhook: mutating, so it can stamp the decision onto
// the run; fail closed; called once per create (one decision); dry runs
// allowed because the daemon logs nothing for them.
func TestMutatingWebhookConfiguration(t *testing.T) {
	d := docs(t, "mutating-webhook.yaml")
	if len(d) != 1 {
		t.Fatalf("%d documents", len(d))
	}
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	dec := json.NewDecoder(bytes.NewReader(d[0]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Kind != "MutatingWebhookConfiguration" || cfg.APIVersion != "admissionregistration.k8s.io/v1" || len(cfg.Webhooks) != 1 {
		t.Fatalf("%+v", cfg)
	}
	// Mutating webhooks are called in the order of their configurations'
	// names; gatelog comes after Tekton's defaulting webhook.
	if cfg.Name <= "webhook.pipeline.tekton.dev" {
		t.Errorf("name %q sorts before Tekton's webhook.pipeline.tekton.dev", cfg.Name)
	}
	w := cfg.Webhooks[0]
	if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail {
		t.Error("failurePolicy must be Fail: when gatelog cannot answer, nothing runs")
	}
	if w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun {
		t.Error("sideEffects must be NoneOnDryRun: every other call logs a decision, dry runs are not logged")
	}
	if w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.NeverReinvocationPolicy {
		t.Error("reinvocationPolicy must be Never: a second call would be a second decision")
	}
	if !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
		t.Errorf("admissionReviewVersions %v: the adapter reads admission.k8s.io/v1 only", w.AdmissionReviewVersions)
	}
	if w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil || *w.ClientConfig.Service.Path != endpoint {
		t.Errorf("clientConfig %+v: want path %s", w.ClientConfig, endpoint)
	}
	if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) ||
		!slices.Equal(w.Rules[0].APIGroups, []string{"tekton.dev"}) || !slices.Equal(w.Rules[0].Resources, []string{"pipelineruns", "taskruns"}) {
		t.Errorf("rules %+v: want CREATE of tekton.dev pipelineruns and taskruns", w.Rules)
	}
	// The controller's TaskRuns must reach gatelog: an object selector on
	// labels anyone can set would let hand-made TaskRuns through.
	if w.ObjectSelector != nil && (len(w.ObjectSelector.MatchLabels) > 0 || len(w.ObjectSelector.MatchExpressions) > 0) {
		t.Errorf("objectSelector %+v: runs must not be excluded by labels their creator chooses", w.ObjectSelector)
	}
	if len(w.MatchConditions) > 0 {
		t.Errorf("matchConditions %+v: every run create goes to gatelog", w.MatchConditions)
	}
}

// The shipped adapters.json is what the README and the end-to-end test use,
// and the adapter accepts its settings.
func TestAdaptersConfig(t *testing.T) {
	raw, err := os.ReadFile("adapters.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg []struct {
		Name, Builtin string
		Settings      map[string]string
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg) != 1 || cfg[0].Name != "tekton" || cfg[0].Builtin != "tekton" {
		t.Fatalf("adapters.json = %+v", cfg)
	}
	if err := tekton.New().Configure(t.Context(), cfg[0].Settings); err != nil {
		t.Errorf("settings %v: %v", cfg[0].Settings, err)
	}
}

func field(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("no %q in %v", k, v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || len(l) <= k {
				t.Fatalf("no [%d] in %v", k, v)
			}
			v = l[k]
		}
	}
	return v
}

func TestClusterInterceptorAndEventListener(t *testing.T) {
	var ci any
	if err := json.Unmarshal(docs(t, "cluster-interceptor.yaml")[0], &ci); err != nil {
		t.Fatal(err)
	}
	if field(t, ci, "kind") != "ClusterInterceptor" || field(t, ci, "metadata", "name") != "gatelog" ||
		field(t, ci, "spec", "clientConfig", "service", "path") != endpoint {
		t.Errorf("ClusterInterceptor = %v", ci)
	}

	d := docs(t, "event-listener.yaml")
	var el, tt any
	if err := json.Unmarshal(d[0], &el); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(d[1], &tt); err != nil {
		t.Fatal(err)
	}
	gate := field(t, el, "spec", "triggers", 0, "interceptors", 1)
	if field(t, gate, "ref", "name") != "gatelog" || field(t, gate, "ref", "kind") != "ClusterInterceptor" {
		t.Errorf("second interceptor = %v, want the gatelog ClusterInterceptor after github's", gate)
	}
	params := map[string]any{}
	for _, p := range field(t, gate, "params").([]any) {
		params[field(t, p, "name").(string)] = field(t, p, "value")
	}
	for k := range params {
		if k != tekton.ParamAction && k != tekton.ParamEnvironment && k != tekton.ParamSubjectPath {
			t.Errorf("interceptor param %q is not one the adapter reads", k)
		}
	}

	// The binding reads extensions.gatelog.decision_id: check the adapter
	// really answers with that field.
	binding := field(t, el, "spec", "triggers", 0, "bindings", 2, "value")
	if binding != "$(extensions.gatelog.decision_id)" {
		t.Fatalf("binding %v", binding)
	}
	payload, err := os.ReadFile("../../plugins/tekton/testdata/interceptor-github-push.payload.json")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tekton.New().Render(t.Context(), adapter.Native{Body: payload},
		adapter.Outcome{Receipt: &decision.Receipt{DecisionID: "d-42", Allow: true, LogIndex: 1}})
	if err != nil {
		t.Fatal(err)
	}
	var ans any
	if err := json.Unmarshal(resp.Body, &ans); err != nil {
		t.Fatal(err)
	}
	if field(t, ans, "extensions", "gatelog", "decision_id") != "d-42" {
		t.Errorf("interceptor answer %s has no extensions.gatelog.decision_id", resp.Body)
	}
	if field(t, tt, "spec", "resourcetemplates", 0, "kind") != "PipelineRun" {
		t.Errorf("TriggerTemplate = %v", tt)
	}
}
