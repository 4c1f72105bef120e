// Package tekton is gatelog's adapter for Tekton. It answers two kinds of
// payload on one endpoint: the Kubernetes API server's AdmissionReview for a
// PipelineRun or TaskRun being created (a mutating admission webhook that
// gates the create and stamps the decision onto the run), and Tekton
// Triggers' InterceptorRequest (a ClusterInterceptor gating the runs an
// EventListener would create).
package tekton

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/record/decision"
)

// Name and Version identify the adapter in Request.Source.
const (
	Name    = "tekton"
	Version = "1.0.0"
)

// The payload kinds the adapter accepts.
const (
	KindAdmissionReview    = "admission.k8s.io/v1 AdmissionReview"
	KindInterceptorRequest = "triggers.tekton.dev InterceptorRequest"
)

// The actions the adapter asks about.
const (
	// ActionPipelineTrigger: a PipelineRun is created, or an EventListener
	// is about to create runs for an event.
	ActionPipelineTrigger = "pipeline.trigger"
	// ActionStepRun: a TaskRun is created outside any environment, or a
	// TaskRun or child PipelineRun is created by the Tekton controller for
	// a PipelineRun it owns (see Resource.Attributes["owner"]).
	ActionStepRun = "step.run"
	// ActionDeploy: a PipelineRun or TaskRun is created into an
	// environment (see SettingNamespaceEnvironments), except the runs the
	// controller creates for an already gated PipelineRun.
	ActionDeploy = "deploy"
)

// DefaultControllerUsername is the Tekton Pipelines controller's service
// account as the API server authenticates it (the controller Deployment in
// tektoncd/pipeline config/controller.yaml runs as tekton-pipelines-controller
// in namespace tekton-pipelines).
const DefaultControllerUsername = "system:serviceaccount:tekton-pipelines:tekton-pipelines-controller"

// Settings keys accepted by Configure.
const (
	// SettingNamespaceEnvironments maps namespaces to environments,
	// "ns=env,ns2=env2". It wins over the label and the param below: the
	// namespace is the one thing the creator of a run cannot choose freely.
	SettingNamespaceEnvironments = "namespace_environments"
	// SettingEnvironmentLabel is the label on the run naming its
	// environment; default "gatelog.dev/environment".
	SettingEnvironmentLabel = "environment_label"
	// SettingEnvironmentParam is the run param naming its environment when
	// there is no label; default "environment".
	SettingEnvironmentParam = "environment_param"
	// SettingRepositoryParams and SettingRefParams list, comma separated,
	// the run params holding the repository and the git ref; defaults
	// "repo-url,git-url,repository" and "revision,git-revision,ref".
	SettingRepositoryParams = "repository_params"
	SettingRefParams        = "ref_params"
	// SettingControllerUsername is the username (request.userInfo) of the
	// Tekton controller, whose TaskRuns for a PipelineRun it owns are
	// step.run; default DefaultControllerUsername.
	SettingControllerUsername = "controller_username"
	// SettingMFAExtraKey names a request.userInfo.extra key holding the
	// user's token amr claim, mapped there by the API server's
	// AuthenticationConfiguration (claimMappings.extra); a value "mfa" sets
	// subject.mfa, with subject.claims.mfa_source
	// "k8s-userinfo-extra:<key>". Default none: subject.mfa stays false.
	SettingMFAExtraKey = "mfa_extra_key"
)

type settings struct {
	namespaceEnv       map[string]string
	environmentLabel   string
	environmentParam   string
	repositoryParams   []string
	refParams          []string
	controllerUsername string
	mfaExtraKey        string
}

func defaultSettings() settings {
	return settings{
		environmentLabel:   "gatelog.dev/environment",
		environmentParam:   "environment",
		repositoryParams:   []string{"repo-url", "git-url", "repository"},
		refParams:          []string{"revision", "git-revision", "ref"},
		controllerUsername: DefaultControllerUsername,
	}
}

// Adapter is the Tekton adapter. The zero value is not usable; call New.
type Adapter struct {
	mu  sync.RWMutex
	cfg settings
}

// New returns a Tekton adapter with default settings.
func New() *Adapter { return &Adapter{cfg: defaultSettings()} }

var _ adapter.Adapter = (*Adapter)(nil)

// Info implements adapter.Adapter.
func (a *Adapter) Info(context.Context) (adapter.Info, error) {
	body, _ := json.Marshal(map[string]any{"allow": false, "reasons": []string{"gatelog tekton adapter is unavailable"}})
	return adapter.Info{
		Name:    Name,
		Version: Version,
		Kinds:   []string{KindAdmissionReview, KindInterceptorRequest},
		// A non-200 answer is a failed webhook call to the API server (the
		// MutatingWebhookConfiguration has failurePolicy: Fail) and an
		// error to an EventListener: both block the run.
		Unavailable: &adapter.Response{
			Status:  http.StatusServiceUnavailable,
			Headers: http.Header{"Content-Type": {"application/json"}, "Retry-After": {"5"}},
			Body:    body,
		},
	}, nil
}

