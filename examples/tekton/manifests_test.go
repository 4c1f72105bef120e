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
	"path/filepath"
	"slices"
	"testing"

	"github.com/gatelog/gatelog/plugins/builtin"

	"go.yaml.in/yaml/v3"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/tekton"
	"github.com/gatelog/gatelog/record/decision"
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

	// webhooks.json, loaded by the daemon's own loader with the secret
	// files it names.
	dir := t.TempDir()
	raw, err := os.ReadFile("webhooks.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		TektonTriggers struct {
			Sources []struct {
				Provider   string   `json:"provider"`
				SecretFile string   `json:"secret_file"`
				Namespaces []string `json:"namespaces"`
			} `json:"sources"`
		} `json:"tekton_triggers"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"webhooks.json": string(raw)}
	for _, src := range cfg.TektonTriggers.Sources {
		files[src.SecretFile] = "secret of " + src.SecretFile
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hooks, err := builtin.LoadWebhooks(filepath.Join(dir, "webhooks.json"))
	if err != nil || hooks.TektonTriggers == nil || hooks.TektonTriggers.Adapter != "tekton" {
		t.Fatalf("webhooks.json: %+v, %v", hooks, err)
	}

	var listeners, templates []any
	for _, d := range docs(t, "event-listener.yaml") {
		var v any
		if err := json.Unmarshal(d, &v); err != nil {
			t.Fatal(err)
		}
		switch field(t, v, "kind") {
		case "EventListener":
			listeners = append(listeners, v)
		case "TriggerTemplate":
			templates = append(templates, v)
		}
	}
	if len(listeners) != 2 || len(templates) != 1 {
		t.Fatalf("%d EventListeners, %d TriggerTemplates", len(listeners), len(templates))
	}
	for _, el := range listeners {
		ns := field(t, el, "metadata", "namespace").(string)
		for _, tr := range field(t, el, "spec", "triggers").([]any) {
			name := field(t, tr, "name")
			// Triggers' own github or gitlab interceptor first, with the
			// secretRef of a Secret whose value the daemon has too (a
			// source of that provider serving this namespace, its secret
			// file named like the Secret).
			first := field(t, tr, "interceptors", 0)
			provider := field(t, first, "ref", "name").(string)
			var secretRef any
			for _, p := range field(t, first, "params").([]any) {
				if field(t, p, "name") == "secretRef" {
					secretRef = field(t, p, "value")
				}
			}
			if (provider != "github" && provider != "gitlab") || secretRef == nil || field(t, secretRef, "secretKey") == "" {
				t.Errorf("%s: first interceptor %v, want Triggers' github or gitlab interceptor with a secretRef", name, first)
				continue
			}
			served := false
			for _, src := range cfg.TektonTriggers.Sources {
				served = served || src.Provider == provider && src.SecretFile == field(t, secretRef, "secretName") &&
					(len(src.Namespaces) == 0 || slices.Contains(src.Namespaces, ns))
			}
			if !served {
				t.Errorf("%s: no %s source in webhooks.json with secret_file %v for namespace %s", name, provider, field(t, secretRef, "secretName"), ns)
			}
			gate := field(t, tr, "interceptors", 1)
			if field(t, gate, "ref", "name") != "gatelog" || field(t, gate, "ref", "kind") != "ClusterInterceptor" {
				t.Errorf("%s: second interceptor = %v, want the gatelog ClusterInterceptor", name, gate)
			}
			for _, p := range field(t, gate, "params").([]any) {
				if k := field(t, p, "name"); k != tekton.ParamAction && k != tekton.ParamEnvironment && k != tekton.ParamSubjectPath {
					t.Errorf("%s: interceptor param %q is not one the adapter reads", name, k)
				}
			}
			bound := false
			for _, b := range field(t, tr, "bindings").([]any) {
				bound = bound || field(t, b, "value") == "$(extensions.gatelog.decision_id)"
			}
			if !bound {
				t.Errorf("%s: no binding of $(extensions.gatelog.decision_id)", name)
			}
		}
	}

	// The bindings read extensions.gatelog.decision_id: check the adapter
	// really answers with that field.
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
	if field(t, templates[0], "spec", "resourcetemplates", 0, "kind") != "PipelineRun" {
		t.Errorf("TriggerTemplate = %v", templates[0])
	}
}

// policy-data.yaml is the bundled policies/data.yaml with the three changes
// its header names (a release manager by login, master protected, the
// EventListeners' service account), so the admission gate keeps every role
// the bundled data gives.
func TestPolicyDataIsBundledDataPlusItsChanges(t *testing.T) {
	read := func(path string) map[string]any {
		t.Helper()
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := yaml.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return v
	}
	want := read("../../policies/data.yaml")
	cfg := want["gatelog_config"].(map[string]any)
	rbac := cfg["rbac"].(map[string]any)
	roles, _ := rbac["subject_roles"].(map[string]any)
	if roles == nil {
		roles = map[string]any{}
		rbac["subject_roles"] = roles
	}
	roles["Codertocat"] = []any{"release-manager"}
	roles["system:serviceaccount:ci:tekton-triggers-sa"] = []any{"triggers-listener"}
	rbac["roles"].(map[string]any)["triggers-listener"] = map[string]any{
		"description": "The EventListeners create the staging runs of the triggers whose gatelog interceptor allowed the event (the run's gatelog.dev/decision annotation names that decision). Not production: a service account has no second factor.",
		"permissions": []any{map[string]any{"actions": []any{"deploy"}, "systems": []any{"tekton"}, "namespaces": []any{"ci"}, "environments": []any{"staging"}}},
	}
	env := cfg["environments"].(map[string]any)
	env["protected_refs"] = []any{"refs/heads/main", "refs/heads/master", "refs/tags/v*"}
	got := read("policy-data.yaml")
	wantJSON, _ := json.Marshal(want)
	gotJSON, _ := json.Marshal(got)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("policy-data.yaml is not policies/data.yaml plus its three changes:\n got %s\nwant %s", gotJSON, wantJSON)
	}
}
