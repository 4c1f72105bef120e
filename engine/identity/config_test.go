package identity_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/engine/identity"
)

func TestConfigRejectsUnsafeSettings(t *testing.T) {
	for _, tc := range []struct{ cfg, want string }{
		{`{"oidc":[{"name":"a","issuer":"https://i.example","audience":"g","algorithms":["HS256"]}]}`, "not allowed"},
		{`{"oidc":[{"name":"a","issuer":"https://i.example","audience":"g","algorithms":["none"]}]}`, "not allowed"},
		{`{"oidc":[{"name":"a","issuer":"https://i.example"}]}`, "audience is required"},
		{`{"oidc":[{"name":"a","issuer":"http://idp.example","audience":"g"}]}`, "must be https"},
		{`{"oidc":[{"name":"a","kind":"bitbucket","issuer":"https://i.example","audience":"g"}]}`, "kind"},
		{`{"oidc":[{"name":"a","issuer":"https://i.example","audience":"g","permissions":["root"]}]}`, "unknown permission"},
		{`{"oidc":[{"name":"a","issuer":"https://i.example","audience":"g"}],"extra":1}`, "unknown field"},
		{`{"mtls":{"client_ca_files":["c.pem"],"clients":[{"permissions":["decide"]}]}}`, "at least one of"},
	} {
		if _, err := identity.ParseConfig([]byte(tc.cfg), ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want error containing %q", tc.cfg, err, tc.want)
		}
	}
	noCA, err := identity.ParseConfig([]byte(`{"mtls":{"clients":[{"cn":"x","permissions":["decide"]}]}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := identity.OpenKeyStore(filepath.Join(t.TempDir(), "k.json"))
	if _, err := identity.NewAuthenticator(context.Background(), identity.Options{Keys: keys, Config: noCA}); err == nil || !strings.Contains(err.Error(), "client CA") {
		t.Errorf("mtls clients without a CA: %v", err)
	}
	c, err := identity.ParseConfig([]byte(`{"oidc":[{"name":"gh","kind":"github","issuer":"https://token.actions.githubusercontent.com","audience":"gatelog","jwks_file":"gh.jwks"}]}`), "/etc/gatelog")
	if err != nil {
		t.Fatal(err)
	}
	ic := c.OIDC[0]
	if ic.JWKSFile != "/etc/gatelog/gh.jwks" || ic.SubjectKind != "service" || ic.Permissions[0] != "decide" || ic.Algorithms[0] != "RS256" {
		t.Errorf("defaults: %+v", ic)
	}
}
