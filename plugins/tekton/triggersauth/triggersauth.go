// Package triggersauth authenticates a Tekton Triggers EventListener by the
// webhook it forwards. An EventListener calls its interceptors with no
// credential of its own, but the InterceptorRequest carries the original
// GitHub or GitLab webhook, body and headers; the webhook's secret
// (X-Hub-Signature-256, X-Gitlab-Token) proves where the event came from, as
// Triggers' own github and gitlab interceptors check it.
package triggersauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gatelog/gatelog/plugins/github"
	"github.com/gatelog/gatelog/plugins/gitlab"
	"github.com/gatelog/gatelog/record/decision"
)

// The providers of a Source.
const (
	GitHub = "github"
	GitLab = "gitlab"
)

// Source is one webhook, configured in GitHub or GitLab with a secret.
type Source struct {
	// Name names the source.
	Name string
	// Provider is GitHub or GitLab.
	Provider string
	// Secret is the webhook secret (GitHub) or secret token (GitLab).
	Secret []byte
	// Namespaces, if set, are the only namespaces of triggers (from the
	// InterceptorRequest's context.trigger_id) whose events this source
	// may vouch for, so that a secret shared with a staging repository
	// cannot vouch for a trigger in a production namespace.
	Namespaces []string
	// MFASetting is the operator's statement that every user this
	// source's webhooks name signed in with a second factor, named by a
	// short fact such as "github.org_2fa_required:acme" (the organization
	// requires two-factor authentication of its members) or
	// "gitlab.instance_requires_2fa". A webhook says nothing about MFA, so
	// without it subject.mfa is false and the bundled policy refuses
	// privileged deploys. It sets subject.mfa and records
	// subject.claims.mfa_source = "setting:<MFASetting>" (Hook.Vouch).
	MFASetting string
}

// ErrUnverified means an InterceptorRequest carried no webhook that a
// source's secret verifies. A payload that is no InterceptorRequest is a
// decision.ErrBadRequest instead.
var ErrUnverified = errors.New("the InterceptorRequest's webhook is not verified")

// The event headers that tell which system sent the webhook. The tekton
// adapter reads the actor by the same ones, so the actor is taken from the
// system whose secret was checked.
const (
	githubEventHeader = "X-Github-Event"
	gitlabEventHeader = "X-Gitlab-Event"
)

// secretHeaders never leave a Verifier: the GitLab secret token itself,
// credentials the webhook's sender may have added, and the signatures
// (of no use past here).
var secretHeaders = []string{
	gitlab.TokenHeader, github.SignatureHeader, "X-Hub-Signature",
	"Authorization", "Proxy-Authorization", "Cookie",
}

// Verifier checks InterceptorRequests against its sources.
type Verifier struct {
	sources []Source
}

// New validates the sources.
func New(sources []Source) (*Verifier, error) {
	if len(sources) == 0 {
		return nil, errors.New("at least one source is required")
	}
	seen := map[string]bool{}
	for i, src := range sources {
		switch {
		case strings.TrimSpace(src.Name) == "":
			return nil, fmt.Errorf("sources[%d].name is required", i)
		case seen[src.Name]:
			return nil, fmt.Errorf("sources[%d].name %q is used twice", i, src.Name)
		case src.Provider != GitHub && src.Provider != GitLab:
			return nil, fmt.Errorf("sources[%d].provider %q: want %q or %q", i, src.Provider, GitHub, GitLab)
		case len(src.Secret) == 0:
			return nil, fmt.Errorf("sources[%d].secret is required", i)
		}
		seen[src.Name] = true
	}
	return &Verifier{sources: slices.Clone(sources)}, nil
}

// Verified is an InterceptorRequest whose webhook a source's secret
// verified.
type Verified struct {
	// Source is the source whose secret verified the webhook.
	Source Source
	// TriggerID and Body are the request's context.trigger_id and body.
	TriggerID, Body string
	// Request is the InterceptorRequest to hand on: re-encoded from what
	// was verified, without the secret and credential headers.
	Request []byte
}

// envelope is the part of Triggers' InterceptorRequest
// (pkg/apis/triggers/v1beta1, interceptor_types.go) that is read and
// passed on. Decoding and re-encoding it hands on exactly the fields that
// were verified: a payload with two spellings of "body" (JSON field names
// match case-insensitively) cannot show the Verifier one body and the
// adapter another.
type envelope struct {
	Body              string              `json:"body,omitempty"`
	Header            map[string][]string `json:"header,omitempty"`
	Extensions        map[string]any      `json:"extensions,omitempty"`
	InterceptorParams map[string]any      `json:"interceptor_params,omitempty"`
	Context           *struct {
		EventURL  string `json:"event_url,omitempty"`
		EventID   string `json:"event_id,omitempty"`
		TriggerID string `json:"trigger_id,omitempty"`
	} `json:"context"`
}

