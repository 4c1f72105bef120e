package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatelog/gatelog/engine/decision"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/github"
	"github.com/gatelog/gatelog/plugins/gitlab"
)

// TektonTriggersWebhook lets a Tekton Triggers EventListener call the
// gatelog ClusterInterceptor without a gatelog credential.
//
// An EventListener calls its interceptors with neither a client
// certificate nor a token: Triggers' interceptor client only checks the
// interceptor's server certificate. What it does forward is the original
// webhook — body and headers — inside the InterceptorRequest. So the
// daemon authenticates the webhook, as Triggers' own github and gitlab
// interceptors do with their secretRef: X-Hub-Signature-256 (HMAC-SHA256
// of the body) for GitHub, X-Gitlab-Token for GitLab, each against a
// secret configured here. A verified webhook is the caller
// (webhook:tekton-triggers:<source>) and vouches for the user the event
// names. A call with neither a gatelog credential nor a verified webhook
// is refused.
type TektonTriggersWebhook struct {
	// Adapter is the adapter endpoint the EventListener calls (default
	// "tekton"). Other callers of that endpoint (the API server's
	// admission reviews, callers with a gatelog credential) are
	// authenticated as before.
	Adapter string
	// Sources are the webhooks whose events may reach the interceptor.
	Sources []TriggersSource
	// ReplayWindow is how long a forwarded webhook is remembered so that
	// the same event cannot pass the same trigger twice (default 24h). A
	// webhook carries no signed time, so a replay older than the window
	// is not recognised.
	ReplayWindow time.Duration
}

// TriggersSource is one webhook configured in GitHub or GitLab with a
// secret that Triggers' EventListener receives.
type TriggersSource struct {
	// Name names the source in the caller ID and in the log.
	Name string
	// Provider is "github" or "gitlab".
	Provider string
	// Secret is the webhook secret (GitHub) or secret token (GitLab): the
	// value of the Kubernetes Secret the EventListener's github or gitlab
	// interceptor names in its secretRef.
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
	// subject.claims.mfa_source = "setting:<MFASetting>".
	MFASetting string
}

// The providers of a TriggersSource.
const (
	ProviderGitHub = "github"
	ProviderGitLab = "gitlab"
)

// ErrWebhookUnverified means an InterceptorRequest carried no webhook that
// a configured source's secret verifies.
var ErrWebhookUnverified = errors.New("the InterceptorRequest's webhook is not verified")

// The event headers that tell which system sent the webhook; the daemon
// and the tekton adapter read the same ones, so the actor the adapter
// takes is from the system whose secret was checked.
const (
	githubEventHeader = "X-Github-Event"
	gitlabEventHeader = "X-Gitlab-Event"
)

// forwardedHeaderDenylist are headers of the original webhook that never
// reach the adapter: the GitLab secret token itself, credentials the
// webhook's sender may have added, and the signatures (useless past here).
var forwardedHeaderDenylist = []string{
	gitlab.TokenHeader, github.SignatureHeader, "X-Hub-Signature",
	"Authorization", "Proxy-Authorization", "Cookie",
}

// TektonTriggersSeenFile in the data directory remembers the webhooks
// forwarded to each trigger (hashed), to refuse replays.
const TektonTriggersSeenFile = "tekton-triggers-seen"

// ErrWebhookReplayed means the same webhook already passed the same
// trigger.
var ErrWebhookReplayed = errors.New("this webhook was already forwarded for this trigger")

// triggersHook authenticates the EventListener's calls (see
// TektonTriggersWebhook).
type triggersHook struct {
	name    string
	sources []triggersSource
	window  time.Duration
	seen    *identity.ReplayCache // nil in tests of verify alone
}

type triggersSource struct {
	TriggersSource
	caller identity.Caller
}

