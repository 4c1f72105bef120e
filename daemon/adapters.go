package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/host"
	"github.com/gatelog/gatelog/record/decision"
)

// maxAdapterPayload bounds a CI system's native payload.
const maxAdapterPayload = 3 << 20

// openAdapters starts the configured adapter processes. An adapter that
// fails to start is not fatal: its endpoint answers the CI system's native
// "unavailable" (fail closed) while the host keeps retrying it.
func (s *Server) openAdapters(ctx context.Context) (*host.Host, error) {
	cfg := s.cfg
	if len(cfg.Adapters) == 0 {
		return nil, nil
	}
	h, err := host.New(cfg.Adapters, host.Options{Logger: cfg.Logger, Self: cfg.AdapterExecutable, OnDown: s.adapterDown})
	if err != nil {
		return nil, fmt.Errorf("adapters: %w", err)
	}
	if err := h.Start(ctx); err != nil {
		cfg.Logger.Error("some adapters did not start; their endpoints fail closed until they do", "err", err)
	}
	return h, nil
}

// adapterDown is the host's OnDown hook: an adapter that went down is
// counted, alerted on and, like other operational events, logged as a
// signed entry naming the daemon as its subject.
func (s *Server) adapterDown(ctx context.Context, name string, reason error) {
	s.AdapterRestarted(name, reason)
	res := decision.Resource{System: "gatelog", Kind: "adapter", Name: name}
	if reason != nil {
		res.Attributes = map[string]any{"reason": reason.Error()}
	}
	if _, err := s.logAdminEvent(ctx, daemonCaller(), AdapterRestartAction, res); err != nil {
		s.logger.Warn("adapter restart not logged", "adapter", name, "err", err)
	}
}

// AdapterRestartAction is the action of the log entry for an adapter that
// went down and is being restarted.
const AdapterRestartAction = "adapter.restart"

// daemonCaller is the daemon itself, the subject of the events it logs on
// its own account.
func daemonCaller() identity.Caller {
	return identity.Caller{
		Caller:      decision.Caller{ID: "gatelog:daemon", Kind: "daemon"},
		Permissions: []string{identity.PermAdmin},
		Subject:     decision.Subject{ID: "gatelog:daemon", Kind: "service"},
	}
}

// AdapterStatus reports each adapter's state (nil without adapters).
func (s *Server) AdapterStatus() []host.Status {
	if s.adapters == nil {
		return nil
	}
	return s.adapters.Status()
}

// handleAdapter is POST /v1/adapters/{name}: the CI system's native payload
// goes through its adapter into a Request, is decided like /v1/decide, and
// the outcome goes back through the adapter as the native answer. Every
// failure is rendered as the CI system's native deny.
func (s *Server) handleAdapter(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if s.adapters == nil {
		writeError(w, http.StatusNotFound, "no adapters are configured (gatelog serve --adapter NAME)")
		return
	}
	// A credential in the headers is checked before a byte of the body is
	// read. Only the Triggers endpoint takes calls without one (Triggers
	// presents none): those are authenticated by the webhook their body
	// carries, so that body is read first — within the in-flight budget.
	auth := s.authenticator(name)
	byWebhook := auth != nil && r.Header.Get("Authorization") == "" && (r.TLS == nil || len(r.TLS.PeerCertificates) == 0)
	var caller identity.Caller
	if !byWebhook {
		c, failure := s.authenticateQuietly(r)
		if failure != nil {
			s.writeAdapter(w, r, name, nil, nil, failure)
			return
		}
		caller = c
	}
	body, release, err := s.bodies.read(w, r, maxAdapterPayload)
	defer release()
	switch {
	case errors.Is(err, errBodyTooLarge):
		s.writeAdapter(w, r, name, nil, nil, &adapter.Failure{Kind: adapter.BadRequest, Message: fmt.Sprintf("payload is larger than %d bytes", maxAdapterPayload)})
		return
	case err != nil:
		s.writeAdapter(w, r, name, nil, nil, &adapter.Failure{Kind: adapter.Unavailable, Message: "gatelog is busy reading other requests; try again"})
		return
	}
	switch {
	case byWebhook:
		id, payload, err := auth.Authenticate(body)
		if err != nil {
			s.writeAdapter(w, r, name, payload, nil, err)
			return
		}
		caller, body = webhookCaller(id), payload
	case auth != nil:
		// A credentialed call may still forward a webhook: its secret and
		// signature headers reach no adapter either.
		body = auth.Strip(body)
	}
	// The caller's credential is the daemon's business, never an adapter's.
	headers := withoutHeaders(r.Header, "Authorization")
	req, err := s.adapters.Translate(r.Context(), name, body, headers)
	if err != nil {
		s.writeAdapter(w, r, name, body, nil, err)
		return
	}
	if !caller.Has(identity.PermVouch) {
		// The payload's subject is only a claim; keep it as unverified
		// context and decide about the caller itself.
		if req.Subject.ID != "" || len(req.Subject.Groups) > 0 {
			if req.Context.Unverified == nil {
				req.Context.Unverified = map[string]any{}
			}
			req.Context.Unverified["payload_subject"] = req.Subject
		}
		req.Subject = decision.Subject{}
	}
	if !caller.Has(identity.PermDecide) && !caller.Has(identity.PermVouch) {
		s.writeAdapter(w, r, name, body, nil, &adapter.Failure{Kind: adapter.Unauthenticated, Message: "caller " + caller.ID + " lacks the decide permission"})
		return
	}
	if err := s.bindSubject(&req, caller); err != nil {
		s.writeAdapter(w, r, name, body, nil, &adapter.Failure{Kind: adapter.Unauthenticated, Message: err.Error()})
		return
	}
	if auth != nil {
		auth.Vouch(&req, caller.ID) // a Triggers webhook's sender
	}
	if req.Context.DryRun {
		rc := s.decideDryRun(r.Context(), req)
		s.writeAdapter(w, r, name, body, &rc, nil)
		return
	}
	rc, err := s.Decide(r.Context(), req, caller.Caller, false)
	if err != nil {
		s.writeAdapter(w, r, name, body, nil, &adapter.Failure{Kind: adapter.Unavailable, Message: "the decision could not be logged, so it is denied"})
		return
	}
	s.writeAdapter(w, r, name, body, &rc, nil)
}