// IsInterceptorRequest tells an InterceptorRequest from the other payloads
// of the tekton adapter's endpoint (an AdmissionReview names its kind;
// Triggers always sends a context).
func IsInterceptorRequest(body []byte) bool {
	var probe struct {
		Kind    string          `json:"kind"`
		Context json.RawMessage `json:"context"`
	}
	return json.Unmarshal(body, &probe) == nil && probe.Kind == "" && len(probe.Context) > 0
}

// Verify checks the webhook inside an InterceptorRequest. Errors wrap
// ErrUnverified, or decision.ErrBadRequest for a payload that is no
// InterceptorRequest, and name the field at fault; they never hold a
// secret.
func (v *Verifier) Verify(body []byte) (Verified, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Verified{}, fmt.Errorf("%w: InterceptorRequest: %w", decision.ErrBadRequest, err)
	}
	if env.Context == nil || env.Context.TriggerID == "" {
		return Verified{}, fmt.Errorf(`%w: InterceptorRequest: field "context.trigger_id" is required`, decision.ErrBadRequest)
	}
	header := canonical(env.Header)
	provider, err := webhookProvider(header)
	if err != nil {
		return Verified{}, err
	}
	namespace := TriggerNamespace(env.Context.TriggerID)
	var tried []string
	var firstErr error
	for _, src := range v.sources {
		if src.Provider != provider || (len(src.Namespaces) > 0 && !slices.Contains(src.Namespaces, namespace)) {
			continue
		}
		tried = append(tried, src.Name)
		if err := check(src, header, env.Body); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		out, err := encodeWithout(env, header)
		if err != nil {
			return Verified{}, err
		}
		return Verified{Source: src, TriggerID: env.Context.TriggerID, Body: env.Body, Request: out}, nil
	}
	if len(tried) == 0 {
		return Verified{}, fmt.Errorf("%w: no %s source is configured for triggers in namespace %q (webhooks config tekton_triggers.sources)", ErrUnverified, provider, namespace)
	}
	// The first source's error says what was wrong with the header; with
	// several sources it names the problem well enough.
	return Verified{}, fmt.Errorf("%w: %w (sources tried: %s)", ErrUnverified, firstErr, strings.Join(tried, ", "))
}

// check verifies the webhook's own header against the source's secret,
// exactly as GitHub and GitLab send it: one X-Hub-Signature-256 over the
// body, or one X-Gitlab-Token.
func check(src Source, header http.Header, body string) error {
	name := github.SignatureHeader
	if src.Provider == GitLab {
		name = gitlab.TokenHeader
	}
	values := header.Values(name)
	if len(values) > 1 {
		return fmt.Errorf(`field "header.%s" has %d values; a webhook sends one`, name, len(values))
	}
	var got string
	if len(values) == 1 {
		got = values[0]
	}
	if src.Provider == GitLab {
		return gitlab.VerifyToken(src.Secret, got)
	}
	return github.VerifySignature(src.Secret, []byte(body), got)
}

// webhookProvider tells from the event header which system sent the
// webhook: exactly one of X-GitHub-Event and X-Gitlab-Event must be there.
func webhookProvider(h http.Header) (string, error) {
	gh, gl := h.Values(githubEventHeader), h.Values(gitlabEventHeader)
	switch {
	case len(gh) == 1 && len(gl) == 0:
		return GitHub, nil
	case len(gl) == 1 && len(gh) == 0:
		return GitLab, nil
	case len(gh) == 0 && len(gl) == 0:
		return "", fmt.Errorf(`%w: the call has no gatelog credential, and field "header" of the InterceptorRequest has neither X-GitHub-Event nor X-Gitlab-Event: only GitHub and GitLab webhooks can be verified`, ErrUnverified)
	default:
		return "", fmt.Errorf(`%w: field "header" of the InterceptorRequest must have exactly one X-GitHub-Event or X-Gitlab-Event value`, ErrUnverified)
	}
}

// TriggerNamespace is NS of "namespaces/NS/triggers/NAME" (or
// "namespaces/NS/triggerGroups/NAME"), as Triggers' ParseTriggerID.
func TriggerNamespace(id string) string {
	parts := strings.Split(id, "/")
	if len(parts) == 4 && parts[0] == "namespaces" {
		return parts[1]
	}
	return ""
}

// StripSecrets removes the secret and credential headers from an
// InterceptorRequest that a caller with a gatelog credential sent, so that
// they reach the adapter on no path. Anything that is not an
// InterceptorRequest is returned as it is.
func StripSecrets(body []byte) []byte {
	if !IsInterceptorRequest(body) {
		return body
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return body
	}
	out, err := encodeWithout(env, canonical(env.Header))
	if err != nil {
		return body
	}
	return out
}

func canonical(h map[string][]string) http.Header {
	out := http.Header{}
	for k, vs := range h {
		out[http.CanonicalHeaderKey(k)] = append(out[http.CanonicalHeaderKey(k)], vs...)
	}
	return out
}

func encodeWithout(env envelope, header http.Header) ([]byte, error) {
	for _, k := range secretHeaders {
		header.Del(k)
	}
	env.Header = header
	out, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("re-encode InterceptorRequest: %w", err)
	}
	return out, nil
}
