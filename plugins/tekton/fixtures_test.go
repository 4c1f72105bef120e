package tekton

// The AdmissionReview fixtures are tektoncd/pipeline's own example runs
// (testdata/upstream/, copied verbatim; sources in testdata/README.md)
// wrapped the way the API server sends them to a webhook, with the
// k8s.io/api admission/v1 and authentication/v1 types. The controller's
// TaskRun is built as tektoncd/pipeline's PipelineRun reconciler builds it
// (createTaskRun). TestAdmissionFixturesFromUpstream rebuilds every
// *.payload.json from those sources and fails if a committed file differs;
// GATELOG_UPDATE_GOLDEN=1 rewrites them.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"go.yaml.in/yaml/v3"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// The people and service accounts of the fixtures, as a cluster's
// authenticators report them: OIDC users whose amr claim the
// AuthenticationConfiguration maps to the extra key gatelog.dev/amr, and
// the Tekton controller's service account token (its extra keys are the
// ones the API server sets for a bound service account token).
var (
	releaseManager = authenticationv1.UserInfo{
		Username: "alice@example.com",
		Groups:   []string{"release-managers", "system:authenticated"},
		Extra:    map[string]authenticationv1.ExtraValue{"gatelog.dev/amr": {"pwd", "otp", "mfa"}},
	}
	developer = authenticationv1.UserInfo{
		Username: "bob@example.com",
		Groups:   []string{"developers", "system:authenticated"},
		Extra:    map[string]authenticationv1.ExtraValue{"gatelog.dev/amr": {"pwd"}},
	}
	tektonController = authenticationv1.UserInfo{
		Username: DefaultControllerUsername,
		UID:      "5a4f3e2d-1c0b-4a98-8776-655443322110",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:tekton-pipelines", "system:authenticated"},
		Extra: map[string]authenticationv1.ExtraValue{
			"authentication.kubernetes.io/credential-id": {"JTI=7d6c5b4a-3928-4716-a5f4-e3d2c1b0a998"},
			"authentication.kubernetes.io/pod-name":      {"tekton-pipelines-controller-7c9d8f6b5-q2w4e"},
			"authentication.kubernetes.io/pod-uid":       {"0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f"},
		},
	}
)

// The namespaces: "payments" is mapped to production in the example
// adapters.json; "ci" to no environment.
const (
	nsProduction = "payments"
	nsCI         = "ci"
)

// generatedName is the name the API server gives the git-resolver
// PipelineRun (generateName "git-resolver-"), which the controller's
// TaskRun then carries.
const generatedName = "git-resolver-m8xq2"

type reviewCase struct {
	fixture   string // testdata/<fixture>.payload.json
	upstream  string // testdata/upstream/<file>
	kind      string // the document of that kind in the file
	namespace string
	user      authenticationv1.UserInfo
	dryRun    bool
	operation admissionv1.Operation
	// edit changes the object after it is read (the controller's TaskRun
	// is built from its PipelineRun here).
	edit func(t *testing.T, obj map[string]any) map[string]any
}

