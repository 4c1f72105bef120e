package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatelog/gatelog/daemon/triggersauth"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/record/decision"
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
	b, err := os.ReadFile(filepath.Join("..", "plugins", "tekton", "testdata", name+".payload.json"))
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
	at := func(triggerID string) triggersauth.Verified {
		v := push
		v.TriggerID = triggerID
		return v
	}
	if err := h.use(at("namespaces/ci/triggers/release"), now); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := h.use(at("namespaces/ci/triggers/release"), now.Add(time.Hour)); !errors.Is(err, ErrWebhookReplayed) {
		t.Errorf("same webhook, same trigger: %v, want ErrWebhookReplayed", err)
	}
	// One event passes every trigger of the EventListener once.
	if err := h.use(at("namespaces/ci/triggers/deploy-production"), now.Add(time.Hour)); err != nil {
		t.Errorf("same webhook, another trigger: %v", err)
	}
	// After the window the webhook is forgotten (it carries no signed time).
	if err := h.use(at("namespaces/ci/triggers/release"), now.Add(25*time.Hour)); err != nil {
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
	if err := h.use(at("namespaces/ci/triggers/a"), now); err != nil {
		t.Fatal(err)
	}
	if err := h.use(at("namespaces/ci/triggers/b"), now); err == nil || errors.Is(err, ErrWebhookReplayed) || !errors.Is(err, identity.ErrUnavailable) {
		t.Errorf("full memory: %v, want an ErrUnavailable refusal", err)
	}
	h.seen = nil
	if err := h.use(at("namespaces/ci/triggers/other"), now); err == nil {
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