func newTriggersHook(cfg TektonTriggersWebhook) (*triggersHook, error) {
	if len(cfg.Sources) == 0 {
		return nil, errors.New("webhooks: tekton_triggers: at least one source is required")
	}
	if cfg.ReplayWindow <= 0 {
		cfg.ReplayWindow = 24 * time.Hour
	}
	h := &triggersHook{name: defaultName(cfg.Adapter, "tekton"), window: cfg.ReplayWindow}
	seen := map[string]bool{}
	for i, src := range cfg.Sources {
		switch {
		case strings.TrimSpace(src.Name) == "":
			return nil, fmt.Errorf("webhooks: tekton_triggers.sources[%d].name is required", i)
		case seen[src.Name]:
			return nil, fmt.Errorf("webhooks: tekton_triggers.sources[%d].name %q is used twice", i, src.Name)
		case src.Provider != ProviderGitHub && src.Provider != ProviderGitLab:
			return nil, fmt.Errorf("webhooks: tekton_triggers.sources[%d].provider %q: want %q or %q", i, src.Provider, ProviderGitHub, ProviderGitLab)
		case len(src.Secret) == 0:
			return nil, fmt.Errorf("webhooks: tekton_triggers.sources[%d].secret is required", i)
		}
		seen[src.Name] = true
		h.sources = append(h.sources, triggersSource{
			TriggersSource: src,
			caller: identity.Caller{
				Caller:      decision.Caller{ID: "webhook:tekton-triggers:" + src.Name, Kind: kindWebhook},
				Permissions: []string{identity.PermDecide, identity.PermVouch},
			},
		})
	}
	return h, nil
}

// interceptorEnvelope is the part of Triggers' InterceptorRequest
// (pkg/apis/triggers/v1beta1, interceptor_types.go) the daemon reads and
// passes on. Decoding and re-encoding it hands the adapter exactly the
// fields that were verified: a payload with two spellings of "body" (JSON
// field names match case-insensitively) cannot show the daemon one body
// and the adapter another.
type interceptorEnvelope struct {
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

// isInterceptorRequest tells an InterceptorRequest from the other payloads
// of the tekton endpoint (an AdmissionReview names its kind).
func isInterceptorRequest(body []byte) bool {
	var probe struct {
		Kind    string          `json:"kind"`
		Context json.RawMessage `json:"context"`
	}
	return json.Unmarshal(body, &probe) == nil && probe.Kind == "" && len(probe.Context) > 0
}

// verify checks the webhook inside an InterceptorRequest and returns the
// caller it authenticates and the request to hand the adapter (re-encoded,
// without the secret and credential headers). Errors wrap
// ErrWebhookUnverified, or decision.ErrBadRequest for a payload that is no
// InterceptorRequest, and name the field at fault.
func (h *triggersHook) verify(body []byte) (identity.Caller, []byte, error) {
	var env interceptorEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return identity.Caller{}, nil, fmt.Errorf("%w: InterceptorRequest: %w", decision.ErrBadRequest, err)
	}
	if env.Context == nil || env.Context.TriggerID == "" {
		return identity.Caller{}, nil, fmt.Errorf(`%w: InterceptorRequest: field "context.trigger_id" is required`, decision.ErrBadRequest)
	}
	header := http.Header{}
	for k, vs := range env.Header {
		header[http.CanonicalHeaderKey(k)] = append(header[http.CanonicalHeaderKey(k)], vs...)
	}
	provider, err := webhookProvider(header)
	if err != nil {
		return identity.Caller{}, nil, err
	}
	namespace := triggerNamespace(env.Context.TriggerID)
	var tried []string
	var firstErr error
	for _, src := range h.sources {
		if src.Provider != provider || (len(src.Namespaces) > 0 && !slices.Contains(src.Namespaces, namespace)) {
			continue
		}
		tried = append(tried, src.Name)
		err := src.check(header, env.Body)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, k := range forwardedHeaderDenylist {
			header.Del(k)
		}
		env.Header = header
		out, err := json.Marshal(env)
		if err != nil {
			return identity.Caller{}, nil, fmt.Errorf("re-encode InterceptorRequest: %w", err)
		}
		return src.caller, out, nil
	}
	if len(tried) == 0 {
		return identity.Caller{}, nil, fmt.Errorf("%w: no %s source is configured for triggers in namespace %q (webhooks config tekton_triggers.sources)", ErrWebhookUnverified, provider, namespace)
	}
	// The first source's error says what was wrong with the header; with
	// several sources it names the problem well enough.
	return identity.Caller{}, nil, fmt.Errorf("%w: %w (sources tried: %s)", ErrWebhookUnverified, firstErr, strings.Join(tried, ", "))
}

