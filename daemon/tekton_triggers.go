package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/gatelog/gatelog/daemon/triggersauth"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/record/decision"
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
	ProviderGitHub = triggersauth.GitHub
	ProviderGitLab = triggersauth.GitLab
)

// ErrWebhookUnverified means an InterceptorRequest carried no webhook that
// a configured source's secret verifies.
var ErrWebhookUnverified = triggersauth.ErrUnverified

// TektonTriggersSeenFile in the data directory remembers the webhooks
// forwarded to each trigger (hashed), to refuse replays.
const TektonTriggersSeenFile = "tekton-triggers-seen"

// ErrWebhookReplayed means the same webhook already passed the same
// trigger.
var ErrWebhookReplayed = errors.New("this webhook was already forwarded for this trigger")

// triggersHook authenticates the EventListener's calls (see
// TektonTriggersWebhook); triggersauth does the checking.
type triggersHook struct {
	name     string
	verifier *triggersauth.Verifier
	sources  []triggersSource
	window   time.Duration
	seen     *identity.ReplayCache // nil in tests of verify alone
}

type triggersSource struct {
	TriggersSource
	caller identity.Caller
}

func newTriggersHook(cfg TektonTriggersWebhook) (*triggersHook, error) {
	var srcs []triggersauth.Source
	for _, src := range cfg.Sources {
		srcs = append(srcs, triggersauth.Source{Name: src.Name, Provider: src.Provider, Secret: src.Secret, Namespaces: src.Namespaces})
	}
	v, err := triggersauth.New(srcs)
	if err != nil {
		return nil, fmt.Errorf("webhooks: tekton_triggers: %w", err)
	}
	if cfg.ReplayWindow <= 0 {
		cfg.ReplayWindow = 24 * time.Hour
	}
	h := &triggersHook{name: defaultName(cfg.Adapter, "tekton"), verifier: v, window: cfg.ReplayWindow}
	for _, src := range cfg.Sources {
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

// verify checks the webhook inside an InterceptorRequest and returns the
// caller it authenticates and what to hand the adapter.
func (h *triggersHook) verify(body []byte) (identity.Caller, triggersauth.Verified, error) {
	v, err := h.verifier.Verify(body)
	if err != nil {
		return identity.Caller{}, v, err
	}
	for _, src := range h.sources {
		if src.Name == v.Source.Name {
			return src.caller, v, nil
		}
	}
	return identity.Caller{}, triggersauth.Verified{}, fmt.Errorf("%w: source %q is not configured", ErrWebhookUnverified, v.Source.Name)
}

// use remembers that the verified webhook body passed the trigger. The
// EventListener calls each trigger's interceptors once per event, and GitHub
// and GitLab put each event's own identifiers (commits, IDs, times) in its
// body, so the same body on the same trigger again is a replay: of a
// captured delivery, or GitHub's "Redeliver". It is refused, and so is a
// webhook the memory cannot record (fail closed).
func (h *triggersHook) use(v triggersauth.Verified, now time.Time) error {
	if h.seen == nil {
		return errors.New("the replay memory of Triggers webhooks is not open")
	}
	sum := sha256.Sum256([]byte(v.Body))
	err := h.seen.Use("tekton-trigger:"+v.TriggerID, hex.EncodeToString(sum[:]), now.Add(h.window), now)
	switch {
	case errors.Is(err, identity.ErrReplayed):
		return fmt.Errorf("%w (%s, within %s): replays are refused; push again to trigger again", ErrWebhookReplayed, v.TriggerID, h.window)
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

// triggersEndpoint returns the Triggers webhook authentication of the
// adapter endpoint name, nil when it has none.
func (s *Server) triggersEndpoint(name string) *triggersHook {
	if s.webhooks == nil || s.webhooks.triggers == nil || s.webhooks.triggers.name != name {
		return nil
	}
	return s.webhooks.triggers
}

// authenticateByWebhook authenticates a call of the Triggers endpoint that
// presents no gatelog credential by the webhook inside its
// InterceptorRequest, and returns the payload to translate: re-encoded from
// what was checked, without the webhook's secret and signature headers.
func (s *Server) authenticateByWebhook(h *triggersHook, body []byte) (identity.Caller, []byte, *adapter.Failure) {
	if !triggersauth.IsInterceptorRequest(body) {
		return identity.Caller{}, nil, &adapter.Failure{Kind: adapter.Unauthenticated, Message: "no credential, and the body is not an InterceptorRequest carrying a signed webhook"}
	}
	c, v, err := h.verify(body)
	switch {
	case errors.Is(err, decision.ErrBadRequest):
		return c, triggersauth.StripSecrets(body), &adapter.Failure{Kind: adapter.BadRequest, Message: err.Error()}
	case err != nil:
		s.door.counters.ObserveAuth(kindWebhook, identity.ReasonBadSignature)
		return c, triggersauth.StripSecrets(body), &adapter.Failure{Kind: adapter.Unauthenticated, Message: err.Error()}
	}
	if err := s.door.admit(c.ID, kindWebhook, s.cfg.Now()); err != nil {
		return c, v.Request, &adapter.Failure{Kind: adapter.Unavailable, Message: err.Error()}
	}
	switch err := h.use(v, s.cfg.Now()); {
	case errors.Is(err, ErrWebhookReplayed):
		s.door.counters.ObserveAuth(kindWebhook, identity.ReasonReplayed)
		return c, v.Request, &adapter.Failure{Kind: adapter.Unauthenticated, Message: err.Error()}
	case err != nil:
		s.logger.Warn("Triggers webhook could not be recorded; refusing", "caller", c.ID, "err", err)
		return c, v.Request, &adapter.Failure{Kind: adapter.Unavailable, Message: err.Error()}
	}
	s.door.counters.ObserveAuth(kindWebhook, "ok")
	return c, v.Request, nil
}
