package triggersauth

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/webhook"
	"github.com/gatelog/gatelog/record/decision"
)

// Config lets a Tekton Triggers EventListener call the gatelog
// ClusterInterceptor without a gatelog credential.
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
type Config struct {
	// Adapter is the adapter endpoint the EventListener calls (default
	// "tekton"). Other callers of that endpoint (the API server's
	// admission reviews, callers with a gatelog credential) are
	// authenticated as before.
	Adapter string
	// Sources are the webhooks whose events may reach the interceptor:
	// each the value of the Kubernetes Secret the EventListener's github
	// or gitlab interceptor names in its secretRef.
	Sources []Source
	// ReplayWindow is how long a forwarded webhook is remembered so that
	// the same event cannot pass the same trigger twice (default 24h). A
	// webhook carries no signed time, so a replay older than the window
	// is not recognised.
	ReplayWindow time.Duration
}

// SeenFile in the daemon's data directory remembers the webhooks forwarded
// to each trigger (hashed), to refuse replays.
const SeenFile = "tekton-triggers-seen"

// ErrReplayed means the same webhook already passed the same trigger.
var ErrReplayed = errors.New("this webhook was already forwarded for this trigger")

// Hook authenticates the EventListener's calls (see Config): a
// webhook.Authenticator of the tekton adapter endpoint.
type Hook struct {
	d        webhook.Daemon
	name     string
	verifier *Verifier
	sources  []hookSource
	window   time.Duration
	seen     webhook.ReplayMemory
}

type hookSource struct {
	Source
	caller string
}

// Opener opens the hook of cfg in a daemon, with its replay memory.
func Opener(cfg Config) webhook.Opener {
	return func(_ context.Context, d webhook.Daemon) (webhook.Hook, error) {
		h, err := newHook(cfg)
		if err != nil {
			return nil, err
		}
		if h.seen, err = d.ReplayMemory(SeenFile); err != nil {
			return nil, fmt.Errorf("webhooks: tekton_triggers: %w", err)
		}
		h.d = d
		return h, nil
	}
}

// Check validates cfg as Opener will.
func (cfg Config) Check() error {
	_, err := newHook(cfg)
	return err
}

func newHook(cfg Config) (*Hook, error) {
	v, err := New(cfg.Sources)
	if err != nil {
		return nil, fmt.Errorf("webhooks: tekton_triggers: %w", err)
	}
	if cfg.ReplayWindow <= 0 {
		cfg.ReplayWindow = 24 * time.Hour
	}
	h := &Hook{name: cmp.Or(strings.TrimSpace(cfg.Adapter), "tekton"), verifier: v, window: cfg.ReplayWindow}
	for _, src := range cfg.Sources {
		h.sources = append(h.sources, hookSource{Source: src, caller: "webhook:tekton-triggers:" + src.Name})
	}
	return h, nil
}

// Adapter is the adapter endpoint whose calls the hook authenticates.
func (h *Hook) Adapter() string { return h.name }

// Close closes the replay memory.
func (h *Hook) Close() error {
	if h.seen == nil {
		return nil
	}
	return h.seen.Close()
}

// Strip removes the forwarded webhook's secret and signature headers.
func (h *Hook) Strip(body []byte) []byte { return StripSecrets(body) }

// Authenticate authenticates a call of the Triggers endpoint that presents
// no gatelog credential by the webhook inside its InterceptorRequest, and
// returns the payload to translate: re-encoded from what was checked,
// without the webhook's secret and signature headers (on failure too, for
// rendering the refusal).
func (h *Hook) Authenticate(body []byte) (string, []byte, error) {
	if !IsInterceptorRequest(body) {
		return "", nil, &adapter.Failure{Kind: adapter.Unauthenticated, Message: "no credential, and the body is not an InterceptorRequest carrying a signed webhook"}
	}
	caller, v, err := h.verify(body)
	switch {
	case errors.Is(err, decision.ErrBadRequest):
		return caller, StripSecrets(body), &adapter.Failure{Kind: adapter.BadRequest, Message: err.Error()}
	case err != nil:
		h.d.Authenticated(webhook.ReasonBadSignature)
		return caller, StripSecrets(body), &adapter.Failure{Kind: adapter.Unauthenticated, Message: err.Error()}
	}
	if err := h.d.Admit(caller); err != nil {
		return caller, v.Request, &adapter.Failure{Kind: adapter.Unavailable, Message: err.Error()}
	}
	switch err := h.use(v, h.d.Now()); {
	case errors.Is(err, ErrReplayed):
		h.d.Authenticated(webhook.ReasonReplayed)
		return caller, v.Request, &adapter.Failure{Kind: adapter.Unauthenticated, Message: err.Error()}
	case err != nil:
		h.d.Logger().Warn("Triggers webhook could not be recorded; refusing", "caller", caller, "err", err)
		return caller, v.Request, &adapter.Failure{Kind: adapter.Unavailable, Message: err.Error()}
	}
	h.d.Authenticated("ok")
	return caller, v.Request, nil
}

// verify checks the webhook inside an InterceptorRequest and returns the
// caller it authenticates and what to hand the adapter.
func (h *Hook) verify(body []byte) (string, Verified, error) {
	v, err := h.verifier.Verify(body)
	if err != nil {
		return "", v, err
	}
	for _, src := range h.sources {
		if src.Name == v.Source.Name {
			return src.caller, v, nil
		}
	}
	return "", Verified{}, fmt.Errorf("%w: source %q is not configured", ErrUnverified, v.Source.Name)
}

// use remembers that the verified webhook body passed the trigger. The
// EventListener calls each trigger's interceptors once per event, and GitHub
// and GitLab put each event's own identifiers (commits, IDs, times) in its
// body, so the same body on the same trigger again is a replay: of a
// captured delivery, or GitHub's "Redeliver". It is refused, and so is a
// webhook the memory cannot record (fail closed).
func (h *Hook) use(v Verified, now time.Time) error {
	if h.seen == nil {
		return errors.New("the replay memory of Triggers webhooks is not open")
	}
	sum := sha256.Sum256([]byte(v.Body))
	err := h.seen.Use("tekton-trigger:"+v.TriggerID, hex.EncodeToString(sum[:]), now.Add(h.window), now)
	switch {
	case errors.Is(err, webhook.ErrReplayed):
		return fmt.Errorf("%w (%s, within %s): replays are refused; push again to trigger again", ErrReplayed, v.TriggerID, h.window)
	case err != nil:
		return fmt.Errorf("the webhook could not be recorded against replays: %w", err)
	}
	return nil
}

// Vouch makes the subject a Triggers source vouched for what the daemon
// knows of it: the user the event names, and the operator's statements
// about the source's senders (MFASetting). Anything else the adapter put on
// the subject is a claim of the payload and is dropped. Requests of other
// callers are left alone.
func (h *Hook) Vouch(req *decision.Request, caller string) {
	if req.Subject.AssertedBy != caller {
		return
	}
	for _, src := range h.sources {
		if src.caller != caller {
			continue
		}
		sub := decision.Subject{ID: req.Subject.ID, Kind: req.Subject.Kind, Verified: true, AssertedBy: caller}
		if src.MFASetting != "" {
			sub.MFA = true
			sub.Claims = map[string]any{"mfa_source": "setting:" + src.MFASetting}
		}
		req.Subject = sub
		return
	}
}
