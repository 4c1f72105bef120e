package tekton

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/record/decision"
)

// The AdmissionReview fields the adapter reads and writes, named as in
// k8s.io/api/admission/v1 (the tests decode fixtures and answers with those
// types, so the names cannot drift). The package does not import the
// Kubernetes modules: an adapter needs a dozen fields, not the API machinery.
type admissionReview struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Request    *admissionRequest  `json:"request,omitempty"`
	Response   *admissionResponse `json:"response,omitempty"`
}

type groupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

type userInfo struct {
	Username string              `json:"username"`
	UID      string              `json:"uid"`
	Groups   []string            `json:"groups"`
	Extra    map[string][]string `json:"extra"`
}

type admissionRequest struct {
	UID       string           `json:"uid"`
	Kind      groupVersionKind `json:"kind"`
	Name      string           `json:"name"`
	Namespace string           `json:"namespace"`
	Operation string           `json:"operation"`
	UserInfo  userInfo         `json:"userInfo"`
	Object    json.RawMessage  `json:"object"`
	DryRun    *bool            `json:"dryRun"`
}

type status struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Code    int32  `json:"code,omitempty"`
}

type admissionResponse struct {
	UID     string  `json:"uid"`
	Allowed bool    `json:"allowed"`
	Status  *status `json:"status,omitempty"`
	// Patch is base64 in JSON, as []byte is in k8s.io/api.
	Patch            []byte            `json:"patch,omitempty"`
	PatchType        string            `json:"patchType,omitempty"`
	AuditAnnotations map[string]string `json:"auditAnnotations,omitempty"`
	Warnings         []string          `json:"warnings,omitempty"`
}

