package tekton

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gatelog/gatelog/engine/decision"
	"github.com/gatelog/gatelog/plugins/adapter"
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
	UID              string            `json:"uid"`
	Allowed          bool              `json:"allowed"`
	Status           *status           `json:"status,omitempty"`
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
		OwnerReferences []struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"ownerReferences"`
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
	if r.DryRun != nil && *r.DryRun {
		attrs["dry_run"] = true
	}
	action := ActionPipelineTrigger
	var runRef *ref
	var inline json.RawMessage
	sa := run.Spec.TaskRunTemplate.ServiceAccountName
	if r.Kind.Kind == "TaskRun" {
		action, runRef, inline = ActionStepRun, run.Spec.TaskRef, run.Spec.TaskSpec
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
	refKey := "pipeline"
	if r.Kind.Kind == "TaskRun" {
		refKey = "task"
	}
	switch {
	case runRef != nil && runRef.Resolver != "":
		attrs[refKey] = runRef.Name
		attrs["resolver"] = runRef.Resolver
		if rp := paramValues(runRef.Params); rp != nil {
			attrs["resolver_params"] = rp
		}
	case runRef != nil:
		attrs[refKey] = runRef.Name
	case len(inline) > 0 && string(inline) != "null":
		attrs["inline_spec"] = true
	}
	if owners := run.Metadata.OwnerReferences; len(owners) > 0 {
		// TaskRuns the Tekton controller creates for a PipelineRun (already
		// gated) are owned by it; policies can let those through.
		attrs["owner"] = map[string]any{"kind": owners[0].Kind, "name": owners[0].Name, "api_version": owners[0].APIVersion}
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

	return decision.Request{
		Subject: subject,
		Action:  action,
		Resource: decision.Resource{
			Kind:        r.Kind.Kind,
			Name:        name,
			Namespace:   namespace,
			Environment: env,
			Repository:  firstString(params, cfg.repositoryParams),
			Ref:         firstString(params, cfg.refParams),
			Attributes:  attrs,
		},
		Source: decision.Source{RequestID: r.UID},
	}, nil
}

// renderAdmission answers the API server. The review's uid must be echoed,
// so a review without one gets a plain non-200 answer, which the API server
// treats as a failed call and, with failurePolicy: Fail, rejects.
func renderAdmission(body []byte, out adapter.Outcome) (adapter.Response, error) {
	var rev admissionReview
	if json.Unmarshal(body, &rev) != nil || rev.Request == nil || rev.Request.UID == "" {
		return plainDenial(out), nil
	}
	resp := &admissionResponse{UID: rev.Request.UID, Allowed: out.Allowed()}
	switch {
	case out.Failure != nil:
		resp.Status = &status{
			Status:  "Failure",
			Code:    int32(out.Failure.Kind.HTTPStatus()),
			Reason:  failureReason(out.Failure.Kind),
			Message: "gatelog: " + out.Failure.Message,
		}
	default:
		rc := out.Receipt
		note := decisionNote(rc)
		resp.Warnings = []string{note}
		resp.AuditAnnotations = map[string]string{
			"decision-id": rc.DecisionID,
			"log-index":   strconv.FormatInt(rc.LogIndex, 10),
		}
		if rc.UUID != "" {
			resp.AuditAnnotations["log-entry-uuid"] = rc.UUID
		}
		if !resp.Allowed {
			msg := "gatelog denied"
			if len(rc.Reasons) > 0 {
				msg += ": " + strings.Join(rc.Reasons, "; ")
			}
			resp.Status = &status{
				Status:  "Failure",
				Code:    http.StatusForbidden,
				Reason:  "Forbidden",
				Message: fmt.Sprintf("%s (%s)", msg, note),
			}
		}
	}
	return jsonResponse(admissionReview{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview", Response: resp})
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
