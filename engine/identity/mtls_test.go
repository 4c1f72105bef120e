package identity_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/engine/identity/identitytest"
)

func TestClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, err := identitytest.NewCA("clients")
	if err != nil {
		t.Fatal(err)
	}
	rogue, _ := identitytest.NewCA("clients") // same name, different key
	os.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEM, 0o644)
	cfg, err := identity.ParseConfig([]byte(`{"mtls":{"client_ca_files":["ca.pem"],"clients":[
		{"dns":"kube-apiserver.*","permissions":["decide","vouch"]},
		{"uri":"spiffe://acme/ns/ci/sa/*","permissions":["decide"]}]}}`), dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := identity.OpenKeyStore(filepath.Join(dir, "k.json"))
	a, err := identity.NewAuthenticator(context.Background(), identity.Options{Keys: keys, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *identitytest.CA, cn string, dns, uris []string, client bool) []*x509.Certificate {
		c, err := ca.Issue(cn, dns, uris, client)
		if err != nil {
			t.Fatal(err)
		}
		return []*x509.Certificate{c.Leaf}
	}
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		id    string
		perms string
		err   bool
	}{
		{"api server", issue(ca, "kube-apiserver", []string{"kube-apiserver.cluster.local"}, nil, true), "mtls:kube-apiserver.cluster.local", "[decide vouch]", false},
		{"spiffe", issue(ca, "", nil, []string{"spiffe://acme/ns/ci/sa/runner"}, true), "mtls:spiffe://acme/ns/ci/sa/runner", "[decide]", false},
		{"unmapped", issue(ca, "someone", nil, nil, true), "mtls:someone", "[]", false},
		// The permissions were granted to the second SAN: the caller is
		// that name, not the first one the certificate lists.
		{"matched SAN named", issue(ca, "x", []string{"evil.example", "kube-apiserver.cluster.local"}, nil, true), "mtls:kube-apiserver.cluster.local", "[decide vouch]", false},
		{"matched URI named", issue(ca, "", nil, []string{"spiffe://other/x", "spiffe://acme/ns/ci/sa/runner"}, true), "mtls:spiffe://acme/ns/ci/sa/runner", "[decide]", false},
		{"wrong CA", issue(rogue, "kube-apiserver", []string{"kube-apiserver.cluster.local"}, nil, true), "", "", true},
		{"server cert", issue(ca, "kube-apiserver", []string{"kube-apiserver.cluster.local"}, nil, false), "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := a.Authenticate(context.Background(), identity.Credentials{Certificates: tc.chain})
			if tc.err {
				var ae *identity.AuthError
				if !errors.As(err, &ae) || ae.Reason != identity.ReasonBadCertificate {
					t.Fatalf("accepted: %+v %v", c, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.ID != tc.id || "mtls:"+c.Subject.ID != tc.id || c.Kind != "mtls" || fmt.Sprint(c.Permissions) != tc.perms || c.Expires.Before(time.Now()) {
				t.Errorf("caller = %+v", c)
			}
		})
	}
}
