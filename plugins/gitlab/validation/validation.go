// Package validation answers a GitLab instance's external pipeline
// validation requests inside the daemon: it checks the instance's token,
// decides through the daemon within GitLab's deadline, and answers 200 or
// 406 through the gitlab adapter. It is a webhook.Endpoint
// (plugins/webhook).
package validation

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/gitlab"
	"github.com/gatelog/gatelog/plugins/webhook"
	"github.com/gatelog/gatelog/record/decision"
)

// Config is a GitLab instance whose external pipeline validation requests
// the daemon answers.
type Config struct {
	// Adapter is the adapter endpoint (default "gitlab").
	Adapter string
	// Token is the instance's external_pipeline_validation_service_token.
	Token []byte
	// AnswerWithin bounds the answer (default 4s): GitLab waits 5 s by
	// default and then creates the pipeline.
	AnswerWithin time.Duration
}

// Hook answers a GitLab instance's external pipeline validation.
//
// Trust: X-Gitlab-Token proves the call comes from the instance configured
// with the token, so the instance is the caller (webhook:gitlab:<adapter>)
// and vouches for the user it names, as the GitHub App does for its sender.
//
// GitLab creates the pipeline on any answer but 406, on errors and after its
// timeout (5 s by default). So every refusal here is a 406 — a wrong token
// included, where other endpoints answer 401 — and the answer is due within
// AnswerWithin: when deciding takes longer the pipeline is rejected before
// GitLab stops waiting. A refused token puts nothing in the decision log.
//
// GitLab reads only the status and shows its user "External validation
// failed" whatever the body says, so each rejection's reasons also go to
// the daemon's log with GitLab's correlation ID, which GitLab's own log
// line for the rejection ("Pipeline not authorized") carries too.
type Hook struct {
	d      webhook.Daemon
	name   string
	token  []byte
	within time.Duration
	caller string
}

// Opener opens the hook of cfg in a daemon.
func Opener(cfg Config) webhook.Opener {
	return func(_ context.Context, d webhook.Daemon) (webhook.Hook, error) { return open(d, cfg) }
}

func open(d webhook.Daemon, cfg Config) (*Hook, error) {
	if len(cfg.Token) == 0 {
		return nil, errors.New("webhooks: gitlab: the validation service token is required (GitLab's external_pipeline_validation_service_token)")
	}
	if cfg.AnswerWithin <= 0 {
		cfg.AnswerWithin = 4 * time.Second
	}
	name := cmp.Or(strings.TrimSpace(cfg.Adapter), gitlab.Name)
	return &Hook{d: d, name: name, token: cfg.Token, within: cfg.AnswerWithin, caller: "webhook:gitlab:" + name}, nil
}

// Adapter is the adapter endpoint whose route the hook answers.
func (h *Hook) Adapter() string { return h.name }

// Close releases nothing: the hook keeps no state.
func (h *Hook) Close() error { return nil }

// ServeHTTP is POST /v1/adapters/{gitlab adapter}.
func (h *Hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d := h.d
	ctx, cancel := context.WithTimeout(r.Context(), h.within)
	defer cancel()
	// Before the token is checked the header is anyone's: bounded for the log.
	correlation := r.Header.Get(correlationHeader)
	if len(correlation) > 128 {
		correlation = correlation[:128]
	}
	// The token is a header: check it before reading a byte of the body.
	if err := gitlab.VerifyToken(h.token, r.Header.Get(gitlab.TokenHeader)); err != nil {
		d.Authenticated(webhook.ReasonInvalid)
		if d.MayLogRefusal() {
			d.Logger().Warn("gitlab pipeline rejected: X-Gitlab-Token refused, no decision made (further refusals within a second are counted in gatelog_auth_total, not logged)", "adapter", h.name,
				"correlation_id", correlation, "remote", r.RemoteAddr, "err", err)
		}
		h.refuse(w, r, &adapter.Failure{Kind: adapter.Unauthenticated, Message: err.Error()})
		return
	}
	body, release, err := d.ReadBody(w, r, gitlab.MaxPayloadBytes)
	defer release()
	switch {
	case errors.Is(err, webhook.ErrBodyTooLarge):
		h.refuse(w, r, &adapter.Failure{Kind: adapter.BadRequest, Message: fmt.Sprintf("payload is larger than %d bytes", gitlab.MaxPayloadBytes)})
		return
	case err != nil:
		h.refuse(w, r, &adapter.Failure{Kind: adapter.Unavailable, Message: "gatelog is busy reading other requests; try again"})
		return
	}
	if err := d.Admit(h.caller); err != nil {
		h.refuse(w, r, &adapter.Failure{Kind: adapter.Unavailable, Message: err.Error()})
		return
	}
	d.Authenticated("ok")
	headers := r.Header.Clone()
	headers.Del(gitlab.TokenHeader)
	var rc *decision.Receipt
	req, err := d.Translate(ctx, h.name, body, headers)
	if err == nil {
		rc, err = d.Decide(ctx, req, h.caller)
	}
	if err != nil && ctx.Err() != nil {
		err = &adapter.Failure{Kind: adapter.Unavailable, Message: fmt.Sprintf("gatelog did not decide within %s", h.within)}
	}
	switch {
	case err != nil:
		d.Logger().Warn("gitlab pipeline rejected: not decided", "adapter", h.name, "correlation_id", correlation, "err", err)
	case !rc.Allow:
		d.Logger().Info("gitlab pipeline rejected", "adapter", h.name, "correlation_id", correlation,
			"project", req.Resource.Repository, "ref", req.Resource.Ref, "user", req.Subject.ID,
			"action", req.Action, "environment", req.Resource.Environment,
			"decision_id", rc.DecisionID, "log_index", rc.LogIndex, "reasons", rc.Reasons)
	}
	h.write(w, r, body, headers, rc, err)
}

// correlationHeader is the request ID GitLab sends (Labkit's correlation ID).
const correlationHeader = "X-Gitlab-Correlation-Id"

// refuse answers without passing the unauthenticated payload to anyone.
func (h *Hook) refuse(w http.ResponseWriter, r *http.Request, f *adapter.Failure) {
	h.write(w, r, nil, nil, nil, f)
}

// write renders the outcome through the adapter; when the adapter cannot
// answer, its declared "unavailable" answer (406) goes out instead.
func (h *Hook) write(w http.ResponseWriter, r *http.Request, body []byte, headers http.Header, rc *decision.Receipt, decideErr error) {
	// Rendering gets its own second: a decision that ran out of time must
	// still be answered with a rejection before GitLab gives up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Second)
	defer cancel()
	resp, err := h.d.Render(ctx, h.name, body, headers, rc, decideErr)
	if err == nil && resp.Status == 0 {
		err = errors.New("the adapter answered without a status")
	}
	if err == nil && resp.Status == gitlab.StatusAccepted && (rc == nil || !rc.Allow || decideErr != nil) {
		err = errors.New("the adapter accepted a pipeline that was not allowed")
	}
	if err != nil {
		h.d.Logger().Warn("gitlab adapter could not render; rejecting the pipeline", "adapter", h.name, "err", err)
		resp = h.d.Fallback(h.name, err)
		// GitLab creates the pipeline on anything but 406 (a plain 503
		// from a host that never saw the adapter start included).
		resp.Status = gitlab.StatusRejected
	}
	for k, vs := range resp.Headers {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}
