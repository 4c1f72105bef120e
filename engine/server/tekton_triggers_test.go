package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatelog/gatelog/engine/decision"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/plugins/github"
)

// The InterceptorRequests of the tekton adapter's fixtures: real GitHub and
// GitLab webhooks forwarded as an EventListener does, signed with these
// secrets (plugins/tekton/triggers_fixtures_test.go).
const (
	fixtureGitHubSecret = "It's a Secret to Everybody"
	fixtureGitLabToken  = "glwht-tekton-triggers-example-token"
)

func interceptorFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "plugins", "tekton", "testdata", name+".payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testTriggersHook(t testing.TB) *triggersHook {
	t.Helper()
	h, err := newTriggersHook(TektonTriggersWebhook{Sources: []TriggersSource{
		{Name: "other-repo", Provider: ProviderGitHub, Secret: []byte("another repository's secret")},
		{Name: "gh", Provider: ProviderGitHub, Secret: []byte(fixtureGitHubSecret), Namespaces: []string{"ci"}},
		{Name: "gl", Provider: ProviderGitLab, Secret: []byte(fixtureGitLabToken)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// edit decodes an InterceptorRequest, lets f change it and encodes it.
func edit(t *testing.T, ir []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ir, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func setHeader(name string, values ...string) func(map[string]any) {
	return func(m map[string]any) {
		h := m["header"].(map[string]any)
		if values == nil {
			delete(h, name)
			return
		}
		h[name] = values
	}
}

func TestTriggersVerify(t *testing.T) {
	h := testTriggersHook(t)
	push := interceptorFixture(t, "interceptor-github-push")
	mr := interceptorFixture(t, "interceptor-gitlab-merge-request")
	var pushIR struct{ Body string }
	if err := json.Unmarshal(push, &pushIR); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		ir     []byte
		caller string
		err    error
	}{
		{"GitHub push signed with the secret", push, "webhook:tekton-triggers:gh", nil},
		{"GitLab merge request with the token", mr, "webhook:tekton-triggers:gl", nil},
		{"header names in lower case", edit(t, push, func(m map[string]any) {
			h := m["header"].(map[string]any)
			h["x-hub-signature-256"], h["x-github-event"] = h["X-Hub-Signature-256"], h["X-Github-Event"]
			delete(h, "X-Hub-Signature-256")
			delete(h, "X-Github-Event")
		}), "webhook:tekton-triggers:gh", nil},
		{"signed with another secret", edit(t, push, setHeader("X-Hub-Signature-256", github.Sign([]byte("guess"), []byte(pushIR.Body)))), "", ErrWebhookUnverified},
		{"no signature", edit(t, push, setHeader("X-Hub-Signature-256")), "", ErrWebhookUnverified},
		{"only the SHA-1 signature", edit(t, edit(t, push, setHeader("X-Hub-Signature-256")), setHeader("X-Hub-Signature", "sha1=0123")), "", ErrWebhookUnverified},
		{"two signatures", edit(t, push, setHeader("X-Hub-Signature-256", github.Sign([]byte(fixtureGitHubSecret), []byte(pushIR.Body)), "sha256=00")), "", ErrWebhookUnverified},
		{"body changed", edit(t, push, func(m map[string]any) { m["body"] = strings.Replace(m["body"].(string), "Codertocat", "root", -1) }), "", ErrWebhookUnverified},
		{"wrong GitLab token", edit(t, mr, setHeader("X-Gitlab-Token", "guess")), "", ErrWebhookUnverified},
		{"GitLab event with a GitHub signature", edit(t, edit(t, push, setHeader("X-Github-Event")), setHeader("X-Gitlab-Event", "Push Hook")), "", ErrWebhookUnverified},
		{"both event headers", edit(t, push, setHeader("X-Gitlab-Event", "Push Hook")), "", ErrWebhookUnverified},
		{"no event header", edit(t, push, setHeader("X-Github-Event")), "", ErrWebhookUnverified},
		{"namespace the source may not vouch for", edit(t, push, func(m map[string]any) {
			m["context"].(map[string]any)["trigger_id"] = "namespaces/payments/triggers/release"
		}), "", ErrWebhookUnverified},
		{"no trigger id", edit(t, push, func(m map[string]any) { delete(m, "context") }), "", decision.ErrBadRequest},
		{"not JSON", []byte(`{"body": `), "", decision.ErrBadRequest},
	} {
		c, out, err := h.verify(tc.ir)
		if !errors.Is(err, tc.err) || c.ID != tc.caller {
			t.Errorf("%s: caller %q, %v; want %q, %v", tc.name, c.ID, err, tc.caller, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if !c.Has("vouch") || !c.Has("decide") {
			t.Errorf("%s: caller permissions %v", tc.name, c.Permissions)
		}
		// What the adapter gets: the verified body, no secret, no signature.
		var got interceptorEnvelope
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		var in interceptorEnvelope
		_ = json.Unmarshal(tc.ir, &in)
		if got.Body != in.Body || got.Context == nil || got.Context.TriggerID != in.Context.TriggerID {
			t.Errorf("%s: the adapter would get another request: %s", tc.name, out)
		}
		for _, secret := range []string{fixtureGitLabToken, "X-Gitlab-Token", "X-Hub-Signature"} {
			if bytes.Contains(out, []byte(secret)) {
				t.Errorf("%s: %q reaches the adapter: %s", tc.name, secret, out)
			}
		}
	}
}

// JSON field names match case-insensitively, so {"BODY": A, "body": B}
// could show two readers two bodies. The adapter gets the one request the
// daemon verified, re-encoded with one body.
func TestTriggersVerifyHandsOnTheVerifiedBody(t *testing.T) {
	h := testTriggersHook(t)
	push := interceptorFixture(t, "interceptor-github-push")
	for _, ir := range [][]byte{
		append([]byte(`{"BODY": "{\"sender\":{\"login\":\"mallory\"}}", `), push[1:]...),
		append(bytes.TrimSuffix(bytes.TrimSpace(push), []byte("}")), []byte(`, "Body": "{\"sender\":{\"login\":\"mallory\"}}"}`)...),
	} {
		_, out, err := h.verify(ir)
		if err == nil && bytes.Contains(out, []byte("mallory")) {
			t.Errorf("the adapter would read a body that was not verified: %s", out)
		}
	}
}

func TestTriggersRefusesReplays(t *testing.T) {
	h := testTriggersHook(t)
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	seen, err := identity.OpenReplayCache(filepath.Join(t.TempDir(), TektonTriggersSeenFile), 0, now)
	if err != nil {
		t.Fatal(err)
	}
	defer seen.Close()
	h.seen = seen
	_, push, err := h.verify(interceptorFixture(t, "interceptor-github-push"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.use("namespaces/ci/triggers/release", push, now); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := h.use("namespaces/ci/triggers/release", push, now.Add(time.Hour)); !errors.Is(err, ErrWebhookReplayed) {
		t.Errorf("same webhook, same trigger: %v, want ErrWebhookReplayed", err)
	}
	// One event passes every trigger of the EventListener once.
	if err := h.use("namespaces/ci/triggers/deploy-production", push, now.Add(time.Hour)); err != nil {
		t.Errorf("same webhook, another trigger: %v", err)
	}
	// After the window the webhook is forgotten (it carries no signed time).
	if err := h.use("namespaces/ci/triggers/release", push, now.Add(25*time.Hour)); err != nil {
		t.Errorf("after the replay window: %v", err)
	}
	// A full memory refuses (the daemon answers UNAVAILABLE) rather than
	// forget.
	full, err := identity.OpenReplayCache(filepath.Join(t.TempDir(), TektonTriggersSeenFile), 1, now)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	h.seen = full
	if err := h.use("namespaces/ci/triggers/a", push, now); err != nil {
		t.Fatal(err)
	}
	if err := h.use("namespaces/ci/triggers/b", push, now); err == nil || errors.Is(err, ErrWebhookReplayed) || !errors.Is(err, identity.ErrUnavailable) {
		t.Errorf("full memory: %v, want an ErrUnavailable refusal", err)
	}
	h.seen = nil
	if err := h.use("namespaces/ci/triggers/other", push, now); err == nil {
		t.Error("a hook without its replay memory accepted a webhook")
	}
}

// The subject a Triggers source vouches for is the login and what the
// operator stated about the source's senders, nothing the payload said.
func TestVouchedSubject(t *testing.T) {
	h, err := newTriggersHook(TektonTriggersWebhook{Sources: []TriggersSource{
		{Name: "gh", Provider: ProviderGitHub, Secret: []byte("s"), MFASetting: "github.org_2fa_required:acme"},
		{Name: "gl", Provider: ProviderGitLab, Secret: []byte("t")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{webhooks: &webhookState{triggers: h}}
	claimed := decision.Subject{ID: "alice", Kind: "user", Groups: []string{"release-managers"}, MFA: true, Claims: map[string]any{"break_glass": true}}
	for _, tc := range []struct {
		caller string
		want   decision.Subject
	}{
		{"webhook:tekton-triggers:gh", decision.Subject{ID: "alice", Kind: "user", Verified: true, AssertedBy: "webhook:tekton-triggers:gh", MFA: true,
			Claims: map[string]any{"mfa_source": "setting:github.org_2fa_required:acme"}}},
		{"webhook:tekton-triggers:gl", decision.Subject{ID: "alice", Kind: "user", Verified: true, AssertedBy: "webhook:tekton-triggers:gl"}},
	} {
		sub := claimed
		sub.Verified, sub.AssertedBy = true, tc.caller
		req := decision.Request{Subject: sub}
		s.vouchedSubject(&req, identity.Caller{Caller: decision.Caller{ID: tc.caller}})
		got, _ := json.Marshal(req.Subject)
		want, _ := json.Marshal(tc.want)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: subject %s, want %s", tc.caller, got, want)
		}
	}
	// Other callers' subjects are left alone.
	req := decision.Request{Subject: claimed}
	s.vouchedSubject(&req, identity.Caller{Caller: decision.Caller{ID: "apikey:ci"}})
	if !req.Subject.MFA || len(req.Subject.Groups) != 1 {
		t.Errorf("another caller's subject changed: %+v", req.Subject)
	}
}

func TestStripInterceptorSecrets(t *testing.T) {
	mr := interceptorFixture(t, "interceptor-gitlab-merge-request")
	out := stripInterceptorSecrets(mr)
	if bytes.Contains(out, []byte(fixtureGitLabToken)) || !bytes.Contains(out, []byte("Merge Request Hook")) {
		t.Errorf("stripped: %s", out)
	}
	review := []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}}`)
	if !bytes.Equal(stripInterceptorSecrets(review), review) {
		t.Error("an AdmissionReview was changed")
	}
}

func TestNewTriggersHookValidates(t *testing.T) {
	ok := TriggersSource{Name: "gh", Provider: ProviderGitHub, Secret: []byte("s")}
	for name, srcs := range map[string][]TriggersSource{
		"no sources":       nil,
		"no name":          {{Provider: ProviderGitHub, Secret: []byte("s")}},
		"name used twice":  {ok, ok},
		"unknown provider": {{Name: "bb", Provider: "bitbucket", Secret: []byte("s")}},
		"no secret":        {{Name: "gh", Provider: ProviderGitHub}},
	} {
		if _, err := newTriggersHook(TektonTriggersWebhook{Sources: srcs}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLoadWebhooksTektonTriggers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, perm os.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), perm); err != nil {
			t.Fatal(err)
		}
	}
	write("gh", fixtureGitHubSecret+"\n", 0o600)
	write("open", "secret\n", 0o644)
	write("ok.json", `{"tekton_triggers": {"replay_window": "72h", "sources": [{"name": "github", "provider": "github", "secret_file": "gh", "namespaces": ["ci"], "mfa_setting": "github.org_2fa_required:acme"}]}}`, 0o644)
	w, err := LoadWebhooks(filepath.Join(dir, "ok.json"))
	if err != nil || w.TektonTriggers == nil || len(w.TektonTriggers.Sources) != 1 || w.TektonTriggers.ReplayWindow != 72*time.Hour {
		t.Fatalf("LoadWebhooks = %+v, %v", w, err)
	}
	src := w.TektonTriggers.Sources[0]
	if src.Name != "github" || src.Provider != "github" || string(src.Secret) != fixtureGitHubSecret || len(src.Namespaces) != 1 || src.MFASetting != "github.org_2fa_required:acme" || w.GitHub != nil || w.GitLab != nil {
		t.Errorf("source = %+v", src)
	}
	for name, cfg := range map[string]string{
		"secret readable by others": `{"tekton_triggers": {"sources": [{"name": "g", "provider": "github", "secret_file": "open"}]}}`,
		"no secret file":            `{"tekton_triggers": {"sources": [{"name": "g", "provider": "github"}]}}`,
		"inline secret":             `{"tekton_triggers": {"sources": [{"name": "g", "provider": "github", "secret": "s"}]}}`,
		"unknown provider":          `{"tekton_triggers": {"sources": [{"name": "g", "provider": "gitea", "secret_file": "gh"}]}}`,
		"no sources":                `{"tekton_triggers": {}}`,
		"bad replay window":         `{"tekton_triggers": {"replay_window": "a day", "sources": [{"name": "g", "provider": "github", "secret_file": "gh"}]}}`,
	} {
		write("bad.json", cfg, 0o644)
		if _, err := LoadWebhooks(filepath.Join(dir, "bad.json")); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzTriggersVerify: whatever an unauthenticated caller sends, verify does
// not panic, and what it accepts carries a valid signature or token.
func FuzzTriggersVerify(f *testing.F) {
	f.Add(interceptorFixture(f, "interceptor-github-push"))
	f.Add(interceptorFixture(f, "interceptor-gitlab-merge-request"))
	f.Add([]byte(`{"context":{"trigger_id":"namespaces/ci/triggers/t"},"header":{"X-Github-Event":["push"]}}`))
	h := testTriggersHook(f)
	f.Fuzz(func(t *testing.T, ir []byte) {
		c, out, err := h.verify(ir)
		if err != nil {
			return
		}
		var in interceptorEnvelope
		if json.Unmarshal(ir, &in) != nil {
			t.Fatalf("accepted a request that does not decode: %q", ir)
		}
		var verified bool
		for _, s := range h.sources {
			if s.caller.ID == c.ID {
				header := map[string][]string{}
				for k, v := range in.Header {
					header[strings.ToLower(k)] = append(header[strings.ToLower(k)], v...)
				}
				verified = s.Provider == ProviderGitHub && len(header["x-hub-signature-256"]) == 1 &&
					github.VerifySignature(s.Secret, []byte(in.Body), header["x-hub-signature-256"][0]) == nil ||
					s.Provider == ProviderGitLab && len(header["x-gitlab-token"]) == 1 && header["x-gitlab-token"][0] == string(s.Secret)
			}
		}
		if !verified || len(out) == 0 {
			t.Fatalf("accepted as %q without a valid signature: %q", c.ID, ir)
		}
	})
}
