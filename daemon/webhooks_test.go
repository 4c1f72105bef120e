package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/webhook"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/verify"
)

// secretHook is the smallest webhook.Endpoint: a CI system that proves
// itself with a shared secret header, once per delivery ID. It uses every
// service of webhook.Daemon the built-in hooks use.
type secretHook struct {
	d      webhook.Daemon
	seen   webhook.ReplayMemory
	secret string
}

func (h *secretHook) Adapter() string { return "headers" }
func (h *secretHook) Close() error    { return h.seen.Close() }

func (h *secretHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Test-Secret") != h.secret {
		h.d.Authenticated(webhook.ReasonInvalid)
		http.Error(w, "bad secret", http.StatusUnauthorized)
		return
	}
	body, release, err := h.d.ReadBody(w, r, 1<<10)
	defer release()
	switch {
	case errors.Is(err, webhook.ErrBodyTooLarge):
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if err := h.d.Admit("webhook:test"); err != nil {
		http.Error(w, err.Error(), http.StatusTooManyRequests)
		return
	}
	now := h.d.Now()
	switch err := h.seen.Use("delivery", r.Header.Get("X-Test-Delivery"), now.Add(time.Hour), now); {
	case errors.Is(err, webhook.ErrReplayed):
		h.d.Authenticated(webhook.ReasonReplayed)
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	h.d.Authenticated("ok")
	headers := r.Header.Clone()
	headers.Del("X-Test-Secret")
	var rc *decision.Receipt
	req, err := h.d.Translate(r.Context(), h.Adapter(), body, headers)
	if err == nil {
		rc, err = h.d.Decide(r.Context(), req, "webhook:test")
	}
	resp, rerr := h.d.Render(r.Context(), h.Adapter(), body, headers, rc, err)
	if rerr != nil {
		resp = h.d.Fallback(h.Adapter(), rerr)
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

func openSecretHook(secret string) webhook.Opener {
	return func(_ context.Context, d webhook.Daemon) (webhook.Hook, error) {
		seen, err := d.ReplayMemory("test-deliveries")
		if err != nil {
			return nil, err
		}
		return &secretHook{d: d, seen: seen, secret: secret}, nil
	}
}

// A webhook endpoint takes over its adapter route and decides through the
// one record path: the CI system is the caller and vouches for the user
// its payload names, and the decision verifies like any other. Its
// refusals (a wrong secret, a replayed delivery, a body over its bound)
// come from the daemon's shared services and log nothing.
func TestWebhookEndpointDecidesThroughTheRecordPath(t *testing.T) {
	d := openDaemon(t, daemon.Config{
		DataDir: t.TempDir(), Adapters: headersAdapterConfig(t),
		Webhooks: []webhook.Opener{openSecretHook("s3cret")},
	})
	deliver := func(secret, delivery, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, d.HTTP.URL+"/v1/adapters/headers", strings.NewReader(body))
		req.Header.Set("X-Test-Secret", secret)
		req.Header.Set("X-Test-Delivery", delivery)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.Bytes()
	}
	before := d.Server.AuthCounts()
	if code, _ := deliver("wrong", "d1", `{}`); code != http.StatusUnauthorized {
		t.Errorf("wrong secret: %d, want 401", code)
	}
	code, raw := deliver("s3cret", "d1", `{}`)
	var answer struct {
		Allowed    bool   `json:"allowed"`
		DecisionID string `json:"decision_id"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil || code != http.StatusOK || answer.DecisionID == "" {
		t.Fatalf("delivery: %d %s %v", code, raw, err)
	}
	if code, _ := deliver("s3cret", "d1", `{}`); code != http.StatusConflict {
		t.Errorf("replayed delivery: %d, want 409", code)
	}
	if code, _ := deliver("s3cret", "d2", `{"pad": "`+strings.Repeat("x", 2<<10)+`"}`); code != http.StatusRequestEntityTooLarge {
		t.Errorf("body over the hook's bound: %d, want 413", code)
	}
	after := d.Server.AuthCounts()
	for _, k := range []string{"webhook/ok", "webhook/invalid", "webhook/replayed"} {
		if after[k]-before[k] != 1 {
			t.Errorf("gatelog_auth_total %s went up by %d, want 1", k, after[k]-before[k])
		}
	}

	code, raw = d.Get("/v1/decisions/" + answer.DecisionID)
	var rc decision.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil || code != http.StatusOK {
		t.Fatalf("decision %q: %d %s", answer.DecisionID, code, raw)
	}
	res, err := verify.Receipt(rc, d.LogKey, d.SignerKey)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Statement.Predicate
	if p.Caller.ID != "webhook:test" || p.Caller.Kind != webhook.CallerKind {
		t.Errorf("caller %+v, want webhook:test of kind webhook", p.Caller)
	}
	if p.Request.Subject.ID != "payload-user" || p.Request.Subject.AssertedBy != "webhook:test" {
		t.Errorf("subject %+v, want payload-user asserted by webhook:test", p.Request.Subject)
	}
	if got, _ := json.Marshal(p.Request.Resource.Attributes["headers"]); strings.Contains(string(got), "X-Test-Secret") {
		t.Errorf("the adapter was given the secret header: %s", got)
	}
}

// signedBodyAuth authenticates calls of the headers endpoint that carry no
// credential by a signature inside their body, as the Tekton Triggers hook
// does with the webhook an EventListener forwards.
type signedBodyAuth struct{ d webhook.Daemon }

func (a *signedBodyAuth) Adapter() string { return "headers" }
func (a *signedBodyAuth) Close() error    { return nil }

func (a *signedBodyAuth) Authenticate(body []byte) (string, []byte, error) {
	var in struct {
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.Signature != "good" {
		a.d.Authenticated(webhook.ReasonBadSignature)
		return "", nil, &adapter.Failure{Kind: adapter.Unauthenticated, Message: "bad signature"}
	}
	a.d.Authenticated("ok")
	return "webhook:signed", a.Strip(body), nil
}

func (a *signedBodyAuth) Strip([]byte) []byte { return []byte(`{}`) }

func (a *signedBodyAuth) Vouch(req *decision.Request, caller string) {
	if caller == "webhook:signed" {
		req.Subject = decision.Subject{ID: req.Subject.ID, Verified: true, AssertedBy: caller, MFA: true}
	}
}

// An authenticator leaves the adapter route to the daemon and vouches for
// the subject of the calls it authenticated; calls with a credential are
// authenticated as before, their body stripped by the hook.
func TestWebhookAuthenticator(t *testing.T) {
	d := openDaemon(t, daemon.Config{
		DataDir: t.TempDir(), Adapters: headersAdapterConfig(t),
		Webhooks: []webhook.Opener{func(_ context.Context, d webhook.Daemon) (webhook.Hook, error) { return &signedBodyAuth{d: d}, nil }},
	})
	call := func(auth, body string) (int, string) { // status, decision ID
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, d.HTTP.URL+"/v1/adapters/headers", strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var answer struct {
			DecisionID string `json:"decision_id"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&answer)
		return resp.StatusCode, answer.DecisionID
	}
	// The headers adapter renders every refusal as 200 {"allowed": false}.
	before := d.Server.AuthCounts()["webhook/bad_signature"]
	if _, id := call("", `{"signature": "forged"}`); id != "" || d.Server.AuthCounts()["webhook/bad_signature"] != before+1 {
		t.Errorf("forged body: decision %q, bad signatures counted %d", id, d.Server.AuthCounts()["webhook/bad_signature"]-before)
	}
	for _, tc := range []struct {
		auth, caller string
		mfa          bool
	}{
		{"", "webhook:signed", true},
		{d.Key, "apikey:bootstrap", false},
	} {
		code, id := call(tc.auth, `{"signature": "good"}`)
		if code != http.StatusOK || id == "" {
			t.Fatalf("%s: %d, decision %q", tc.caller, code, id)
		}
		_, raw := d.Get("/v1/decisions/" + id)
		var rc decision.Receipt
		if err := json.Unmarshal(raw, &rc); err != nil {
			t.Fatal(err)
		}
		res, err := verify.Receipt(rc, d.LogKey, d.SignerKey)
		if err != nil {
			t.Fatal(err)
		}
		p := res.Statement.Predicate
		if !strings.HasPrefix(p.Caller.ID, tc.caller) || p.Request.Subject.MFA != tc.mfa {
			t.Errorf("caller %q subject %+v, want caller %s mfa %v", p.Caller.ID, p.Request.Subject, tc.caller, tc.mfa)
		}
	}
}

// A webhook needs its adapter endpoint: without it the daemon refuses to
// start rather than leave a CI system unanswered, or answered with
// something it would take as a yes; and one endpoint has one webhook.
func TestWebhookNeedsItsAdapter(t *testing.T) {
	for name, cfg := range map[string]daemon.Config{
		"no endpoint":  {Webhooks: []webhook.Opener{openSecretHook("s")}},
		"two webhooks": {Adapters: headersAdapterConfig(t), Webhooks: []webhook.Opener{openSecretHook("s"), openSecretHook("t")}},
	} {
		cfg.DataDir = t.TempDir()
		cfg.Policies = fstest.MapFS{"decision.rego": {Data: []byte(testPolicy)}}
		srv, err := daemon.Open(context.Background(), cfg)
		if err == nil {
			_ = srv.Close(context.Background())
		}
		want := map[string]string{"no endpoint": "--adapter headers", "two webhooks": "two webhooks"}[name]
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Open = %v, want an error naming %q", name, err, want)
		}
	}
}

// The daemon imports no concrete adapter: the CI systems' webhooks come in
// through plugins/webhook, built by the composition root.
func TestDaemonImportsNoConcreteAdapter(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, concrete := range []string{"github", "gitlab", "jenkins", "tekton", "builtin"} {
			if dep == "github.com/gatelog/gatelog/plugins/"+concrete || strings.HasPrefix(dep, "github.com/gatelog/gatelog/plugins/"+concrete+"/") {
				t.Errorf("daemon imports %s", dep)
			}
		}
	}
	if !strings.Contains(string(out), "github.com/gatelog/gatelog/plugins/webhook") {
		t.Error("daemon does not import plugins/webhook")
	}
}
