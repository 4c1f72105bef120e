package github

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gogithub "github.com/google/go-github/v88/github"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/adapter/adaptertest"
	"github.com/gatelog/gatelog/record/decision"
)

var suite = adaptertest.Suite{
	New:     func() adapter.Adapter { return New() },
	Allowed: allowed,
	Garbage: [][]byte{
		[]byte(`{"action":"requested","environment":"production","repository":{"full_name":"a/b"},"deployment_callback_url":"https://api.github.com/repos/a/b/actions/runs/0/deployment_protection_rule","sender":{"login":"x"}}`),
		[]byte(`{"action":"requested","environment":"production","repository":{"full_name":"a/b"},"deployment_callback_url":"/repos/a/b/actions/runs/1/deployment_protection_rule","sender":{"login":"x"}}`),
		[]byte(`{"action":"requested","environment":" ","repository":{"full_name":"a/b"}}`),
		[]byte(`{"action":"requested","environment":"p","repository":"a/b"}`),
		[]byte(`{"action":"completed"}`),
	},
}

// allowed reads the review the way GitHub does: the deployment proceeds
// only on state "approved" for the environment it waits for.
func allowed(in adapter.Native, resp adapter.Response) (bool, error) {
	var r Review
	dec := json.NewDecoder(bytes.NewReader(resp.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return false, err
	}
	if r.State != StateApproved && r.State != StateRejected {
		return false, fmt.Errorf("state %q: GitHub takes approved or rejected", r.State)
	}
	if r.Comment == "" || len(r.Comment) > MaxCommentBytes {
		return false, fmt.Errorf("comment of %d bytes", len(r.Comment))
	}
	ev, err := ParseEvent(in.Body)
	if err != nil {
		// Nothing to review: nothing may be approved.
		return r.State == StateApproved, nil
	}
	if r.EnvironmentName != ev.Environment {
		return false, fmt.Errorf("environment_name %q, the run waits for %q", r.EnvironmentName, ev.Environment)
	}
	return r.State == StateApproved, nil
}

func TestConformance(t *testing.T) { suite.Run(t) }

func FuzzTranslate(f *testing.F) { suite.Fuzz(f) }

func fixture(t *testing.T, name string) adapter.Native {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", name+".payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	return adapter.Native{Body: body, Headers: http.Header{"X-Github-Delivery": {"d-1"}}}
}

// The fixtures follow GitHub's documented payload: go-github's type for the
// event reads the same repository, environment, callback, installation and
// sender from them as the adapter does.
func TestFixturesDecodeWithGoGitHub(t *testing.T) {
	paths, _ := filepath.Glob("testdata/*.payload.json")
	for _, p := range paths {
		if strings.HasPrefix(filepath.Base(p), "ping") {
			continue
		}
		body, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var upstream gogithub.DeploymentProtectionRuleEvent
		if err := json.Unmarshal(body, &upstream); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		var ours Event
		if err := json.Unmarshal(body, &ours); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if upstream.GetAction() != ours.Action || upstream.GetEnvironment() != ours.Environment ||
			upstream.GetDeploymentCallbackURL() != ours.DeploymentCallbackURL ||
			upstream.GetRepo().GetFullName() != ours.Repository.FullName ||
			upstream.GetInstallation().GetID() != ours.Installation.ID ||
			upstream.GetDeployment().GetID() != ours.Deployment.ID {
			t.Errorf("%s: go-github and the adapter read different events", p)
		}
		if ours.Sender != nil && upstream.GetSender().GetLogin() != ours.Sender.Login {
			t.Errorf("%s: sender %q vs %q", p, upstream.GetSender().GetLogin(), ours.Sender.Login)
		}
	}
}

// The sender is only a claim at the adapter: the daemon decides whether the
// webhook's signer may vouch for it. The deployment description is the
// workflow author's text, so it is unverified context.
func TestTranslateMapsTheRun(t *testing.T) {
	req, err := New().Translate(t.Context(), fixture(t, "pull-request-staging"))
	if err != nil {
		t.Fatal(err)
	}
	if req.Subject.ID != "bob" || req.Subject.Verified || req.Subject.AssertedBy != "" {
		t.Errorf("subject = %+v", req.Subject)
	}
	if req.Resource.Environment != "staging" || req.Resource.Repository != "acme/shop" || req.Resource.Ref != "refs/pull/318/merge" {
		t.Errorf("resource = %+v", req.Resource)
	}
	if req.Resource.Attributes["workflow_run_id"] != int64(11843400112) || req.Resource.Attributes["sha"] != "1f4e3c1b2a0987d6e5f4c3b2a1908f7e6d5c4b3a" {
		t.Errorf("attributes = %v", req.Resource.Attributes)
	}
	if req.Context.Change == nil || req.Context.Change.Author != "bob" || req.Context.Change.ID != "#318" {
		t.Errorf("change = %+v", req.Context.Change)
	}
	if req.Context.Unverified["deployment_description"] != "preview of #318, ships the new checkout" {
		t.Errorf("unverified = %v", req.Context.Unverified)
	}
	if req.Source.RequestID != "d-1" {
		t.Errorf("source = %+v", req.Source)
	}
	bot, err := New().Translate(t.Context(), fixture(t, "schedule-bot-enterprise"))
	if err != nil {
		t.Fatal(err)
	}
	if bot.Subject.Kind != "service" || bot.Subject.ID != "github-actions[bot]" {
		t.Errorf("a Bot sender is a service: %+v", bot.Subject)
	}
}

func TestConfigureAction(t *testing.T) {
	a := New()
	if err := a.Configure(t.Context(), map[string]string{SettingAction: "deploy.github"}); err != nil {
		t.Fatal(err)
	}
	req, err := a.Translate(t.Context(), fixture(t, "push-main-production"))
	if err != nil || req.Action != "deploy.github" {
		t.Errorf("action %q, %v", req.Action, err)
	}
	if err := a.Configure(t.Context(), map[string]string{SettingAction: " "}); !errors.Is(err, adapter.ErrBadSettings) {
		t.Errorf("empty action: %v", err)
	}
}

func TestRenderReview(t *testing.T) {
	in := fixture(t, "push-main-production")
	rc := &decision.Receipt{DecisionID: "0b7e5d1c-3f2a-4e8b-9c6d-1a2b3c4d5e6f", Allow: true, LogIndex: 41, UUID: "b2f9a1c0d3e4f5a6" + strings.Repeat("cd", 32), Reasons: []string{"release manager with MFA"}}
	for _, tc := range []struct {
		name  string
		out   adapter.Outcome
		state string
		want  []string
	}{
		{"allow", adapter.Outcome{Receipt: rc}, StateApproved, []string{"gatelog: ALLOWED", "decision 0b7e5d1c-3f2a-4e8b-9c6d-1a2b3c4d5e6f", "log index 41", "entry b2f9a1c0d3e4f5a6", "release manager with MFA"}},
		{"deny", adapter.Outcome{Receipt: &decision.Receipt{DecisionID: "d-2", LogIndex: 42, Reasons: []string{"freeze window", "no change ticket"}}}, StateRejected, []string{"gatelog: DENIED (decision d-2, log index 42): freeze window; no change ticket"}},
		{"log down", adapter.Outcome{Failure: &adapter.Failure{Kind: adapter.Unavailable, Message: "the decision could not be logged, so it is denied"}}, StateRejected, []string{"gatelog: DENIED: the decision could not be logged"}},
	} {
		resp, err := New().Render(t.Context(), in, tc.out)
		if err != nil {
			t.Fatal(err)
		}
		var r Review
		if err := json.Unmarshal(resp.Body, &r); err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusOK || r.State != tc.state || r.EnvironmentName != "production" {
			t.Errorf("%s: status %d, review %+v", tc.name, resp.Status, r)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.Comment, w) {
				t.Errorf("%s: comment %q lacks %q", tc.name, r.Comment, w)
			}
		}
	}
	// A payload without a callback cannot be reviewed: 400, never approved.
	resp, err := New().Render(t.Context(), fixture(t, "ping"), adapter.Outcome{Receipt: rc})
	if err != nil || resp.Status != http.StatusBadRequest || bytes.Contains(resp.Body, []byte(StateApproved)) {
		t.Errorf("ping: %d %s %v", resp.Status, resp.Body, err)
	}
}

