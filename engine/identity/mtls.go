package identity

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path"
	"slices"
	"time"

	"github.com/gatelog/gatelog/record/decision"
)

// mtlsVerifier checks client certificate chains against the configured
// CAs and maps the verified certificate to a caller.
type mtlsVerifier struct {
	roots   *x509.CertPool
	clients []MTLSClient
	now     func() time.Time
}

func newMTLSVerifier(cfg MTLSConfig, now func() time.Time) (*mtlsVerifier, error) {
	pool := x509.NewCertPool()
	for _, f := range cfg.ClientCAFiles {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("identity: client CA: %w", err)
		}
		if !pool.AppendCertsFromPEM(raw) {
			return nil, fmt.Errorf("identity: client CA %s holds no PEM certificate", f)
		}
	}
	return &mtlsVerifier{roots: pool, clients: cfg.Clients, now: now}, nil
}

// authenticate verifies the chain (leaf first) for client authentication.
// The TLS handshake already proved the client holds the leaf's key; the
// chain is checked here, not in the handshake, so a wrong certificate gets
// a 401 with a reason instead of a dropped connection.
func (m *mtlsVerifier) authenticate(chain []*x509.Certificate) (Caller, error) {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots: m.roots, Intermediates: inter, CurrentTime: m.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return Caller{}, authError(KindMTLS, ReasonBadCertificate, "client certificate %q does not verify against the configured client CAs: %v", leaf.Subject.CommonName, err)
	}
	id := leaf.Subject.CommonName
	switch {
	case len(leaf.URIs) > 0:
		id = leaf.URIs[0].String()
	case len(leaf.DNSNames) > 0:
		id = leaf.DNSNames[0]
	}
	if id == "" {
		return Caller{}, authError(KindMTLS, ReasonBadCertificate, "client certificate has no URI or DNS SAN and no common name")
	}
	claims := map[string]any{"serial": hex.EncodeToString(leaf.SerialNumber.Bytes())}
	if leaf.Subject.CommonName != "" {
		claims["cn"] = leaf.Subject.CommonName
	}
	if len(leaf.DNSNames) > 0 {
		claims["dns"] = slices.Clone(leaf.DNSNames)
	}
	if len(leaf.URIs) > 0 {
		uris := make([]string, len(leaf.URIs))
		for i, u := range leaf.URIs {
			uris[i] = u.String()
		}
		claims["uri"] = uris
	}
	c := Caller{
		Caller:  decision.Caller{ID: "mtls:" + id, Kind: KindMTLS},
		Created: leaf.NotBefore,
		Expires: leaf.NotAfter,
		Subject: decision.Subject{ID: id, Kind: KindMTLS, Issuer: leaf.Issuer.String(), Claims: claims},
	}
	for _, cl := range m.clients {
		if name, ok := cl.matches(leaf); ok {
			// The permissions were granted to the name that matched, so
			// that is who the record says asked, not the first SAN.
			if name != "" {
				c.Caller.ID, c.Subject.ID = "mtls:"+name, name
			}
			c.Permissions = slices.Clone(cl.Permissions)
			break
		}
	}
	return c, nil
}

// matches reports whether the certificate fits the rule and, if so, the
// name the rule matched: the URI SAN for a URI rule, else the DNS SAN for
// a DNS rule, else the common name for a CN rule ("" for a rule with no
// pattern at all).
func (cl MTLSClient) matches(leaf *x509.Certificate) (string, bool) {
	var cn, dns, uri string
	if cl.CN != "" {
		if !globMatch(cl.CN, leaf.Subject.CommonName) {
			return "", false
		}
		cn = leaf.Subject.CommonName
	}
	if cl.DNS != "" {
		i := slices.IndexFunc(leaf.DNSNames, func(n string) bool { return globMatch(cl.DNS, n) })
		if i < 0 {
			return "", false
		}
		dns = leaf.DNSNames[i]
	}
	if cl.URI != "" {
		i := slices.IndexFunc(leaf.URIs, func(u *url.URL) bool { return globMatch(cl.URI, u.String()) })
		if i < 0 {
			return "", false
		}
		uri = leaf.URIs[i].String()
	}
	switch {
	case uri != "":
		return uri, true
	case dns != "":
		return dns, true
	default:
		return cn, true
	}
}

func globMatch(pattern, s string) bool {
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}
