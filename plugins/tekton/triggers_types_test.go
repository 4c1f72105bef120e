package tekton

// The Tekton Triggers interceptor types, copied field for field from
// github.com/tektoncd/triggers v0.33.0, pkg/apis/triggers/v1beta1/
// interceptor_types.go (Copyright 2020 The Tekton Authors, Apache License
// 2.0). The module itself is not imported: its API package pulls in
// knative.dev/pkg, tektoncd/pipeline and k8s.io/client-go v0.32, which does
// not build against the k8s.io/api v0.37 this module uses. The tests decode
// the fixtures and the adapter's answers with these types strictly, so a
// field the adapter names differently fails the tests.

import "google.golang.org/grpc/codes"

type InterceptorRequest struct {
	Body              string                 `json:"body,omitempty"`
	Header            map[string][]string    `json:"header,omitempty"`
	Extensions        map[string]interface{} `json:"extensions,omitempty"`
	InterceptorParams map[string]interface{} `json:"interceptor_params,omitempty"`
	Context           *TriggerContext        `json:"context"`
}

type TriggerContext struct {
	EventURL  string `json:"event_url,omitempty"`
	EventID   string `json:"event_id,omitempty"`
	TriggerID string `json:"trigger_id,omitempty"`
}

type InterceptorResponse struct {
	Extensions map[string]interface{} `json:"extensions,omitempty"`
	Continue   bool                   `json:"continue"`
	Status     Status                 `json:"status"`
}

type Status struct {
	Code    codes.Code `json:"code,omitempty"`
	Message string     `json:"message,omitempty"`
}