// The comment stays within MaxCommentBytes and keeps where the record is.
func TestCommentIsBounded(t *testing.T) {
	long := strings.Repeat("é", 2000)
	c := Comment(adapter.Outcome{Receipt: &decision.Receipt{DecisionID: "d-9", LogIndex: 7, Reasons: []string{long}}})
	if len(c) > MaxCommentBytes || !strings.HasPrefix(c, "gatelog: DENIED (decision d-9, log index 7)") || !strings.HasSuffix(c, "…") {
		t.Errorf("comment of %d bytes: %.80q…", len(c), c)
	}
	if !strings.Contains(Rejection("production", long).Comment, "gatelog: DENIED: ") {
		t.Error("Rejection comment")
	}
}

// GitHub's documented test vector ("Validating webhook deliveries"): secret
// "It's a Secret to Everybody", body "Hello, World!".
const docSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

func TestSignature(t *testing.T) {
	secret, body := []byte("It's a Secret to Everybody"), []byte("Hello, World!")
	if got := Sign(secret, body); got != docSignature {
		t.Fatalf("Sign = %s, want GitHub's %s", got, docSignature)
	}
	if err := VerifySignature(secret, body, docSignature); err != nil {
		t.Fatal(err)
	}
	// go-github, a well-kept client, agrees.
	if err := gogithub.ValidateSignature(docSignature, body, secret); err != nil {
		t.Fatalf("go-github: %v", err)
	}
	for name, tc := range map[string]struct {
		secret []byte
		body   string
		header string
	}{
		"missing":         {secret, "Hello, World!", ""},
		"sha1":            {secret, "Hello, World!", "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59"},
		"not hex":         {secret, "Hello, World!", "sha256=zz"},
		"short":           {secret, "Hello, World!", "sha256=757107ea"},
		"other body":      {secret, "Hello, World?", docSignature},
		"other secret":    {[]byte("It's a secret to everybody"), "Hello, World!", docSignature},
		"no secret":       {nil, "Hello, World!", Sign(nil, []byte("Hello, World!"))},
		"upper-case algo": {secret, "Hello, World!", strings.Replace(docSignature, "sha256", "SHA256", 1)},
	} {
		err := VerifySignature(tc.secret, []byte(tc.body), tc.header)
		if !errors.Is(err, ErrSignature) {
			t.Errorf("%s: %v, want ErrSignature", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "757107ea0eb2509fc") && name != "short" {
			t.Errorf("%s: the error shows a signature: %v", name, err)
		}
	}
}

func FuzzVerifySignature(f *testing.F) {
	f.Add([]byte("Hello, World!"), docSignature)
	f.Add([]byte("{}"), "sha256=")
	secret := []byte("It's a Secret to Everybody")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		err := VerifySignature(secret, body, header)
		if err == nil && header != Sign(secret, body) && strings.TrimSpace(header) != Sign(secret, body) {
			// Only the one right signature (hex in either case) verifies.
			if !strings.EqualFold(strings.TrimSpace(header), Sign(secret, body)) {
				t.Fatalf("VerifySignature accepted %q", header)
			}
		}
		if err != nil && !errors.Is(err, ErrSignature) {
			t.Fatalf("error %v does not wrap ErrSignature", err)
		}
	})
}
