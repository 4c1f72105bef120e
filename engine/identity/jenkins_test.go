package identity_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/engine/identity/identitytest"
	"github.com/gatelog/gatelog/record/decision"
)

// jenkinsBuild is the environment of build 142 of the pipeline job
// payments/deploy, as the oidc-provider plugin expands claim templates
// from it.
var jenkinsBuild = map[string]string{
	"JOB_NAME":     "payments/deploy",
	"JOB_URL":      "https://jenkins.example.com/job/payments/job/deploy/",
	"BUILD_NUMBER": "142",
	"BUILD_URL":    "https://jenkins.example.com/job/payments/job/deploy/142/",
	"JENKINS_URL":  "https://jenkins.example.com/",
}

type jenkinsFixture struct {
	j     *identitytest.Jenkins
	auth  *identity.Authenticator
	clock *clock
	dir   string
	cfg   identity.Config
}

// newJenkinsFixture trusts a plugin-shaped Jenkins issuer with the issuer
// config extra merged into {"name":"jenkins","kind":"jenkins",...}.
func newJenkinsFixture(t *testing.T, extra map[string]any) *jenkinsFixture {
	t.Helper()
	j, err := identitytest.NewJenkins("gatelog-oidc-token")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	ic := map[string]any{"name": "jenkins", "kind": "jenkins", "issuer": j.Issuer, "audience": "gatelog"}
	for k, v := range extra {
		ic[k] = v
	}
	raw, _ := json.Marshal(map[string]any{"oidc": []any{ic}})
	cfg, err := identity.ParseConfig(raw, "")
	if err != nil {
		t.Fatal(err)
	}
	f := &jenkinsFixture{j: j, clock: newClock(time.Now()), dir: t.TempDir(), cfg: cfg}
	f.auth = f.open(t)
	return f
}

