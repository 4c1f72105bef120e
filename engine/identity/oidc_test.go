package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/engine/identity/identitytest"
	"github.com/gatelog/gatelog/record/decision"
)

// clock is a settable clock for tests.
type clock struct{ t atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.t.Store(t.UnixNano()); return c }
func (c *clock) now() time.Time   { return time.Unix(0, c.t.Load()) }

var jtiSeq atomic.Int64

func nextJTI() string { return fmt.Sprintf("jti-%d", jtiSeq.Add(1)) }

type oidcFixture struct {
	iss   *identitytest.Issuer
	auth  *identity.Authenticator
	clock *clock
	dir   string
}

func newOIDCFixture(t *testing.T, mutate func(*identity.IssuerConfig)) *oidcFixture {
	t.Helper()
	iss, err := identitytest.NewIssuer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	ic := identity.IssuerConfig{Name: "github", Kind: identity.IssuerGitHub, Issuer: iss.URL, Audience: "gatelog", MaxTokenAge: identity.Duration(10 * time.Minute)}
	if mutate != nil {
		mutate(&ic)
	}
	raw, _ := json.Marshal(identity.Config{OIDC: []identity.IssuerConfig{ic}})
	cfg, err := identity.ParseConfig(raw, "")
	if err != nil {
		t.Fatal(err)
	}
	f := &oidcFixture{iss: iss, clock: newClock(time.Now()), dir: t.TempDir()}
	f.auth = f.open(t, cfg)
	return f
}

