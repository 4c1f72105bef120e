package identity_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatelog/gatelog/engine/identity"
)

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"oidc":[{"name":"gh","kind":"github","issuer":"https://token.actions.githubusercontent.com","audience":"gatelog"}]}`))
	f.Add([]byte(`{"mtls":{"client_ca_files":["ca.pem"],"clients":[{"cn":"x*","permissions":["decide"]}]}}`))
	f.Add([]byte(`{"oidc":[{"name":"a","issuer":"http://10.0.0.1","audience":"x","algorithms":["HS256"],"max_token_age":"-1s"}]}`))
	f.Add([]byte(`{"oidc":[{"name":"j","kind":"jenkins","issuer":"https://jenkins.example.com/oidc","audience":"gatelog","replay":"max_age","max_token_age":"5m","mfa_setting":"jenkins.sso_2fa"}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := identity.ParseConfig(raw, "/etc/gatelog")
		if err != nil {
			return
		}
		for _, ic := range c.OIDC {
			if ic.Audience == "" || len(ic.Algorithms) == 0 || len(ic.Permissions) == 0 {
				t.Fatalf("accepted issuer without defaults filled: %+v", ic)
			}
			switch ic.Replay {
			case identity.ReplayJTI, identity.ReplayTokenHash:
			case identity.ReplayMaxAge:
				if time.Duration(ic.MaxTokenAge) > identity.MaxReplayWindow {
					t.Fatalf("accepted replay max_age with max_token_age %s", time.Duration(ic.MaxTokenAge))
				}
			default:
				t.Fatalf("accepted replay mode %q", ic.Replay)
			}
			for _, a := range ic.Algorithms {
				if a[0] == 'H' || a == "none" {
					t.Fatalf("accepted symmetric or no algorithm %q", a)
				}
			}
		}
	})
}

func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"k"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		keys, err := identity.ParseJWKS(raw)
		if err == nil && len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
		for _, k := range keys {
			if _, ok := k.([]byte); ok {
				t.Fatal("symmetric key accepted")
			}
		}
	})
}

// FuzzAuthenticate feeds arbitrary Authorization headers through every
// credential kind: nothing untrusted may panic or authenticate.
func FuzzAuthenticate(f *testing.F) {
	dir := f.TempDir()
	keys, err := identity.OpenKeyStore(filepath.Join(dir, "k.json"))
	if err != nil {
		f.Fatal(err)
	}
	cfg, err := identity.ParseConfig([]byte(`{"oidc":[{"name":"gh","kind":"github","issuer":"http://127.0.0.1:1","audience":"gatelog"}]}`), dir)
	if err != nil {
		f.Fatal(err)
	}
	a, err := identity.NewAuthenticator(context.Background(), identity.Options{Keys: keys, Config: cfg, ReplayCachePath: filepath.Join(dir, "r"), Now: time.Now})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("Bearer glk_0011_22")
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjEifQ.")
	f.Add("Bearer a.b.c")
	f.Add("Basic dXNlcjpwdw==")
	f.Fuzz(func(t *testing.T, h string) {
		if c, err := a.Authenticate(context.Background(), identity.Credentials{Authorization: h}); err == nil {
			t.Fatalf("authenticated %q as %+v", h, c)
		}
	})
}

func FuzzReplayCacheFile(f *testing.F) {
	f.Add([]byte("0000000000000000000000000000000000000000000000000000000000000000 1700000000\n"))
	f.Add([]byte("zz 1\npartial"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		path := filepath.Join(t.TempDir(), "r")
		if err := writeFile(path, raw); err != nil {
			t.Fatal(err)
		}
		c, err := identity.OpenReplayCache(path, 10, time.Unix(0, 0))
		if err != nil {
			return
		}
		c.Close()
	})
}