var reviewCases = []reviewCase{
	// A developer starts the git-resolver example in a namespace without an
	// environment: pipeline.trigger, allowed for anyone authenticated.
	{fixture: "pipelinerun-git-resolver", upstream: "pipelineruns_no-ci_git-resolver.yaml", kind: "PipelineRun", namespace: nsCI, user: developer},
	// The same run in the production namespace: a deploy. The developer is
	// refused; the release manager (MFA in the token) is allowed.
	{fixture: "pipelinerun-git-resolver-production-developer", upstream: "pipelineruns_no-ci_git-resolver.yaml", kind: "PipelineRun", namespace: nsProduction, user: developer},
	{fixture: "pipelinerun-git-resolver-production", upstream: "pipelineruns_no-ci_git-resolver.yaml", kind: "PipelineRun", namespace: nsProduction, user: releaseManager},
	// kubectl create --dry-run=server of the developer's production run.
	{fixture: "pipelinerun-git-resolver-production-dryrun", upstream: "pipelineruns_no-ci_git-resolver.yaml", kind: "PipelineRun", namespace: nsProduction, user: developer, dryRun: true},
	// The TaskRun the controller creates for the release manager's run.
	{fixture: "taskrun-controller-fetch-from-git", upstream: "pipelineruns_no-ci_git-resolver.yaml", kind: "PipelineRun", namespace: nsProduction, user: tektonController, edit: controllerTaskRun},
	// The same TaskRun, labels and owner reference included, created by
	// hand by the developer: not the controller, so gated as a deploy.
	{fixture: "taskrun-forged-controller-labels", upstream: "pipelineruns_no-ci_git-resolver.yaml", kind: "PipelineRun", namespace: nsProduction, user: developer, edit: controllerTaskRun},
	// The other resolvers.
	{fixture: "pipelinerun-hub-resolver", upstream: "pipelineruns_no-ci_hub-resolver.yaml", kind: "PipelineRun", namespace: nsCI, user: developer},
	{fixture: "pipelinerun-cluster-resolver", upstream: "pipelineruns_no-ci_cluster-resolver.yaml", kind: "PipelineRun", namespace: nsCI, user: developer},
	{fixture: "taskrun-bundles-resolver", upstream: "taskruns_beta_bundles-resolver.yaml", kind: "TaskRun", namespace: nsCI, user: developer},
	{fixture: "taskrun-git-resolver", upstream: "taskruns_beta_git-resolver.yaml", kind: "TaskRun", namespace: nsCI, user: developer},
	// Only CREATE is gated.
	{fixture: "pipelinerun-update", upstream: "pipelineruns_no-ci_cluster-resolver.yaml", kind: "PipelineRun", namespace: nsCI, user: developer, operation: admissionv1.Update},
}

// upstreamObject reads the first document of kind from an upstream file.
func upstreamObject(t *testing.T, file, kind string) map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "upstream", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s: no %s", file, kind)
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if doc["kind"] == kind {
			return doc
		}
	}
}

// controllerTaskRun turns the git-resolver PipelineRun into the TaskRun the
// controller creates for its first pipeline task, following tektoncd/pipeline
// pkg/reconciler/pipelinerun/pipelinerun.go (createTaskRun,
// combineTaskRunAndTaskSpecLabels/Annotations, createChildResourceLabels,
// storePipelineSpecAndMergeMeta) and resources.GetTaskRunName: the Pipeline
// is the catalog's buildpacks 0.2 the run resolves, its first task
// fetch-from-git with taskRef git-clone and the params substituted.
func controllerTaskRun(t *testing.T, pr map[string]any) map[string]any {
	t.Helper()
	pipeline := upstreamObject(t, "catalog_pipeline_buildpacks_0.2.yaml", "Pipeline")
	pmeta := pipeline["metadata"].(map[string]any)
	task := pipeline["spec"].(map[string]any)["tasks"].([]any)[0].(map[string]any)
	taskName := task["name"].(string)
	prUID := uuid.NewSHA1(uuid.NameSpaceURL, []byte("pipelinerun/"+generatedName)).String()

	// Labels: the Pipeline's (merged into the PipelineRun), the pipeline
	// name label, then the child labels.
	labels := map[string]any{}
	for k, v := range pmeta["labels"].(map[string]any) {
		labels[k] = v
	}
	labels["tekton.dev/pipeline"] = pmeta["name"]
	labels["tekton.dev/pipelineRun"] = generatedName
	labels["tekton.dev/pipelineRunUID"] = prUID
	labels["tekton.dev/pipelineTask"] = taskName
	labels["tekton.dev/memberOf"] = "tasks"
	// Annotations: the Pipeline's and the PipelineRun's, which by then hold
	// gatelog's stamps from the PipelineRun's admission.
	annotations := map[string]any{
		AnnotationDecisionID:   "0193a4f0-7c2e-7d41-9b8a-5f6e7d8c9b0a",
		AnnotationLogIndex:     "41",
		AnnotationLogEntryUUID: "a3c1e5f7b9d2e4f6" + "4c2e8a0b6d4f2e0c8a6b4d2f0e8c6a4b2d0f8e6c4a2b0d8f6e4c2a0b8d6f4e2c",
	}
	for k, v := range pmeta["annotations"].(map[string]any) {
		annotations[k] = v
	}
	// Params: the pipeline task's, with $(params.X) replaced by the run's
	// values or the Pipeline's defaults (SOURCE_REFERENCE defaults to "").
	runParams := map[string]string{}
	for _, p := range pr["spec"].(map[string]any)["params"].([]any) {
		m := p.(map[string]any)
		runParams[m["name"].(string)] = fmt.Sprint(m["value"])
	}
	for _, p := range pipeline["spec"].(map[string]any)["params"].([]any) {
		m := p.(map[string]any)
		if d, ok := m["default"].(string); ok {
			if _, set := runParams[m["name"].(string)]; !set {
				runParams[m["name"].(string)] = d
			}
		}
	}
	var params []any
	for _, p := range task["params"].([]any) {
		m := p.(map[string]any)
		v := m["value"].(string)
		for k, rv := range runParams {
			v = string(bytes.ReplaceAll([]byte(v), []byte("$(params."+k+")"), []byte(rv)))
		}
		params = append(params, map[string]any{"name": m["name"], "value": v})
	}
	return map[string]any{
		"apiVersion": "tekton.dev/v1",
		"kind":       "TaskRun",
		"metadata": map[string]any{
			"name":        generatedName + "-" + taskName,
			"labels":      labels,
			"annotations": annotations,
			"ownerReferences": []any{map[string]any{
				"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "name": generatedName, "uid": prUID,
				"controller": true, "blockOwnerDeletion": true,
			}},
		},
		"spec": map[string]any{
			"params":             params,
			"serviceAccountName": "default",
			"taskRef":            task["taskRef"],
			"timeout":            "1h0m0s",
			"workspaces":         []any{map[string]any{"name": "output", "subPath": "source", "persistentVolumeClaim": map[string]any{"claimName": "git-resolver-buildpacks-ws-pvc"}}},
		},
	}
}