// use remembers that the verified webhook body passed the trigger. The
// EventListener calls each trigger's interceptors once per event, and GitHub
// and GitLab put each event's own identifiers (commits, IDs, times) in its
// body, so the same body on the same trigger again is a replay: of a
// captured delivery, or GitHub's "Redeliver". It is refused, and so is a
// webhook the memory cannot record (fail closed).
func (h *triggersHook) use(triggerID string, verified []byte, now time.Time) error {
	if h.seen == nil {
		return errors.New("the replay memory of Triggers webhooks is not open")
	}
	var env interceptorEnvelope
	if err := json.Unmarshal(verified, &env); err != nil {
		return fmt.Errorf("%w: %w", ErrWebhookUnverified, err)
	}
	sum := sha256.Sum256([]byte(env.Body))
	err := h.seen.Use("tekton-trigger:"+triggerID, hex.EncodeToString(sum[:]), now.Add(h.window), now)
	switch {
	case errors.Is(err, identity.ErrReplayed):
		return fmt.Errorf("%w (%s, within %s): replays are refused; push again to trigger again", ErrWebhookReplayed, triggerID, h.window)
	case err != nil:
		return fmt.Errorf("the webhook could not be recorded against replays: %w", err)
	}
	return nil
}

// vouchedSubject makes the subject a Triggers source vouched for what the
// daemon knows of it: the user the event names, and the operator's
// statements about the source's senders (MFASetting). Anything else the
// adapter put on the subject is a claim of the payload and is dropped.
func (s *Server) vouchedSubject(req *decision.Request, caller identity.Caller) {
	if s.webhooks == nil || s.webhooks.triggers == nil || req.Subject.AssertedBy != caller.ID {
		return
	}
	for _, src := range s.webhooks.triggers.sources {
		if src.caller.ID != caller.ID {
			continue
		}
		sub := decision.Subject{ID: req.Subject.ID, Kind: req.Subject.Kind, Verified: true, AssertedBy: caller.ID}
		if src.MFASetting != "" {
			sub.MFA = true
			sub.Claims = map[string]any{"mfa_source": "setting:" + src.MFASetting}
		}
		req.Subject = sub
		return
	}
}