// Configure implements adapter.Adapter; see the Setting constants.
func (a *Adapter) Configure(_ context.Context, in map[string]string) error {
	cfg := defaultSettings()
	for _, k := range slices.Sorted(maps.Keys(in)) {
		v := strings.TrimSpace(in[k])
		switch k {
		case SettingNamespaceEnvironments:
			cfg.namespaceEnv = map[string]string{}
			for pair := range strings.SplitSeq(v, ",") {
				if pair = strings.TrimSpace(pair); pair == "" {
					continue
				}
				ns, env, ok := strings.Cut(pair, "=")
				if !ok || strings.TrimSpace(ns) == "" || strings.TrimSpace(env) == "" {
					return fmt.Errorf("%w: %s: %q is not namespace=environment", adapter.ErrBadSettings, k, pair)
				}
				cfg.namespaceEnv[strings.TrimSpace(ns)] = strings.TrimSpace(env)
			}
		case SettingEnvironmentLabel:
			cfg.environmentLabel = v
		case SettingEnvironmentParam:
			cfg.environmentParam = v
		case SettingRepositoryParams:
			cfg.repositoryParams = splitList(v)
		case SettingRefParams:
			cfg.refParams = splitList(v)
		case SettingControllerUsername:
			if v == "" {
				return fmt.Errorf("%w: %s: must not be empty", adapter.ErrBadSettings, k)
			}
			cfg.controllerUsername = v
		case SettingMFAExtraKey:
			cfg.mfaExtraKey = v
		default:
			return fmt.Errorf("%w: unknown setting %q (known: %s, %s, %s, %s, %s, %s, %s)", adapter.ErrBadSettings, k,
				SettingNamespaceEnvironments, SettingEnvironmentLabel, SettingEnvironmentParam, SettingRepositoryParams, SettingRefParams,
				SettingControllerUsername, SettingMFAExtraKey)
		}
	}
	a.mu.Lock()
	a.cfg = cfg
	a.mu.Unlock()
	return nil
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (a *Adapter) settings() settings {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.cfg
}

// MaxPayloadBytes bounds an accepted payload (an AdmissionReview carries the
// whole object, which etcd limits to about 1.5 MiB).
const MaxPayloadBytes = 3 << 20

// probe tells the two payload kinds apart: an AdmissionReview names its
// kind, an InterceptorRequest always has a context.
type probe struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Context    json.RawMessage `json:"context"`
	Body       json.RawMessage `json:"body"`
}

type payloadKind int

const (
	unknownPayload payloadKind = iota
	admissionPayload
	interceptorPayload
)

func kindOf(body []byte) (payloadKind, probe, error) {
	var p probe
	if len(body) > MaxPayloadBytes {
		return unknownPayload, p, adapter.BadPayload("payload of %d bytes exceeds %d", len(body), MaxPayloadBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return unknownPayload, p, adapter.BadPayload("empty payload: expected an AdmissionReview or an InterceptorRequest")
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return unknownPayload, p, adapter.BadPayload("payload is not a JSON object: %v", err)
	}
	switch {
	case p.Kind == "AdmissionReview":
		if p.APIVersion != "admission.k8s.io/v1" {
			return unknownPayload, p, adapter.BadPayload("AdmissionReview apiVersion %q: only admission.k8s.io/v1 is supported (set admissionReviewVersions: [v1])", p.APIVersion)
		}
		return admissionPayload, p, nil
	case p.Kind != "":
		return unknownPayload, p, adapter.BadPayload("kind %q: expected AdmissionReview or an InterceptorRequest", p.Kind)
	case len(p.Context) > 0 || len(p.Body) > 0:
		return interceptorPayload, p, nil
	default:
		return unknownPayload, p, adapter.BadPayload("expected an AdmissionReview (kind) or an InterceptorRequest (context, body)")
	}
}

// Translate implements adapter.Adapter.
func (a *Adapter) Translate(_ context.Context, in adapter.Native) (decision.Request, error) {
	kind, _, err := kindOf(in.Body)
	if err != nil {
		return decision.Request{}, err
	}
	cfg := a.settings()
	var req decision.Request
	if kind == admissionPayload {
		req, err = translateAdmission(cfg, in.Body)
	} else {
		req, err = translateInterceptor(cfg, in.Body)
	}
	if err != nil {
		return decision.Request{}, err
	}
	req.Resource.System = Name
	req.Source.Adapter = Name
	req.Source.AdapterVersion = Version
	return req, nil
}

// Render implements adapter.Adapter.
func (a *Adapter) Render(_ context.Context, in adapter.Native, out adapter.Outcome) (adapter.Response, error) {
	if err := out.Validate(); err != nil {
		return adapter.Response{}, err
	}
	// A payload that is neither kind (Translate rejected it) still gets an
	// answer; it never allows, whatever the outcome says.
	kind, _, _ := kindOf(in.Body)
	switch kind {
	case admissionPayload:
		return renderAdmission(in.Body, out)
	case interceptorPayload:
		return renderInterceptor(out)
	default:
		return plainDenial(out), nil
	}
}

func plainDenial(out adapter.Outcome) adapter.Response {
	status := http.StatusBadRequest
	if out.Failure != nil && out.Failure.Kind != adapter.BadRequest {
		status = out.Failure.Kind.HTTPStatus()
	}
	body, _ := json.Marshal(map[string]any{"allow": false, "reasons": out.Reasons()})
	return adapter.Response{
		Status:  status,
		Headers: http.Header{"Content-Type": {"application/json"}},
		Body:    append(body, '\n'),
	}
}

func jsonResponse(v any) (adapter.Response, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return adapter.Response{}, fmt.Errorf("encode response: %w", err)
	}
	return adapter.Response{
		Status:  http.StatusOK,
		Headers: http.Header{"Content-Type": {"application/json"}},
		Body:    append(body, '\n'),
	}, nil
}

// decisionNote is the line that links a Kubernetes object or a Triggers
// event to its gatelog decision and log entry.
func decisionNote(r *decision.Receipt) string {
	return fmt.Sprintf("gatelog.dev/decision: %s log-index %d", r.DecisionID, r.LogIndex)
}