// The parts of a Tekton PipelineRun or TaskRun (tekton.dev/v1, and the
// v1beta1 serviceAccountName) that describe what is about to run.
type tektonRun struct {
	Metadata struct {
		Name            string            `json:"name"`
		GenerateName    string            `json:"generateName"`
		Namespace       string            `json:"namespace"`
		Labels          map[string]string `json:"labels"`
		Annotations     map[string]string `json:"annotations"`
		OwnerReferences []ownerReference  `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		PipelineRef     *ref            `json:"pipelineRef"`
		PipelineSpec    json.RawMessage `json:"pipelineSpec"`
		TaskRef         *ref            `json:"taskRef"`
		TaskSpec        json.RawMessage `json:"taskSpec"`
		Params          []param         `json:"params"`
		TaskRunTemplate struct {
			ServiceAccountName string `json:"serviceAccountName"`
		} `json:"taskRunTemplate"`
		ServiceAccountName string `json:"serviceAccountName"`
	} `json:"spec"`
}

// ownerReference is metav1.OwnerReference.
type ownerReference struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	Controller *bool  `json:"controller"`
}

type ref struct {
	Name     string  `json:"name"`
	Kind     string  `json:"kind"`
	Resolver string  `json:"resolver"`
	Params   []param `json:"params"`
}

// param is a Tekton Param; its value is a string, an array or an object.
type param struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
}

func paramValues(ps []param) map[string]any {
	if len(ps) == 0 {
		return nil
	}
	m := make(map[string]any, len(ps))
	for _, p := range ps {
		var v any
		if json.Unmarshal(p.Value, &v) == nil {
			m[p.Name] = v
		}
	}
	return m
}

func firstString(m map[string]any, keys []string) string {
	for _, k := range keys {
		if s, ok := m[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// resolved is what a remote reference (a pipelineRef or taskRef with a
// resolver) says about the definition that will run. Its fields follow
// tektoncd/pipeline's resolver docs (docs/git-resolver.md,
// bundle-resolver.md, hub-resolver.md, cluster-resolver.md).
type resolved struct {
	name       string // the pipeline or task: pathInRepo (git) or name
	repository string // git: url; bundles: the image reference
	ref        string // git: revision as a full ref (or commit); bundles: the digest or tag
	attrs      map[string]any
}

func resolve(r *ref) resolved {
	p := paramValues(r.Params)
	str := func(k string) string { s, _ := p[k].(string); return strings.TrimSpace(s) }
	out := resolved{attrs: map[string]any{"resolver": r.Resolver}}
	if p != nil {
		out.attrs["resolver_params"] = p
	}
	switch r.Resolver {
	case "git":
		// The definition lives in a git repository: url (or org/repo on a
		// configured SCM API), revision (branch, tag or commit), pathInRepo.
		out.name = str("pathInRepo")
		out.repository = str("url")
		if out.repository == "" && str("repo") != "" {
			out.repository = strings.Trim(str("org")+"/"+str("repo"), "/")
		}
		out.ref = decision.NormalizeRef(str("revision"))
	case "bundles":
		// An OCI bundle: bundle is image[:tag][@digest], name and kind
		// pick the object in it. The digest pins it; else the tag does.
		out.name = str("name")
		out.repository = str("bundle")
		if _, digest, ok := strings.Cut(out.repository, "@"); ok {
			out.ref = digest
		} else if i := strings.LastIndex(out.repository, ":"); i > strings.LastIndex(out.repository, "/") {
			out.ref = out.repository[i+1:]
		}
	case "hub":
		// Tekton Hub or Artifact Hub: name and version in a catalog.
		out.name = str("name")
	case "cluster":
		// Another namespace of this cluster: name in namespace.
		out.name = str("name")
	default:
		// http and custom resolvers: the name param when there is one.
		out.name = str("name")
	}
	if out.name == "" {
		out.name = r.Name
	}
	return out
}

func translateAdmission(cfg settings, body []byte) (decision.Request, error) {
	var rev admissionReview
	if err := json.Unmarshal(body, &rev); err != nil {
		return decision.Request{}, adapter.BadPayload("AdmissionReview: %v", err)
	}
	r := rev.Request
	if r == nil {
		return decision.Request{}, adapter.BadPayload(`AdmissionReview: field "request" is required`)
	}
	if r.UID == "" {
		return decision.Request{}, adapter.BadPayload(`AdmissionReview: field "request.uid" is required`)
	}
	if r.Kind.Group != "tekton.dev" || (r.Kind.Kind != "PipelineRun" && r.Kind.Kind != "TaskRun") {
		return decision.Request{}, adapter.BadPayload("AdmissionReview: request.kind %s/%s %s: only tekton.dev PipelineRun and TaskRun are gated", r.Kind.Group, r.Kind.Version, r.Kind.Kind)
	}
	if r.Operation != "CREATE" {
		return decision.Request{}, adapter.BadPayload("AdmissionReview: request.operation %q: only CREATE is gated (match rules operations: [CREATE])", r.Operation)
	}
	if r.UserInfo.Username == "" {
		return decision.Request{}, adapter.BadPayload(`AdmissionReview: field "request.userInfo.username" is required`)
	}
	var run tektonRun
	if len(r.Object) == 0 || string(r.Object) == "null" {
		return decision.Request{}, adapter.BadPayload(`AdmissionReview: field "request.object" is required`)
	}
	if err := json.Unmarshal(r.Object, &run); err != nil {
		return decision.Request{}, adapter.BadPayload("AdmissionReview: request.object is not a %s: %v", r.Kind.Kind, err)
	}

	// The API server authenticated this user; whether gatelog trusts that is
	// the daemon's call, made on the API server's own (mTLS) identity.
	subject := decision.Subject{ID: r.UserInfo.Username, Kind: "user", Groups: r.UserInfo.Groups}
	if strings.HasPrefix(r.UserInfo.Username, "system:serviceaccount:") {
		subject.Kind = "service"
	}
	if r.UserInfo.UID != "" || len(r.UserInfo.Extra) > 0 {
		subject.Claims = map[string]any{}
		if r.UserInfo.UID != "" {
			subject.Claims["uid"] = r.UserInfo.UID
		}
		if len(r.UserInfo.Extra) > 0 {
			extra := make(map[string]any, len(r.UserInfo.Extra))
			for k, v := range r.UserInfo.Extra {
				extra[k] = v
			}
			subject.Claims["extra"] = extra
		}
	}
	if key := cfg.mfaExtraKey; key != "" && slices.Contains(r.UserInfo.Extra[key], "mfa") {
		// The API server verified the user's OIDC token and copied its amr
		// claim into userInfo.extra (AuthenticationConfiguration
		// claimMappings.extra): the token's own second factor.
		subject.MFA = true
		if subject.Claims == nil {
			subject.Claims = map[string]any{}
		}
		subject.Claims["mfa_source"] = "k8s-userinfo-extra:" + key
	}

	name := r.Name
	if name == "" {
		name = run.Metadata.Name
	}
	if name == "" {
		name = run.Metadata.GenerateName
	}
	namespace := r.Namespace
	if namespace == "" {
		namespace = run.Metadata.Namespace
	}
	params := paramValues(run.Spec.Params)
	attrs := map[string]any{"operation": r.Operation, "api_version": r.Kind.Group + "/" + r.Kind.Version}
	if params != nil {
		attrs["params"] = params
	}
	var runRef *ref
	var inline json.RawMessage
	sa := run.Spec.TaskRunTemplate.ServiceAccountName
	refKey := "pipeline"
	if r.Kind.Kind == "TaskRun" {
		runRef, inline, refKey = run.Spec.TaskRef, run.Spec.TaskSpec, "task"
		sa = run.Spec.ServiceAccountName
	} else {
		runRef, inline = run.Spec.PipelineRef, run.Spec.PipelineSpec
		if sa == "" {
			sa = run.Spec.ServiceAccountName // tekton.dev/v1beta1
		}
	}
	if sa != "" {
		attrs["service_account"] = sa
	}
	repository := firstString(params, cfg.repositoryParams)
	gitRef := decision.NormalizeRef(firstString(params, cfg.refParams))
	switch {
	case runRef != nil && runRef.Resolver != "":
		// What runs is fetched by a resolver: where from is the resource.
		res := resolve(runRef)
		attrs[refKey] = res.name
		maps.Copy(attrs, res.attrs)
		if res.repository != "" {
			repository, gitRef = res.repository, res.ref
		}
	case runRef != nil:
		attrs[refKey] = runRef.Name
	case len(inline) > 0 && string(inline) != "null":
		attrs["inline_spec"] = true
	}
	owner := controllerOwner(run.Metadata.OwnerReferences)
	if owner != nil {
		attrs["owner"] = map[string]any{"kind": owner.Kind, "name": owner.Name, "uid": owner.UID, "api_version": owner.APIVersion}
	}
	if len(run.Metadata.Labels) > 0 {
		labels := make(map[string]any, len(run.Metadata.Labels))
		for k, v := range run.Metadata.Labels {
			labels[k] = v
		}
		attrs["labels"] = labels
	}

	env := cfg.namespaceEnv[namespace]
	if env == "" && cfg.environmentLabel != "" {
		env = run.Metadata.Labels[cfg.environmentLabel]
	}
	if env == "" && cfg.environmentParam != "" {
		env, _ = params[cfg.environmentParam].(string)
	}

	req := decision.Request{
		Subject: subject,
		Action:  admissionAction(cfg, r, owner, env),
		Resource: decision.Resource{
			Kind:        r.Kind.Kind,
			Name:        name,
			Namespace:   namespace,
			Environment: env,
			Repository:  repository,
			Ref:         gitRef,
			Attributes:  attrs,
		},
		Source: decision.Source{RequestID: r.UID},
	}
	if r.DryRun != nil && *r.DryRun {
		req.Context.DryRun = true
	}
	// Stamps already on the object are whoever created it's claim (the
	// controller copies a PipelineRun's onto its TaskRuns, and so can a
	// user): kept as unverified context, replaced on the object if allowed.
	for k, v := range run.Metadata.Annotations {
		if strings.HasPrefix(k, "gatelog.dev/") {
			if req.Context.Unverified == nil {
				req.Context.Unverified = map[string]any{"annotations": map[string]any{}}
			}
			req.Context.Unverified["annotations"].(map[string]any)[k] = v
		}
	}
	return req, nil
}

// controllerOwner is the owner reference marked controller (at most one, by
// the API's own validation), or nil.
func controllerOwner(refs []ownerReference) *ownerReference {
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return &refs[i]
		}
	}
	return nil
}

// admissionAction is what creating this run means:
//
//   - a TaskRun (or, with pipelines in pipelines, a child PipelineRun) the
//     Tekton controller creates for a PipelineRun it owns is step.run: the
//     PipelineRun was gated when it was created, and the child is one of
//     its steps. Only the controller's own username, as
//     the API server authenticated it, counts: labels and owner references
//     are written by whoever creates the object, so a TaskRun a user makes
//     by hand with the controller's labels is gated like any other.
//   - any other run into an environment deploys into it: deploy.
//   - otherwise a PipelineRun is pipeline.trigger and a TaskRun step.run.
func admissionAction(cfg settings, r *admissionRequest, owner *ownerReference, env string) string {
	if r.UserInfo.Username == cfg.controllerUsername &&
		owner != nil && owner.Kind == "PipelineRun" && strings.HasPrefix(owner.APIVersion, "tekton.dev/") {
		return ActionStepRun
	}
	if env != "" {
		return ActionDeploy
	}
	if r.Kind.Kind == "TaskRun" {
		return ActionStepRun
	}
	return ActionPipelineTrigger
}

// The annotations the adapter stamps on a run it allowed, so that the
// decision travels with the object: Tekton Chains copies a run's
// annotations into its provenance (invocation.environment.annotations in
// the in-toto/slsa/v1 formats; buildDefinition.internalParameters with the
// slsa-tekton build type).
const (
	AnnotationDecisionID   = "gatelog.dev/decision-id"
	AnnotationLogIndex     = "gatelog.dev/log-index"
	AnnotationLogEntryUUID = "gatelog.dev/log-entry-uuid"
)

// jsonPatchOp is one RFC 6902 operation.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// stampPatch is the JSONPatch that sets the decision annotations on the
// object under review, replacing any value already there (a user cannot
// pre-set them: "add" on an existing member replaces it).
func stampPatch(object json.RawMessage, stamps map[string]string) ([]byte, error) {
	var run tektonRun
	if err := json.Unmarshal(object, &run); err != nil {
		return nil, fmt.Errorf("request.object: %w", err)
	}
	var ops []jsonPatchOp
	if run.Metadata.Annotations == nil {
		ops = append(ops, jsonPatchOp{Op: "add", Path: "/metadata/annotations", Value: stamps})
	} else {
		for _, k := range slices.Sorted(maps.Keys(stamps)) {
			ops = append(ops, jsonPatchOp{Op: "add", Path: "/metadata/annotations/" + jsonPointerEscape(k), Value: stamps[k]})
		}
	}
	return json.Marshal(ops)
}

// jsonPointerEscape escapes a JSON Pointer (RFC 6901) reference token.
func jsonPointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// renderAdmission answers the API server. The review's uid must be echoed,
// so a review without one gets a plain non-200 answer, which the API server
// treats as a failed call and, with failurePolicy: Fail, rejects.
//
// An allow for a logged decision carries a JSONPatch stamping the decision
// onto the object (the mutating webhook is the gate and the stamper in one
// call). A dry run was evaluated but not logged: its answer says so and
// carries no decision id, so it cannot be taken for a receipt.
func renderAdmission(body []byte, out adapter.Outcome) (adapter.Response, error) {
	var rev admissionReview
	if json.Unmarshal(body, &rev) != nil || rev.Request == nil || rev.Request.UID == "" {
		return plainDenial(out), nil
	}
	dryRun := rev.Request.DryRun != nil && *rev.Request.DryRun
	resp := &admissionResponse{UID: rev.Request.UID, Allowed: out.Allowed()}
	rc := out.Receipt
	switch {
	case out.Failure != nil:
		resp.Status = &status{
			Status:  "Failure",
			Code:    int32(out.Failure.Kind.HTTPStatus()),
			Reason:  failureReason(out.Failure.Kind),
			Message: "gatelog: " + out.Failure.Message,
		}
	case dryRun:
		verdict := "would be denied"
		if resp.Allowed {
			verdict = "would be allowed"
		}
		resp.Warnings = []string{"gatelog: dry run: " + verdict + "; not logged"}
		if !resp.Allowed {
			resp.Status = denied(rc.Reasons, "dry run: not logged")
		}
	case rc.DecisionID == "":
		// Only a logged decision may let a run be created.
		resp.Allowed = false
		resp.Status = &status{Status: "Failure", Code: http.StatusInternalServerError, Reason: "InternalError",
			Message: "gatelog: the decision has no id, so it was not logged; denied"}
	default:
		note := decisionNote(rc)
		resp.Warnings = []string{note}
		stamps := map[string]string{
			AnnotationDecisionID: rc.DecisionID,
			AnnotationLogIndex:   strconv.FormatInt(rc.LogIndex, 10),
		}
		if rc.UUID != "" {
			stamps[AnnotationLogEntryUUID] = rc.UUID
		}
		resp.AuditAnnotations = map[string]string{}
		for k, v := range stamps {
			resp.AuditAnnotations[strings.TrimPrefix(k, "gatelog.dev/")] = v
		}
		if !resp.Allowed {
			resp.Status = denied(rc.Reasons, note)
			break
		}
		patch, err := stampPatch(rev.Request.Object, stamps)
		if err != nil {
			// Translate accepted this object; failing here is a bug. Deny.
			resp.Allowed = false
			resp.Status = &status{Status: "Failure", Code: http.StatusInternalServerError, Reason: "InternalError",
				Message: fmt.Sprintf("gatelog: cannot stamp decision %s onto the object: %v", rc.DecisionID, err)}
			break
		}
		resp.Patch, resp.PatchType = patch, "JSONPatch"
	}
	return jsonResponse(admissionReview{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview", Response: resp})
}

// denied is the 403 status of a denial, its reasons in the message that
// kubectl and the Tekton CLI print.
func denied(reasons []string, note string) *status {
	msg := "gatelog denied"
	if len(reasons) > 0 {
		msg += ": " + strings.Join(reasons, "; ")
	}
	return &status{Status: "Failure", Code: http.StatusForbidden, Reason: "Forbidden", Message: fmt.Sprintf("%s (%s)", msg, note)}
}

// failureReason is the metav1.StatusReason for a failure kind.
func failureReason(k adapter.FailureKind) string {
	switch k {
	case adapter.BadRequest:
		return "BadRequest"
	case adapter.Unauthenticated:
		return "Unauthorized"
	case adapter.Unavailable:
		return "ServiceUnavailable"
	default:
		return "InternalError"
	}
}