// check verifies the webhook's own header against the source's secret,
// exactly as GitHub and GitLab send it: one X-Hub-Signature-256 over the
// body, or one X-Gitlab-Token.
func (s triggersSource) check(header http.Header, body string) error {
	name := github.SignatureHeader
	if s.Provider == ProviderGitLab {
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
	if s.Provider == ProviderGitLab {
		return gitlab.VerifyToken(s.Secret, got)
	}
	return github.VerifySignature(s.Secret, []byte(body), got)
}

// webhookProvider tells from the event header which system sent the
// webhook. Exactly one of X-GitHub-Event and X-Gitlab-Event must be there:
// the adapter reads the actor by the same header.
func webhookProvider(h http.Header) (string, error) {
	gh, gl := h.Values(githubEventHeader), h.Values(gitlabEventHeader)
	switch {
	case len(gh) == 1 && len(gl) == 0:
		return ProviderGitHub, nil
	case len(gl) == 1 && len(gh) == 0:
		return ProviderGitLab, nil
	case len(gh) == 0 && len(gl) == 0:
		return "", fmt.Errorf(`%w: the call has no gatelog credential, and field "header" of the InterceptorRequest has neither X-GitHub-Event nor X-Gitlab-Event: only GitHub and GitLab webhooks can be verified`, ErrWebhookUnverified)
	default:
		return "", fmt.Errorf(`%w: field "header" of the InterceptorRequest must have exactly one X-GitHub-Event or X-Gitlab-Event value`, ErrWebhookUnverified)
	}
}

// triggerNamespace is NS of "namespaces/NS/triggers/NAME" (or
// "namespaces/NS/triggerGroups/NAME"), as Triggers' ParseTriggerID.
func triggerNamespace(id string) string {
	parts := strings.Split(id, "/")
	if len(parts) == 4 && parts[0] == "namespaces" {
		return parts[1]
	}
	return ""
}

// stripInterceptorSecrets removes the secret and credential headers from
// an InterceptorRequest that a caller with a gatelog credential sent, so
// that they reach the adapter on no path. Anything that is not an
// InterceptorRequest is returned as it is.
func stripInterceptorSecrets(body []byte) []byte {
	if !isInterceptorRequest(body) {
		return body
	}
	var env interceptorEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return body
	}
	header := http.Header{}
	for k, vs := range env.Header {
		header[http.CanonicalHeaderKey(k)] = append(header[http.CanonicalHeaderKey(k)], vs...)
	}
	for _, k := range forwardedHeaderDenylist {
		header.Del(k)
	}
	env.Header = header
	out, err := json.Marshal(env)
	if err != nil {
		return body
	}
	return out
}

// authenticateAdapterCall authenticates a call of an adapter endpoint and
// returns the payload to translate. A call of the Triggers endpoint that
// presents no gatelog credential is authenticated by the webhook inside
// its InterceptorRequest; everything else by its credential.
func (s *Server) authenticateAdapterCall(r *http.Request, name string, body []byte) (identity.Caller, []byte, *adapter.Failure) {
	var h *triggersHook
	if s.webhooks != nil {
		h = s.webhooks.triggers
	}
	if h == nil || name != h.name {
		c, f := s.authenticateQuietly(r)
		return c, body, f
	}
	hasCredential := r.Header.Get("Authorization") != "" || (r.TLS != nil && len(r.TLS.PeerCertificates) > 0)
	if hasCredential || !isInterceptorRequest(body) {
		c, f := s.authenticateQuietly(r)
		return c, stripInterceptorSecrets(body), f
	}
	c, out, err := h.verify(body)
	switch {
	case errors.Is(err, decision.ErrBadRequest):
		return c, stripInterceptorSecrets(body), &adapter.Failure{Kind: adapter.BadRequest, Message: err.Error()}
	case err != nil:
		s.door.counters.ObserveAuth(kindWebhook, identity.ReasonBadSignature)
		return c, stripInterceptorSecrets(body), &adapter.Failure{Kind: adapter.Unauthenticated, Message: err.Error()}
	}
	if s.door.limiter != nil && !s.door.limiter.Allow(c.ID, s.cfg.Now()) {
		s.door.counters.ObserveAuth(kindWebhook, "rate_limited")
		return c, out, &adapter.Failure{Kind: adapter.Unavailable, Message: "caller " + c.ID + " is over its rate limit"}
	}
	var env interceptorEnvelope
	_ = json.Unmarshal(out, &env) // verify produced it
	switch err := h.use(env.Context.TriggerID, out, s.cfg.Now()); {
	case errors.Is(err, ErrWebhookReplayed):
		s.door.counters.ObserveAuth(kindWebhook, identity.ReasonReplayed)
		return c, out, &adapter.Failure{Kind: adapter.Unauthenticated, Message: err.Error()}
	case err != nil:
		s.logger.Warn("Triggers webhook could not be recorded; refusing", "caller", c.ID, "err", err)
		return c, out, &adapter.Failure{Kind: adapter.Unavailable, Message: err.Error()}
	}
	s.door.counters.ObserveAuth(kindWebhook, "ok")
	return c, out, nil
}
