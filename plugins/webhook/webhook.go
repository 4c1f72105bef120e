// Package webhook is the webhook side of the adapter interface.
//
// Some CI systems call the daemon with a webhook secret instead of a gatelog
// credential: GitHub's deployment protection rules (an HMAC of the body),
// GitLab's external pipeline validation (a token header), a Tekton Triggers
// EventListener forwarding the webhook it received. Checking that secret is
// the caller's authentication, so it runs in the daemon's process, before
// any adapter process sees the payload, and the secret never leaves it. The
// code that knows each system's secret, payload and follow-up (GitHub's
// review callback) lives in that system's plugin, as a Hook; the daemon
// gives it the services every entry point shares through Daemon — the
// in-flight body budget, rate limits, the adapter process that translates
// and renders, and the one record path — and imports no concrete plugin.
//
// A Hook is one of two kinds:
//   - an Endpoint takes over POST /v1/adapters/{Adapter} and answers in the
//     CI system's own terms (GitHub, GitLab);
//   - an Authenticator leaves the adapter route as it is and authenticates
//     its calls that carry no gatelog credential by the webhook inside their
//     body (Tekton Triggers).
//
// The composition root (`gatelog serve`) builds the hooks from the webhooks
// config (plugins/builtin.LoadWebhooks) and passes their Openers to the
// daemon, which opens them once at start.
package webhook

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/record/decision"
)

// Hook is a CI system's webhook served in the daemon's process. It is an
// Endpoint or an Authenticator.
type Hook interface {
	// Adapter is the adapter endpoint whose calls the hook serves; the
	// daemon refuses to start when that endpoint is not configured.
	Adapter() string
	// Close releases what the hook holds (files, goroutines).
	Close() error
}

// Endpoint is a Hook that answers POST /v1/adapters/{Adapter} itself.
type Endpoint interface {
	Hook
	http.Handler
}

// Authenticator is a Hook that authenticates calls of the adapter endpoint
// which carry no gatelog credential, by the webhook their body carries.
type Authenticator interface {
	Hook
	// Authenticate checks the webhook in body and returns the caller it
	// authenticates and the payload to translate (without the webhook's
	// secrets). Its failures are adapter.Failures: BadRequest, Unauthenticated,
	// Unavailable.
	Authenticate(body []byte) (caller string, payload []byte, err error)
	// Strip removes the webhook's secrets from the body of a call that had a
	// gatelog credential, before it reaches the adapter.
	Strip(body []byte) []byte
	// Vouch rewrites the subject of a request the caller authenticated by
	// Authenticate vouched for: what the daemon knows of the user, nothing
	// the payload merely claims. Requests of other callers are left as they
	// are.
	Vouch(req *decision.Request, caller string)
}

// Opener opens a Hook with the daemon's services, once, at start.
type Opener func(ctx context.Context, d Daemon) (Hook, error)

// Daemon is what the daemon offers a Hook. A caller a hook authenticates
// is a CI system: it may decide and vouches for the user its payload
// names, and its ID (e.g. "webhook:github-app:42") is recorded as the
// decision's caller.
type Daemon interface {
	// Logger is the daemon's log.
	Logger() *slog.Logger
	// Now is the daemon's clock.
	Now() time.Time
	// Path is the path of a hook's state file or directory name in the
	// daemon's data directory.
	Path(name string) string
	// ReadBody reads r's body, at most limit bytes, within the daemon's
	// budget of bodies in flight. Call release once the body is no longer
	// needed. A body over limit is an error wrapping ErrBodyTooLarge; any
	// other error means the daemon is busy.
	ReadBody(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, release func(), err error)
	// Admit applies the caller's rate limit.
	Admit(caller string) error
	// Authenticated counts an authentication outcome of a webhook call:
	// "ok", or one of the Reason constants.
	Authenticated(outcome string)
	// MayLogRefusal reports whether a refused unauthenticated call may
	// write a log line now (they are spaced out, so that nobody can write
	// the daemon's log).
	MayLogRefusal() bool
	// Translate and Render run the adapter endpoint's adapter; Fallback is
	// its declared answer for when it cannot render.
	Translate(ctx context.Context, adapter string, body []byte, headers http.Header) (decision.Request, error)
	Render(ctx context.Context, adapter string, body []byte, headers http.Header, rc *decision.Receipt, decideErr error) (adapter.Response, error)
	Fallback(adapter string, err error) adapter.Response
	// Decide decides req for caller, which vouches for its subject, and
	// returns the receipt once the signed record is in the log. Any error
	// means no decision was logged: deny. It is an adapter.Failure.
	Decide(ctx context.Context, req decision.Request, caller string) (*decision.Receipt, error)
	// ReplayMemory opens a durable memory of used deliveries, kept in the
	// data directory under name.
	ReplayMemory(name string) (ReplayMemory, error)
	// Register adds the hook's metrics to the daemon's registry.
	Register(c prometheus.Collector) error
}

// ReplayMemory remembers keys that were used, each until its forget time.
type ReplayMemory interface {
	// Use records key of kind as used until forget. A key used before is
	// an error wrapping ErrReplayed; a memory that cannot record it returns
	// another error, and the call must be refused (fail closed).
	Use(kind, key string, forget, now time.Time) error
	Close() error
}

// Errors of Daemon's services.
var (
	ErrBodyTooLarge = errors.New("body too large")
	ErrReplayed     = errors.New("replayed")
)

// Authentication outcomes a hook reports (besides "ok").
const (
	ReasonBadSignature = "bad_signature"
	ReasonInvalid      = "invalid"
	ReasonReplayed     = "replayed"
)

// Caller kind of the CI systems hooks authenticate.
const CallerKind = "webhook"