func (f *oidcFixture) open(t *testing.T, cfg identity.Config) *identity.Authenticator {
	t.Helper()
	keys, err := identity.OpenKeyStore(filepath.Join(f.dir, "apikeys.json"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := identity.NewAuthenticator(context.Background(), identity.Options{
		Keys: keys, Config: cfg, ReplayCachePath: filepath.Join(f.dir, "replay"), Now: f.clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func (f *oidcFixture) token(t *testing.T, edit func(map[string]any)) string {
	t.Helper()
	c := f.iss.GitHubActions(f.clock.now(), "gatelog", nextJTI())
	if edit != nil {
		edit(c)
	}
	tok, err := f.iss.Token(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearer(tok string) identity.Credentials {
	return identity.Credentials{Authorization: "Bearer " + tok}
}

func TestGitHubActionsTokenBecomesVerifiedSubject(t *testing.T) {
	f := newOIDCFixture(t, nil)
	c, err := f.auth.Authenticate(context.Background(), bearer(f.token(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "oidc:github:repo:acme/shop:environment:production" || c.Kind != "oidc" || !c.Has(identity.PermDecide) || c.Has(identity.PermVouch) {
		t.Fatalf("caller = %+v", c)
	}
	req := decision.Request{Action: "deploy", Resource: decision.Resource{System: "github"}}
	if err := identity.Bind(&req, c, f.clock.now().Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	s := req.Subject
	if !s.Verified || s.Issuer != f.iss.URL || s.ID != "repo:acme/shop:environment:production" || s.Kind != "service" || s.TokenAgeS != 30 {
		t.Errorf("subject = %+v", s)
	}
	if s.Claims["actor"] != "alice" || s.Claims["job_workflow_ref"] != "acme/shop/.github/workflows/deploy.yml@refs/heads/main" || s.Claims["runner_environment"] != "github-hosted" {
		t.Errorf("claims = %v", s.Claims)
	}
	if r := req.Resource; r.Repository != "acme/shop" || r.Ref != "refs/heads/main" || r.Environment != "production" {
		t.Errorf("resource not filled from the token: %+v", r)
	}
	// A payload that contradicts the token is refused, naming the field.
	req = decision.Request{Action: "deploy", Resource: decision.Resource{Environment: "staging"}}
	err = identity.Bind(&req, c, f.clock.now())
	if !errors.Is(err, identity.ErrForbidden) || !strings.Contains(err.Error(), `"resource.environment"`) {
		t.Errorf("contradicting environment: %v", err)
	}
	// Without vouch, a subject in the payload is refused.
	req = decision.Request{Action: "deploy", Subject: decision.Subject{ID: "mallory"}}
	if err := identity.Bind(&req, c, f.clock.now()); !errors.Is(err, identity.ErrForbidden) {
		t.Errorf("vouching without permission: %v", err)
	}
}

// The rejection table, at the identity layer: every bad token is
// refused with ErrUnauthenticated and a reason.
func TestOIDCRejections(t *testing.T) {
	f := newOIDCFixture(t, nil)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubPEM, _ := cryptoutils.MarshalPublicKeyToPEM(f.iss.Key.Public())
	replayed := f.token(t, nil)
	if _, err := f.auth.Authenticate(context.Background(), bearer(replayed)); err != nil {
		t.Fatal(err)
	}
	now := f.clock.now()
	claims := func(edit func(map[string]any)) map[string]any {
		c := f.iss.GitHubActions(now, "gatelog", nextJTI())
		if edit != nil {
			edit(c)
		}
		return c
	}
	sign := func(alg jose.SignatureAlgorithm, key any, c map[string]any) string {
		tok, err := identitytest.Sign(alg, key, f.iss.KeyID, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	b64 := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	good := f.token(t, nil)
	parts := strings.Split(good, ".")
	cases := []struct {
		name, token, reason string
	}{
		{"forged signature", sign(jose.ES256, other, claims(nil)), identity.ReasonBadSignature},
		{"tampered payload", parts[0] + "." + b64(claims(func(c map[string]any) { c["environment"] = "dev" })) + "." + parts[2], identity.ReasonBadSignature},
		{"expired", f.token(t, func(c map[string]any) {
			c["iat"] = now.Add(-9 * time.Minute).Unix()
			c["exp"] = now.Add(-time.Minute).Unix()
		}), identity.ReasonExpired},
		{"not yet valid", f.token(t, func(c map[string]any) { c["nbf"] = now.Add(5 * time.Minute).Unix() }), identity.ReasonNotYetValid},
		{"issued in the future", f.token(t, func(c map[string]any) { c["iat"] = now.Add(5 * time.Minute).Unix(); c["nbf"] = nil }), identity.ReasonNotYetValid},
		{"too old", f.token(t, func(c map[string]any) { c["iat"] = now.Add(-time.Hour).Unix(); c["nbf"] = c["iat"] }), identity.ReasonTooOld},
		{"replayed jti", replayed, identity.ReasonReplayed},
		{"no jti", f.token(t, func(c map[string]any) { delete(c, "jti") }), identity.ReasonMalformed},
		{"no exp", f.token(t, func(c map[string]any) { delete(c, "exp") }), identity.ReasonMalformed},
		{"wrong audience", f.token(t, func(c map[string]any) { c["aud"] = "sigstore" }), identity.ReasonWrongAudience},
		{"wrong issuer", f.token(t, func(c map[string]any) { c["iss"] = "https://evil.example" }), identity.ReasonWrongIssuer},
		{"alg none", b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64(claims(nil)) + ".", identity.ReasonBadAlgorithm},
		{"unsigned", parts[0] + "." + parts[1] + ".", identity.ReasonBadSignature},
		{"HS256 with the public key", sign(jose.HS256, pubPEM, claims(nil)), identity.ReasonBadAlgorithm},
		{"garbage", "a.b.c", identity.ReasonMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.auth.Authenticate(context.Background(), bearer(tc.token))
			var ae *identity.AuthError
			if !errors.Is(err, identity.ErrUnauthenticated) || !errors.As(err, &ae) {
				t.Fatalf("accepted or wrong error: %v", err)
			}
			if ae.Reason != tc.reason || ae.Kind != identity.KindOIDC {
				t.Errorf("reason %s/%s (%v), want oidc/%s", ae.Kind, ae.Reason, err, tc.reason)
			}
			if strings.Contains(err.Error(), tc.token) && len(tc.token) > 8 {
				t.Errorf("error message echoes the token")
			}
		})
	}
}

// A real provider (discovery + JWKS over HTTP) issues a token that is
// accepted exactly once, also across a restart of the authenticator.
func TestTokenAcceptedExactlyOnceAcrossRestart(t *testing.T) {
	f := newOIDCFixture(t, nil)
	tok := f.token(t, nil)
	if _, err := f.auth.Authenticate(context.Background(), bearer(tok)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.auth.Authenticate(context.Background(), bearer(tok)); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("second use: %v", err)
	}
	f.auth.Close()
	raw, _ := json.Marshal(identity.Config{OIDC: []identity.IssuerConfig{{Name: "github", Kind: "github", Issuer: f.iss.URL, Audience: "gatelog"}}})
	cfg, err := identity.ParseConfig(raw, "")
	if err != nil {
		t.Fatal(err)
	}
	a := f.open(t, cfg)
	if _, err := a.Authenticate(context.Background(), bearer(tok)); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("replay after restart: %v", err)
	}
	if _, err := a.Authenticate(context.Background(), bearer(f.token(t, nil))); err != nil {
		t.Fatalf("fresh token after restart: %v", err)
	}
}

// Air-gapped: the issuer's keys come from a JWKS file, no network.
func TestStaticJWKSFile(t *testing.T) {
	iss, err := identitytest.NewIssuer()
	if err != nil {
		t.Fatal(err)
	}
	jwks := iss.JWKS()
	iss.Close() // nothing is served: the file is all there is
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), jwks, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := identity.ParseConfig([]byte(fmt.Sprintf(`{"oidc":[{"name":"corp","kind":"generic","issuer":%q,"jwks_file":"jwks.json","audience":"gatelog","claims":["department"],"mfa_acr":["phr"]}]}`, iss.URL)), dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := identity.OpenKeyStore(filepath.Join(dir, "apikeys.json"))
	now := time.Now()
	a, err := identity.NewAuthenticator(context.Background(), identity.Options{Keys: keys, Config: cfg, ReplayCachePath: filepath.Join(dir, "replay"), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, tc := range []struct {
		amr []string
		acr string
		mfa bool
	}{{[]string{"pwd", "mfa"}, "", true}, {[]string{"pwd"}, "phr", true}, {[]string{"pwd"}, "", false}} {
		tok, err := iss.Token(map[string]any{
			"iss": iss.URL, "aud": []string{"gatelog", "other"}, "sub": "u-123", "jti": nextJTI(),
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "auth_time": now.Add(-20 * time.Minute).Unix(),
			"groups": []string{"release-managers", "developers"}, "amr": tc.amr, "acr": tc.acr, "department": "payments", "email": "alice@example.com",
		})
		if err != nil {
			t.Fatal(err)
		}
		c, err := a.Authenticate(context.Background(), bearer(tok))
		if err != nil {
			t.Fatal(err)
		}
		req := decision.Request{Action: "deploy"}
		if err := identity.Bind(&req, c, now); err != nil {
			t.Fatal(err)
		}
		s := req.Subject
		if s.ID != "u-123" || s.Kind != "user" || s.MFA != tc.mfa || len(s.Groups) != 2 || s.TokenAgeS != 1200 || s.AuthTime == "" {
			t.Errorf("amr %v acr %q: subject = %+v", tc.amr, tc.acr, s)
		}
		if s.Claims["department"] != "payments" || s.Claims["email"] != "alice@example.com" {
			t.Errorf("claims = %v", s.Claims)
		}
	}
}

func TestIssuerKindsMapClaims(t *testing.T) {
	for _, tc := range []struct {
		kind   string
		claims map[string]any
		id     string
		want   map[string]any
		res    identity.ResourceClaims
	}{
		{"gitlab", map[string]any{"sub": "project_path:acme/shop:ref_type:branch:ref:main", "project_path": "acme/shop", "ref": "main", "ref_type": "branch", "environment": "production", "user_login": "alice", "ref_protected": "true"},
			"project_path:acme/shop:ref_type:branch:ref:main", map[string]any{"actor": "alice", "ref_protected": "true"},
			identity.ResourceClaims{Repository: "acme/shop", Ref: "refs/heads/main", Environment: "production"}},
		{"jenkins", map[string]any{"sub": "https://jenkins.example/job/deploy/", "build_number": 42},
			"https://jenkins.example/job/deploy/", map[string]any{"build_number": float64(42)},
			identity.ResourceClaims{Name: "deploy", Attributes: map[string]string{"build_number": "42"}}},
		{"kubernetes", map[string]any{"sub": "system:serviceaccount:tekton-pipelines:tekton-controller", "kubernetes.io": map[string]any{"namespace": "tekton-pipelines", "serviceaccount": map[string]any{"name": "tekton-controller"}, "pod": map[string]any{"name": "ctl-0"}}},
			"system:serviceaccount:tekton-pipelines:tekton-controller", map[string]any{"namespace": "tekton-pipelines", "service_account": "tekton-controller", "pod": "ctl-0"}, identity.ResourceClaims{}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			f := newOIDCFixture(t, func(ic *identity.IssuerConfig) { ic.Kind = tc.kind; ic.Name = tc.kind })
			now := f.clock.now()
			c := map[string]any{"iss": f.iss.URL, "aud": "gatelog", "jti": nextJTI(), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
			for k, v := range tc.claims {
				c[k] = v
			}
			tok, _ := f.iss.Token(c)
			caller, err := f.auth.Authenticate(context.Background(), bearer(tok))
			if err != nil {
				t.Fatal(err)
			}
			if caller.Subject.ID != tc.id || caller.ID != "oidc:"+tc.kind+":"+tc.id || !reflect.DeepEqual(caller.Resource, tc.res) {
				t.Errorf("caller = %+v", caller)
			}
			for k, v := range tc.want {
				if caller.Subject.Claims[k] != v {
					t.Errorf("claim %s = %v, want %v", k, caller.Subject.Claims[k], v)
				}
			}
		})
	}
}

func TestDiscoveryFailureFailsClosed(t *testing.T) {
	f := newOIDCFixture(t, nil)
	tok := f.token(t, nil)
	f.iss.Close()
	_, err := f.auth.Authenticate(context.Background(), bearer(tok))
	if !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("unreachable issuer: %v", err)
	}
}
