package triggersauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/plugins/github"
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
	b, err := os.ReadFile(filepath.Join("..", "testdata", name+".payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testVerifier(t testing.TB) *Verifier {
	t.Helper()
	v, err := New([]Source{
		{Name: "other-repo", Provider: GitHub, Secret: []byte("another repository's secret")},
		{Name: "gh", Provider: GitHub, Secret: []byte(fixtureGitHubSecret), Namespaces: []string{"ci"}},
		{Name: "gl", Provider: GitLab, Secret: []byte(fixtureGitLabToken)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
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

func TestVerify(t *testing.T) {
	v := testVerifier(t)
	push := interceptorFixture(t, "interceptor-github-push")
	mr := interceptorFixture(t, "interceptor-gitlab-merge-request")
	var pushIR struct{ Body string }
	if err := json.Unmarshal(push, &pushIR); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		ir     []byte
		source string
		err    error
	}{
		{"GitHub push signed with the secret", push, "gh", nil},
		{"GitLab merge request with the token", mr, "gl", nil},
		{"header names in lower case", edit(t, push, func(m map[string]any) {
			h := m["header"].(map[string]any)
			h["x-hub-signature-256"], h["x-github-event"] = h["X-Hub-Signature-256"], h["X-Github-Event"]
			delete(h, "X-Hub-Signature-256")
			delete(h, "X-Github-Event")
		}), "gh", nil},
		{"signed with another secret", edit(t, push, setHeader("X-Hub-Signature-256", github.Sign([]byte("guess"), []byte(pushIR.Body)))), "", ErrUnverified},
		{"no signature", edit(t, push, setHeader("X-Hub-Signature-256")), "", ErrUnverified},
		{"only the SHA-1 signature", edit(t, edit(t, push, setHeader("X-Hub-Signature-256")), setHeader("X-Hub-Signature", "sha1=0123")), "", ErrUnverified},
		{"two signatures", edit(t, push, setHeader("X-Hub-Signature-256", github.Sign([]byte(fixtureGitHubSecret), []byte(pushIR.Body)), "sha256=00")), "", ErrUnverified},
		{"body changed", edit(t, push, func(m map[string]any) { m["body"] = strings.ReplaceAll(m["body"].(string), "Codertocat", "root") }), "", ErrUnverified},
		{"wrong GitLab token", edit(t, mr, setHeader("X-Gitlab-Token", "guess")), "", ErrUnverified},
		{"GitLab event with a GitHub signature", edit(t, edit(t, push, setHeader("X-Github-Event")), setHeader("X-Gitlab-Event", "Push Hook")), "", ErrUnverified},
		{"both event headers", edit(t, push, setHeader("X-Gitlab-Event", "Push Hook")), "", ErrUnverified},
		{"no event header", edit(t, push, setHeader("X-Github-Event")), "", ErrUnverified},
		{"namespace the source may not vouch for", edit(t, push, func(m map[string]any) {
			m["context"].(map[string]any)["trigger_id"] = "namespaces/payments/triggers/release"
		}), "", ErrUnverified},
		{"no trigger id", edit(t, push, func(m map[string]any) { delete(m, "context") }), "", decision.ErrBadRequest},
		{"not JSON", []byte(`{"body": `), "", decision.ErrBadRequest},
	} {
		got, err := v.Verify(tc.ir)
		if !errors.Is(err, tc.err) || got.Source.Name != tc.source {
			t.Errorf("%s: source %q, %v; want %q, %v", tc.name, got.Source.Name, err, tc.source, tc.err)
			continue
		}
		if err != nil {
			for _, secret := range []string{fixtureGitHubSecret, fixtureGitLabToken} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("%s: the error holds a secret: %v", tc.name, err)
				}
			}
			continue
		}
		// What the adapter gets: the verified body, no secret, no signature.
		var out, in envelope
		if err := json.Unmarshal(got.Request, &out); err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal(tc.ir, &in)
		if out.Body != in.Body || got.Body != in.Body || out.Context == nil || out.Context.TriggerID != in.Context.TriggerID || got.TriggerID != in.Context.TriggerID {
			t.Errorf("%s: the adapter would get another request: %s", tc.name, got.Request)
		}
		for _, secret := range []string{fixtureGitLabToken, "X-Gitlab-Token", "X-Hub-Signature"} {
			if bytes.Contains(got.Request, []byte(secret)) {
				t.Errorf("%s: %q reaches the adapter: %s", tc.name, secret, got.Request)
			}
		}
	}
}

// JSON field names match case-insensitively, so {"BODY": A, "body": B}
// could show two readers two bodies. The adapter gets the one request that
// was verified, re-encoded with one body.
func TestVerifyHandsOnTheVerifiedBody(t *testing.T) {
	v := testVerifier(t)
	push := interceptorFixture(t, "interceptor-github-push")
	for _, ir := range [][]byte{
		append([]byte(`{"BODY": "{\"sender\":{\"login\":\"mallory\"}}", `), push[1:]...),
		append(bytes.TrimSuffix(bytes.TrimSpace(push), []byte("}")), []byte(`, "Body": "{\"sender\":{\"login\":\"mallory\"}}"}`)...),
	} {
		got, err := v.Verify(ir)
		if err == nil && bytes.Contains(got.Request, []byte("mallory")) {
			t.Errorf("the adapter would read a body that was not verified: %s", got.Request)
		}
	}
}

func TestStripSecrets(t *testing.T) {
	mr := interceptorFixture(t, "interceptor-gitlab-merge-request")
	out := StripSecrets(mr)
	if bytes.Contains(out, []byte(fixtureGitLabToken)) || !bytes.Contains(out, []byte("Merge Request Hook")) {
		t.Errorf("stripped: %s", out)
	}
	review := []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}}`)
	if !bytes.Equal(StripSecrets(review), review) || IsInterceptorRequest(review) {
		t.Error("an AdmissionReview was taken for an InterceptorRequest")
	}
}

func TestNewValidates(t *testing.T) {
	ok := Source{Name: "gh", Provider: GitHub, Secret: []byte("s")}
	for name, srcs := range map[string][]Source{
		"no sources":       nil,
		"no name":          {{Provider: GitHub, Secret: []byte("s")}},
		"name used twice":  {ok, ok},
		"unknown provider": {{Name: "bb", Provider: "bitbucket", Secret: []byte("s")}},
		"no secret":        {{Name: "gh", Provider: GitHub}},
	} {
		if _, err := New(srcs); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzVerify: whatever an unauthenticated caller sends, Verify does not
// panic, and what it accepts carries a valid signature or token of the
// source it names, and hands on the body it checked.
func FuzzVerify(f *testing.F) {
	// Small seeds that pass (the fixtures, 10 kB each, stall the fuzzer's
	// workers here; TestVerify covers them).
	body := `{"ref":"refs/heads/main","sender":{"login":"octocat"}}`
	signed, _ := json.Marshal(map[string]any{
		"body":    body,
		"header":  map[string][]string{"X-Github-Event": {"push"}, "X-Hub-Signature-256": {github.Sign([]byte(fixtureGitHubSecret), []byte(body))}},
		"context": map[string]string{"trigger_id": "namespaces/ci/triggers/t"},
	})
	f.Add(signed)
	f.Add([]byte(`{"body":"{}","header":{"X-Gitlab-Event":["Push Hook"],"X-Gitlab-Token":["` + fixtureGitLabToken + `"]},"context":{"trigger_id":"namespaces/ci/triggers/t"}}`))
	f.Add([]byte(`{"context":{"trigger_id":"namespaces/ci/triggers/t"},"header":{"X-Github-Event":["push"]}}`))
	v := testVerifier(f)
	f.Fuzz(func(t *testing.T, ir []byte) {
		got, err := v.Verify(ir)
		if err != nil {
			return
		}
		var in, out envelope
		if json.Unmarshal(ir, &in) != nil || json.Unmarshal(got.Request, &out) != nil {
			t.Fatalf("accepted a request that does not decode: %q", ir)
		}
		header := canonical(in.Header)
		src := got.Source
		verified := src.Provider == GitHub && len(header.Values("X-Hub-Signature-256")) == 1 &&
			github.VerifySignature(src.Secret, []byte(in.Body), header.Get("X-Hub-Signature-256")) == nil ||
			src.Provider == GitLab && len(header.Values("X-Gitlab-Token")) == 1 && header.Get("X-Gitlab-Token") == string(src.Secret)
		if !verified || out.Body != in.Body || got.Body != in.Body {
			t.Fatalf("accepted as %q without a valid signature, or handed on another body: %q", src.Name, ir)
		}
	})
}