func (f *jenkinsFixture) open(t *testing.T) *identity.Authenticator {
	t.Helper()
	keys, err := identity.OpenKeyStore(filepath.Join(f.dir, "apikeys.json"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := identity.NewAuthenticator(context.Background(), identity.Options{
		Keys: keys, Config: f.cfg, ReplayCachePath: filepath.Join(f.dir, "replay"), Now: f.clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func (f *jenkinsFixture) token(t *testing.T, env map[string]string) string {
	t.Helper()
	tok, err := f.j.BuildToken(f.clock.now(), "gatelog", env)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func reason(err error) string {
	var ae *identity.AuthError
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return fmt.Sprint(err)
}

// The plugin's token with its default claims (no jti) is accepted: the job
// URL is the subject, and the job's name and build number are proven.
func TestJenkinsPluginTokenAsShipped(t *testing.T) {
	f := newJenkinsFixture(t, nil)
	tok := f.token(t, jenkinsBuild)
	var claims map[string]any
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if _, ok := claims["jti"]; ok {
		t.Fatal("the plugin's tokens have no jti; the fixture must not add one")
	}
	c, err := f.auth.Authenticate(context.Background(), bearer(tok))
	if err != nil {
		t.Fatalf("plugin token refused: %v", err)
	}
	if c.ID != "oidc:jenkins:https://jenkins.example.com/job/payments/job/deploy/" || c.Subject.Kind != "service" || c.Subject.MFA {
		t.Errorf("caller = %+v", c)
	}
	if c.Subject.Claims["build_number"] != float64(142) {
		t.Errorf("claims = %v", c.Subject.Claims)
	}
	want := identity.ResourceClaims{Name: "payments/deploy", Attributes: map[string]string{"build_number": "142"}}
	if !reflect.DeepEqual(c.Resource, want) {
		t.Errorf("resource claims = %+v, want %+v", c.Resource, want)
	}
	if got := c.Subject.Claims["verified_resource_fields"]; !reflect.DeepEqual(got, []string{"attributes.build_number", "name"}) {
		t.Errorf("verified_resource_fields = %v", got)
	}
}

// Replay protection, mode by mode.
func TestJenkinsReplayModes(t *testing.T) {
	t.Run("token_hash is the default: a token is used once", func(t *testing.T) {
		f := newJenkinsFixture(t, nil)
		if f.cfg.OIDC[0].Replay != identity.ReplayTokenHash {
			t.Fatalf("default replay for kind jenkins = %q", f.cfg.OIDC[0].Replay)
		}
		tok := f.token(t, jenkinsBuild)
		if _, err := f.auth.Authenticate(context.Background(), bearer(tok)); err != nil {
			t.Fatal(err)
		}
		_, err := f.auth.Authenticate(context.Background(), bearer(tok))
		if reason(err) != identity.ReasonReplayed {
			t.Fatalf("replayed token: %v", err)
		}
		if strings.Contains(err.Error(), strings.Split(tok, ".")[2][:20]) {
			t.Error("the error echoes the token")
		}
		// The signature's base64 has slack in its last character (2048
		// bits in 342 characters): a re-encoded copy is the same token.
		parts := strings.Split(tok, ".")
		sig := []byte(parts[2])
		last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", sig[len(sig)-1])
		sig[len(sig)-1] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last^1]
		reencoded := parts[0] + "." + parts[1] + "." + string(sig)
		if _, err := f.auth.Authenticate(context.Background(), bearer(reencoded)); reason(err) != identity.ReasonReplayed {
			t.Errorf("a re-encoded signature of a used token: %v, want it refused as replayed", err)
		}
		// The next binding of the credential mints a new token.
		f.clock.t.Add(int64(time.Second))
		if _, err := f.auth.Authenticate(context.Background(), bearer(f.token(t, jenkinsBuild))); err != nil {
			t.Fatalf("fresh token: %v", err)
		}
		// Remembered across a restart.
		f.auth.Close()
		a := f.open(t)
		if _, err := a.Authenticate(context.Background(), bearer(tok)); reason(err) != identity.ReasonReplayed {
			t.Fatalf("replay after restart: %v", err)
		}
	})
	t.Run("jti: a jenkins issuer set to require jti refuses the plugin's tokens", func(t *testing.T) {
		f := newJenkinsFixture(t, map[string]any{"replay": "jti"})
		_, err := f.auth.Authenticate(context.Background(), bearer(f.token(t, jenkinsBuild)))
		if reason(err) != identity.ReasonMalformed || !strings.Contains(err.Error(), "no jti") {
			t.Fatalf("jti-less token with replay jti: %v", err)
		}
	})
	t.Run("max_age: reusable until max_token_age, then too old", func(t *testing.T) {
		f := newJenkinsFixture(t, map[string]any{"replay": "max_age", "max_token_age": "2m", "clock_skew": "10s"})
		tok := f.token(t, jenkinsBuild)
		for i := range 2 {
			if _, err := f.auth.Authenticate(context.Background(), bearer(tok)); err != nil {
				t.Fatalf("use %d within max_token_age: %v", i+1, err)
			}
		}
		f.clock.t.Add(int64(2*time.Minute + 11*time.Second))
		if _, err := f.auth.Authenticate(context.Background(), bearer(tok)); reason(err) != identity.ReasonTooOld {
			t.Fatalf("after max_token_age: %v", err)
		}
	})
}

// Issuers that set jti still need it: only kind jenkins defaults to token hashes.
func TestJTIStillRequiredWhereIssuersSetIt(t *testing.T) {
	f := newOIDCFixture(t, nil)
	_, err := f.auth.Authenticate(context.Background(), bearer(f.token(t, func(c map[string]any) { delete(c, "jti") })))
	if reason(err) != identity.ReasonMalformed || !strings.Contains(err.Error(), "no jti") {
		t.Fatalf("github token without jti: %v", err)
	}
	tok := f.token(t, nil)
	if _, err := f.auth.Authenticate(context.Background(), bearer(tok)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.auth.Authenticate(context.Background(), bearer(tok)); reason(err) != identity.ReasonReplayed {
		t.Fatalf("replayed jti: %v", err)
	}
}

func TestReplayConfig(t *testing.T) {
	for _, tc := range []struct{ ic, want string }{
		{`"replay":"max_age"`, "max_token_age to at most 5m"},
		{`"replay":"max_age","max_token_age":"10m"`, "max_token_age to at most 5m"},
		{`"replay":"never"`, `replay "never"`},
		{`"mfa_setting":"has spaces"`, "mfa_setting"},
	} {
		raw := `{"oidc":[{"name":"j","kind":"jenkins","issuer":"https://jenkins.example.com/oidc","audience":"gatelog",` + tc.ic + `}]}`
		if _, err := identity.ParseConfig([]byte(raw), ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.ic, err, tc.want)
		}
	}
	c, err := identity.ParseConfig([]byte(`{"oidc":[{"name":"j","kind":"jenkins","issuer":"https://jenkins.example.com/oidc","audience":"gatelog","replay":"max_age","max_token_age":"3m"},
		{"name":"g","kind":"gitlab","issuer":"https://gitlab.example.com","audience":"gatelog"}]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.OIDC[0].Replay != identity.ReplayMaxAge || c.OIDC[1].Replay != identity.ReplayJTI {
		t.Errorf("replay modes %q %q", c.OIDC[0].Replay, c.OIDC[1].Replay)
	}
}

// Claim templates an administrator adds put the job's name and branch in
// the token; the payload may not contradict the job or the ref, and the
// token's build number wins over the payload's.
func TestJenkinsClaimTemplatesBindTheRequest(t *testing.T) {
	f := newJenkinsFixture(t, map[string]any{"mfa_setting": "jenkins.security_realm_requires_2fa"})
	f.j.BuildClaimTemplates = append(f.j.BuildClaimTemplates,
		identitytest.ClaimTemplate{Name: "job_name", Format: "${JOB_NAME}", Type: "string"},
		identitytest.ClaimTemplate{Name: "branch", Format: "${BRANCH_NAME}", Type: "string"})
	// A multibranch job: its name ends with the branch.
	env := map[string]string{
		"JOB_NAME": "payments/api/main", "JOB_URL": "https://jenkins.example.com/job/payments/job/api/job/main/",
		"BUILD_NUMBER": "7", "BRANCH_NAME": "main",
	}
	c, err := f.auth.Authenticate(context.Background(), bearer(f.token(t, env)))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Subject.MFA || c.Subject.Claims["mfa_source"] != "setting:jenkins.security_realm_requires_2fa" {
		t.Errorf("mfa %v, claims %v", c.Subject.MFA, c.Subject.Claims)
	}
	if c.Resource.Name != "payments/api/main" || c.Resource.Ref != "refs/heads/main" || c.Subject.Claims["branch"] != "main" || c.Subject.Claims["job_name"] != "payments/api/main" {
		t.Fatalf("resource %+v claims %v", c.Resource, c.Subject.Claims)
	}
	now := f.clock.now()
	for _, tc := range []struct {
		name  string
		res   decision.Resource
		field string // refused naming this field, or "" when accepted
	}{
		{"payload agrees", decision.Resource{Name: "payments/api/main", Ref: "refs/heads/main", Attributes: map[string]any{"build_number": "7"}}, ""},
		{"payload names nothing", decision.Resource{}, ""},
		{"another job", decision.Resource{Name: "payments/deploy-prod", Ref: "refs/heads/main"}, "resource.name"},
		{"another branch", decision.Resource{Name: "payments/api/main", Ref: "refs/heads/release"}, "resource.ref"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := decision.Request{Action: "deploy", Resource: tc.res}
			err := identity.Bind(&req, c, now)
			if tc.field != "" {
				if !errors.Is(err, identity.ErrForbidden) || !strings.Contains(err.Error(), `"`+tc.field+`"`) {
					t.Fatalf("want a refusal naming %s, got %v", tc.field, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r := req.Resource; r.Name != "payments/api/main" || r.Ref != "refs/heads/main" || r.Attributes["build_number"] != "7" {
				t.Errorf("bound resource = %+v", r)
			}
		})
	}
	req := decision.Request{Action: "deploy", Resource: decision.Resource{Attributes: map[string]any{"build_number": "6"}}}
	if err := identity.Bind(&req, c, now); err != nil {
		t.Fatal(err)
	}
	if req.Resource.Attributes["build_number"] != "7" || !reflect.DeepEqual(req.Context.Unverified["payload_attributes"], map[string]any{"build_number": "6"}) {
		t.Errorf("build number: attributes %v, unverified %v", req.Resource.Attributes, req.Context.Unverified)
	}
	// The plugin refuses to mint a token whose template names a variable
	// the build lacks: BRANCH_NAME exists only in multibranch jobs.
	if _, err := f.j.BuildToken(now, "gatelog", jenkinsBuild); !errors.Is(err, identitytest.ErrUnsubstituted) {
		t.Errorf("branch template in a job without BRANCH_NAME: %v", err)
	}
}