// review wraps a case's object in the AdmissionReview the API server sends.
func (c reviewCase) review(t *testing.T) []byte {
	t.Helper()
	obj := upstreamObject(t, c.upstream, c.kind)
	if c.edit != nil {
		obj = c.edit(t, obj)
	}
	kind := obj["kind"].(string)
	meta := obj["metadata"].(map[string]any)
	meta["namespace"] = c.namespace // the API server fills it from the request path
	name, _ := meta["name"].(string)
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	op := c.operation
	if op == "" {
		op = admissionv1.Create
	}
	gvk := metav1.GroupVersionKind{Group: "tekton.dev", Version: "v1", Kind: kind}
	gvr := metav1.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: map[string]string{"PipelineRun": "pipelineruns", "TaskRun": "taskruns"}[kind]}
	options := metav1.CreateOptions{TypeMeta: metav1.TypeMeta{Kind: "CreateOptions", APIVersion: "meta.k8s.io/v1"}, FieldManager: "kubectl-create", FieldValidation: "Strict"}
	if c.user.Username == DefaultControllerUsername {
		options = metav1.CreateOptions{TypeMeta: options.TypeMeta}
	}
	if c.dryRun {
		options.DryRun = []string{metav1.DryRunAll}
	}
	rawOptions, err := json.Marshal(options)
	if err != nil {
		t.Fatal(err)
	}
	dryRun := c.dryRun
	rev := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:             types.UID(uuid.NewSHA1(uuid.NameSpaceURL, []byte("admission/"+c.fixture)).String()),
			Kind:            gvk,
			Resource:        gvr,
			RequestKind:     &gvk,
			RequestResource: &gvr,
			Name:            name, // "" for generateName: the name is not chosen yet
			Namespace:       c.namespace,
			Operation:       op,
			UserInfo:        c.user,
			Object:          runtime.RawExtension{Raw: raw},
			DryRun:          &dryRun,
			Options:         runtime.RawExtension{Raw: rawOptions},
		},
	}
	if op == admissionv1.Update {
		rev.Request.OldObject = runtime.RawExtension{Raw: raw}
		rev.Request.Options = runtime.RawExtension{Raw: []byte(`{"kind":"UpdateOptions","apiVersion":"meta.k8s.io/v1"}`)}
	}
	out, err := json.MarshalIndent(rev, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func TestAdmissionFixturesFromUpstream(t *testing.T) {
	update := os.Getenv("GATELOG_UPDATE_GOLDEN") != ""
	for _, c := range reviewCases {
		path := filepath.Join("testdata", c.fixture+".payload.json")
		got := c.review(t)
		if update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (GATELOG_UPDATE_GOLDEN=1 writes it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what its upstream source gives; GATELOG_UPDATE_GOLDEN=1 rewrites it", path)
		}
	}
}