// decideDryRun answers a CI system's dry run (a request its adapter marked
// context.dry_run, e.g. the API server's dryRun for a webhook declared
// sideEffects: NoneOnDryRun): the policy is evaluated for the same verified
// subject, but nothing is signed, logged or alerted, since a dry run must
// leave no trace. The result is kept apart from a receipt: no decision id,
// no envelope, no SET and log index -1, so nothing rendered from it can be
// taken for proof that a decision was logged.
func (s *Server) decideDryRun(ctx context.Context, req decision.Request) decision.Receipt {
	d, _ := s.policies.Decide(ctx, req)
	return decision.Receipt{Allow: d.Allow, Reasons: d.Reasons, Alerts: d.Alerts, LogIndex: -1}
}

// authenticateQuietly is authenticate without writing a gatelog JSON error:
// adapters answer in the CI system's own format.
func (s *Server) authenticateQuietly(r *http.Request) (identity.Caller, *adapter.Failure) {
	c, err := s.door.credential(r)
	switch {
	case errors.Is(err, identity.ErrUnauthenticated):
		return c, &adapter.Failure{Kind: adapter.Unauthenticated, Message: err.Error()}
	case err != nil:
		s.logger.Warn("credential could not be checked; refusing", "err", err)
		return c, &adapter.Failure{Kind: adapter.Unavailable, Message: "the caller's credential could not be checked"}
	}
	if err := s.door.admit(c.ID, c.Kind, s.cfg.Now()); err != nil {
		return c, &adapter.Failure{Kind: adapter.Unavailable, Message: err.Error()}
	}
	return c, nil
}

// writeAdapter renders a receipt or a failure through the adapter, falling
// back to the host's native deny when the adapter cannot render.
func (s *Server) writeAdapter(w http.ResponseWriter, r *http.Request, name string, body []byte, rc *decision.Receipt, decideErr error) {
	if r.Context().Err() != nil {
		// The caller hung up (or its request timed out): nobody is left
		// to answer, and a WARN line per aborted request would let anyone
		// write the daemon's log.
		return
	}
	var resp adapter.Response
	switch {
	case errors.Is(decideErr, host.ErrUnknownAdapter), errors.Is(decideErr, host.ErrUnavailable), errors.Is(decideErr, host.ErrInvalidResponse):
		resp = s.adapters.Fallback(name, decideErr)
	default:
		var err error
		resp, err = s.adapters.Render(r.Context(), name, body, withoutHeaders(r.Header, "Authorization"), rc, decideErr)
		if err != nil {
			s.logger.Warn("adapter could not render; answering its native deny", "adapter", name, "err", err)
			resp = s.adapters.Fallback(name, err)
		}
	}
	for k, vs := range resp.Headers {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if resp.Status == 0 {
		resp.Status = http.StatusServiceUnavailable
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}
