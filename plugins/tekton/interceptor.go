package tekton

import (
	"encoding/json"
	"strings"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/record/decision"
)

// The InterceptorRequest and InterceptorResponse fields, named as in
// github.com/tektoncd/triggers pkg/apis/triggers/v1beta1 (interceptor_types.go).
type interceptorRequest struct {
	Body              string              `json:"body"`
	Header            map[string][]string `json:"header"`
	InterceptorParams map[string]any      `json:"interceptor_params"`
	Context           *triggerContext     `json:"context"`
}

type triggerContext struct {
	EventURL  string `json:"event_url"`
	EventID   string `json:"event_id"`
	TriggerID string `json:"trigger_id"`
}

type interceptorStatus struct {
	// Code is a google.rpc.Code (gRPC status code), as Triggers expects.
	Code    int    `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

type interceptorResponse struct {
	Extensions map[string]any    `json:"extensions,omitempty"`
	Continue   bool              `json:"continue"`
	Status     interceptorStatus `json:"status"`
}

// gRPC status codes used in interceptor answers (google.golang.org/grpc/codes).
const (
	codeInvalidArgument  = 3
	codePermissionDenied = 7
	codeInternal         = 13
	codeUnavailable      = 14
	codeUnauthenticated  = 16
)

// Interceptor params a Trigger may set on the gatelog ClusterInterceptor.
const (
	// ParamAction overrides the action (default pipeline.trigger).
	ParamAction = "action"
	// ParamEnvironment names the environment the trigger deploys to.
	ParamEnvironment = "environment"
	// ParamSubjectPath is a dotted path into the event body naming who
	// caused the event, for sources other than GitHub and GitLab.
	ParamSubjectPath = "subject_path"
)

// lookup follows a dotted path ("sender.login") through decoded JSON.
func lookup(v any, path string) string {
	for part := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[part]
	}
	s, _ := v.(string)
	return s
}

func translateInterceptor(cfg settings, body []byte) (decision.Request, error) {
	var ir interceptorRequest
	if err := json.Unmarshal(body, &ir); err != nil {
		return decision.Request{}, adapter.BadPayload("InterceptorRequest: %v", err)
	}
	if ir.Context == nil || ir.Context.TriggerID == "" {
		return decision.Request{}, adapter.BadPayload(`InterceptorRequest: field "context.trigger_id" is required`)
	}
	var event any
	if strings.TrimSpace(ir.Body) != "" {
		if err := json.Unmarshal([]byte(ir.Body), &event); err != nil {
			return decision.Request{}, adapter.BadPayload("InterceptorRequest: field \"body\" is not JSON: %v", err)
		}
	}
	param := func(k string) string { s, _ := ir.InterceptorParams[k].(string); return strings.TrimSpace(s) }

	// The sender named in the event is a claim of whoever sent the webhook.
	// The daemon keeps it as the subject only when it verified the webhook
	// (the X-Hub-Signature-256 or X-Gitlab-Token of the system named by the
	// event header read here) or the caller may vouch; otherwise it is
	// recorded as unverified.
	ev := readEvent(ir.Header, event)
	if p := param(ParamSubjectPath); p != "" {
		// A verified GitHub or GitLab webhook vouches for the user GitHub
		// or GitLab names, not for any field a path could pick (a commit
		// author is whatever the committer typed).
		if ev.provider != "" {
			return decision.Request{}, adapter.BadPayload("InterceptorRequest: interceptor param %q is for sources other than GitHub and GitLab; the sender of a %s event is read from %s", ParamSubjectPath, ev.describe(), strings.TrimPrefix(ev.expected(), "expected "))
		}
		ev.actor = lookup(event, p)
		if ev.actor == "" {
			return decision.Request{}, adapter.BadPayload("InterceptorRequest: the event body has no string at %q (interceptor param %q)", p, ParamSubjectPath)
		}
	}
	if ev.actor == "" {
		return decision.Request{}, adapter.BadPayload("InterceptorRequest: no sender in the %s event body: %s, or set the interceptor param %q", ev.describe(), ev.expected(), ParamSubjectPath)
	}

	namespace, name := parseTriggerID(ir.Context.TriggerID)
	action := param(ParamAction)
	if action == "" {
		action = ActionPipelineTrigger
	}
	env := cfg.namespaceEnv[namespace]
	if env == "" {
		env = param(ParamEnvironment)
	}
	attrs := map[string]any{"trigger_id": ir.Context.TriggerID}
	if ir.Context.EventURL != "" {
		attrs["event_url"] = ir.Context.EventURL
	}
	if ev.eventType != "" {
		attrs["event_type"] = ev.eventType
	}
	if ev.provider != "" {
		attrs["webhook"] = ev.provider
	}
	if ev.delivery != "" {
		attrs["webhook_delivery"] = ev.delivery
	}
	if ev.targetRef != "" {
		attrs["target_ref"] = ev.targetRef
	}
	unverified := map[string]any{"sender": ev.actor}
	if ev.author != "" {
		unverified["commit_author"] = ev.author
	}
	return decision.Request{
		Subject: decision.Subject{ID: ev.actor, Kind: "user"},
		Action:  action,
		Resource: decision.Resource{
			Kind:        "Trigger",
			Name:        name,
			Namespace:   namespace,
			Environment: env,
			Repository:  ev.repository,
			Ref:         ev.ref,
			Attributes:  attrs,
		},
		Context: decision.Context{Unverified: unverified},
		Source:  decision.Source{RequestID: ir.Context.EventID},
	}, nil
}

// parseTriggerID splits "namespaces/NS/triggers/NAME", and the
// "namespaces/NS/triggerGroups/NAME" of a trigger group, as the
// EventListener's sink writes them.
func parseTriggerID(id string) (namespace, name string) {
	parts := strings.Split(id, "/")
	if len(parts) == 4 && parts[0] == "namespaces" && (parts[2] == "triggers" || parts[2] == "triggerGroups") {
		return parts[1], parts[3]
	}
	return "", id
}

func headerValue(h map[string][]string, key string) string {
	for k, v := range h {
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// renderInterceptor answers an EventListener: continue only on an allow.
// Triggers reads the body of a 200 answer; the status code is a gRPC code.
func renderInterceptor(out adapter.Outcome) (adapter.Response, error) {
	resp := interceptorResponse{Continue: out.Allowed()}
	switch {
	case out.Failure != nil:
		resp.Status = interceptorStatus{Code: failureCode(out.Failure.Kind), Message: "gatelog: " + out.Failure.Message}
	default:
		rc := out.Receipt
		ext := map[string]any{
			"decision_id": rc.DecisionID,
			"allow":       rc.Allow,
			"reasons":     rc.Reasons,
			"log_index":   rc.LogIndex,
		}
		if rc.UUID != "" {
			ext["log_entry_uuid"] = rc.UUID
		}
		resp.Extensions = map[string]any{"gatelog": ext}
		if !rc.Allow {
			msg := "gatelog denied"
			if len(rc.Reasons) > 0 {
				msg += ": " + strings.Join(rc.Reasons, "; ")
			}
			resp.Status = interceptorStatus{Code: codePermissionDenied, Message: msg + " (" + decisionNote(rc) + ")"}
		}
	}
	return jsonResponse(resp)
}

func failureCode(k adapter.FailureKind) int {
	switch k {
	case adapter.BadRequest:
		return codeInvalidArgument
	case adapter.Unauthenticated:
		return codeUnauthenticated
	case adapter.Unavailable:
		return codeUnavailable
	default:
		return codeInternal
	}
}
