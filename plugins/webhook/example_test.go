package webhook_test

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"

	"github.com/gatelog/gatelog/plugins/webhook"
	"github.com/gatelog/gatelog/record/decision"
)

// tokenHook is a CI system that calls its adapter endpoint with a shared
// token header instead of a gatelog credential.
type tokenHook struct {
	d     webhook.Daemon
	token []byte
}

func (h *tokenHook) Adapter() string { return "acme-ci" }
func (h *tokenHook) Close() error    { return nil }

// ServeHTTP checks the token before reading the body, then translates,
// decides and renders through the daemon's services: the decision is
// signed and logged before the CI system hears the answer.
func (h *tokenHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Acme-Token")), h.token) != 1 {
		h.d.Authenticated(webhook.ReasonInvalid)
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	body, release, err := h.d.ReadBody(w, r, 1<<20)
	defer release()
	if errors.Is(err, webhook.ErrBodyTooLarge) {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	} else if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if err := h.d.Admit("webhook:acme-ci"); err != nil {
		http.Error(w, err.Error(), http.StatusTooManyRequests)
		return
	}
	h.d.Authenticated("ok")
	headers := r.Header.Clone()
	headers.Del("X-Acme-Token") // the secret never reaches the adapter
	var rc *decision.Receipt
	req, err := h.d.Translate(r.Context(), h.Adapter(), body, headers)
	if err == nil {
		rc, err = h.d.Decide(r.Context(), req, "webhook:acme-ci")
	}
	resp, rerr := h.d.Render(r.Context(), h.Adapter(), body, headers, rc, err)
	if rerr != nil {
		resp = h.d.Fallback(h.Adapter(), rerr) // the adapter's declared "blocked"
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

// A hook is handed to the daemon as an Opener (daemon.Config.Webhooks);
// the daemon opens it once at start with its services and routes POST
// /v1/adapters/acme-ci to it. The adapter endpoint acme-ci must be
// configured too.
func Example() {
	token := []byte("read from a file readable by its owner only")
	var open webhook.Opener = func(_ context.Context, d webhook.Daemon) (webhook.Hook, error) {
		return &tokenHook{d: d, token: token}, nil
	}
	_ = open // daemon.Config{Webhooks: []webhook.Opener{open}, Adapters: ...}
}
