package triggersauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/plugins/webhook"
	"github.com/gatelog/gatelog/record/decision"
)

func testHook(t testing.TB) *Hook {
	t.Helper()
	h, err := newHook(Config{Sources: []Source{
		{Name: "other-repo", Provider: GitHub, Secret: []byte("another repository's secret")},
		{Name: "gh", Provider: GitHub, Secret: []byte(fixtureGitHubSecret), Namespaces: []string{"ci"}},
		{Name: "gl", Provider: GitLab, Secret: []byte(fixtureGitLabToken)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestTriggersRefusesReplays(t *testing.T) {
	h := testHook(t)
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	seen, err := identity.OpenReplayCache(filepath.Join(t.TempDir(), SeenFile), 0, now)
	if err != nil {
		t.Fatal(err)
	}
	defer seen.Close()
	h.seen = replayMemory{seen}
	_, push, err := h.verify(interceptorFixture(t, "interceptor-github-push"))
	if err != nil {
		t.Fatal(err)
	}
	at := func(triggerID string) Verified {
		v := push
		v.TriggerID = triggerID
		return v
	}
	if err := h.use(at("namespaces/ci/triggers/release"), now); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := h.use(at("namespaces/ci/triggers/release"), now.Add(time.Hour)); !errors.Is(err, ErrReplayed) {
		t.Errorf("same webhook, same trigger: %v, want ErrReplayed", err)
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
	full, err := identity.OpenReplayCache(filepath.Join(t.TempDir(), SeenFile), 1, now)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	h.seen = replayMemory{full}
	if err := h.use(at("namespaces/ci/triggers/a"), now); err != nil {
		t.Fatal(err)
	}
	if err := h.use(at("namespaces/ci/triggers/b"), now); err == nil || errors.Is(err, ErrReplayed) || !errors.Is(err, identity.ErrUnavailable) {
		t.Errorf("full memory: %v, want an ErrUnavailable refusal", err)
	}
	h.seen = nil
	if err := h.use(at("namespaces/ci/triggers/other"), now); err == nil {
		t.Error("a hook without its replay memory accepted a webhook")
	}
}

// The subject a Triggers source vouches for is the login and what the
// operator stated about the source's senders, nothing the payload said.
func TestVouch(t *testing.T) {
	h, err := newHook(Config{Sources: []Source{
		{Name: "gh", Provider: GitHub, Secret: []byte("s"), MFASetting: "github.org_2fa_required:acme"},
		{Name: "gl", Provider: GitLab, Secret: []byte("t")},
	}})
	if err != nil {
		t.Fatal(err)
	}
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
		h.Vouch(&req, tc.caller)
		got, _ := json.Marshal(req.Subject)
		want, _ := json.Marshal(tc.want)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: subject %s, want %s", tc.caller, got, want)
		}
	}
	// Other callers' subjects are left alone.
	req := decision.Request{Subject: claimed}
	h.Vouch(&req, "apikey:ci")
	if !req.Subject.MFA || len(req.Subject.Groups) != 1 {
		t.Errorf("another caller's subject changed: %+v", req.Subject)
	}
}

// replayMemory is the daemon's webhook.ReplayMemory: the replay cache, its
// refusal of a used key wrapping webhook.ErrReplayed.
type replayMemory struct{ *identity.ReplayCache }

func (m replayMemory) Use(kind, key string, forget, now time.Time) error {
	err := m.ReplayCache.Use(kind, key, forget, now)
	if errors.Is(err, identity.ErrReplayed) {
		return fmt.Errorf("%w: %w", webhook.ErrReplayed, err)
	}
	return err
}
