package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/host"
	"github.com/gatelog/gatelog/plugins/webhook"
	"github.com/gatelog/gatelog/record/decision"
)

// webhookState holds the webhook hooks the daemon opened (plugins/webhook):
// the endpoints that take over their adapter route, and the authenticators
// of adapter routes, by adapter endpoint name.
type webhookState struct {
	hooks          []webhook.Hook
	endpoints      map[string]webhook.Endpoint
	authenticators map[string]webhook.Authenticator
}

// openWebhooks opens the configured hooks with the daemon's services. Each
// needs its adapter endpoint, and one endpoint has at most one hook: a
// hook is the only thing that answers a CI system that would take a
// missing or wrong answer as a yes.
func openWebhooks(ctx context.Context, s *Server) (*webhookState, error) {
	st := &webhookState{endpoints: map[string]webhook.Endpoint{}, authenticators: map[string]webhook.Authenticator{}}
	for _, open := range s.cfg.Webhooks {
		h, err := open(ctx, hookServices{s})
		if err != nil {
			_ = st.close()
			return nil, err
		}
		st.hooks = append(st.hooks, h)
		name := h.Adapter()
		if !slices.ContainsFunc(s.cfg.Adapters, func(c host.Config) bool { return c.Name == name }) {
			_ = st.close()
			return nil, fmt.Errorf("webhooks: a webhook of the adapter endpoint %q is configured, but not the endpoint (serve --adapter %s)", name, name)
		}
		if st.endpoints[name] != nil || st.authenticators[name] != nil {
			_ = st.close()
			return nil, fmt.Errorf("webhooks: the adapter endpoint %q has two webhooks", name)
		}
		switch h := h.(type) {
		case webhook.Endpoint:
			st.endpoints[name] = h
		case webhook.Authenticator:
			st.authenticators[name] = h
		default:
			_ = st.close()
			return nil, fmt.Errorf("webhooks: the webhook of %q is neither an endpoint nor an authenticator (%T)", name, h)
		}
	}
	return st, nil
}

// mountWebhooks routes POST /v1/adapters/{name} of the webhook endpoints to
// their hooks; the literal paths win over the generic adapter route.
func (s *Server) mountWebhooks(mux *http.ServeMux) {
	if s.webhooks == nil {
		return
	}
	for name, h := range s.webhooks.endpoints {
		mux.Handle("POST /v1/adapters/"+name, h)
	}
}

// authenticator is the webhook authentication of the adapter endpoint
// name (Tekton Triggers), nil when it has none.
func (s *Server) authenticator(name string) webhook.Authenticator {
	if s.webhooks == nil {
		return nil
	}
	return s.webhooks.authenticators[name]
}

func (s *Server) closeWebhooks() error {
	if s.webhooks == nil {
		return nil
	}
	return s.webhooks.close()
}

func (st *webhookState) close() error {
	var errs []error
	for _, h := range slices.Backward(st.hooks) {
		errs = append(errs, h.Close())
	}
	st.hooks = nil
	return errors.Join(errs...)
}

// webhookCaller is a CI system a hook authenticated: it decides and vouches
// for the user its payload names.
func webhookCaller(id string) identity.Caller {
	return identity.Caller{
		Caller:      decision.Caller{ID: id, Kind: webhook.CallerKind},
		Permissions: []string{identity.PermDecide, identity.PermVouch},
	}
}

// hookServices is what the daemon gives its webhook hooks (webhook.Daemon):
// the services every entry point shares.
type hookServices struct{ s *Server }

func (d hookServices) Logger() *slog.Logger    { return d.s.logger }
func (d hookServices) Now() time.Time          { return d.s.cfg.Now() }
func (d hookServices) Path(name string) string { return filepath.Join(d.s.cfg.DataDir, name) }
func (d hookServices) Admit(caller string) error {
	return d.s.door.admit(caller, webhook.CallerKind, d.s.cfg.Now())
}
func (d hookServices) MayLogRefusal() bool { return d.s.refusals.Allow() }

func (d hookServices) Authenticated(outcome string) {
	d.s.door.counters.ObserveAuth(webhook.CallerKind, outcome)
}

func (d hookServices) ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, func(), error) {
	return d.s.bodies.read(w, r, limit)
}

func (d hookServices) Translate(ctx context.Context, name string, body []byte, headers http.Header) (decision.Request, error) {
	return d.s.adapters.Translate(ctx, name, body, headers)
}

func (d hookServices) Render(ctx context.Context, name string, body []byte, headers http.Header, rc *decision.Receipt, decideErr error) (adapter.Response, error) {
	return d.s.adapters.Render(ctx, name, body, headers, rc, decideErr)
}

func (d hookServices) Fallback(name string, err error) adapter.Response {
	return d.s.adapters.Fallback(name, err)
}

// Decide runs a translated request through the decide path for a CI system
// that authenticated with its webhook secret: the system is the caller and
// vouches for the user its payload names.
func (d hookServices) Decide(ctx context.Context, req decision.Request, caller string) (*decision.Receipt, error) {
	c := webhookCaller(caller)
	if err := d.s.bindSubject(&req, c); err != nil {
		return nil, &adapter.Failure{Kind: adapter.BadRequest, Message: err.Error()}
	}
	rc, err := d.s.Decide(ctx, req, c.Caller, false)
	if err != nil {
		return nil, &adapter.Failure{Kind: adapter.Unavailable, Message: "the decision could not be logged, so it is denied"}
	}
	return &rc, nil
}

func (d hookServices) ReplayMemory(name string) (webhook.ReplayMemory, error) {
	c, err := identity.OpenReplayCache(d.Path(name), 0, d.s.cfg.Now())
	if err != nil {
		return nil, err
	}
	return replayMemory{c}, nil
}

func (d hookServices) Register(c prometheus.Collector) error {
	if d.s.metrics == nil {
		return nil
	}
	return d.s.metrics.Register(c)
}

// replayMemory is identity's replay cache as a webhook.ReplayMemory.
type replayMemory struct{ *identity.ReplayCache }

func (m replayMemory) Use(kind, key string, forget, now time.Time) error {
	err := m.ReplayCache.Use(kind, key, forget, now)
	if errors.Is(err, identity.ErrReplayed) {
		return fmt.Errorf("%w: %w", webhook.ErrReplayed, err)
	}
	return err
}

// withoutHeaders is a copy of h without the named headers (secrets that
// must not reach an adapter).
func withoutHeaders(h http.Header, names ...string) http.Header {
	out := h.Clone()
	for _, n := range names {
		out.Del(n)
	}
	return out
}
