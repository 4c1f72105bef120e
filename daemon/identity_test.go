package daemon_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/daemon/api"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/engine/identity/identitytest"
	"github.com/gatelog/gatelog/internal/daemontest"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/verify"
)

// tlsDaemon is a daemon served by Serve on a real TLS listener, trusting
// a test OIDC issuer (GitHub Actions claims) and a test client CA.
type tlsDaemon struct {
	t        *testing.T
	srv      *daemon.Server
	url      string
	dir      string
	key      string // bootstrap API key
	iss      *identitytest.Issuer
	clientCA *identitytest.CA
	roots    *x509.CertPool
	stop     func()
}

var jtiSeq atomic.Int64

func startTLSDaemon(t *testing.T, edit func(*daemon.Config)) *tlsDaemon {
	t.Helper()
	dir := t.TempDir()
	iss, err := identitytest.NewIssuer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	serverCA, _ := identitytest.NewCA("gatelog test server CA")
	clientCA, _ := identitytest.NewCA("gatelog test client CA")
	cert, err := serverCA.Issue("gatelog", []string{"127.0.0.1"}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, _ := identitytest.PEM(cert)
	write := func(name string, b []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfgDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(cfgDir, "clients-ca.pem"), clientCA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	idcfg, err := identity.ParseConfig([]byte(fmt.Sprintf(`{
		"oidc": [{"name": "github", "kind": "github", "issuer": %q, "audience": "gatelog", "max_token_age": "10m"}],
		"mtls": {"client_ca_files": ["clients-ca.pem"],
		         "clients": [{"dns": "kube-apiserver.*", "permissions": ["decide", "vouch"]}]}}`, iss.URL)), cfgDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := daemon.Config{
		DataDir:            dir,
		Policies:           fstest.MapFS{"decision.rego": {Data: []byte(testPolicy)}},
		CheckpointInterval: 100 * time.Millisecond,
		Identity:           idcfg,
		TLSCertFile:        write("tls.crt", certPEM),
		TLSKeyFile:         write("tls.key", keyPEM),
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := daemon.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	d := &tlsDaemon{t: t, srv: srv, url: "https://" + ln.Addr().String(), dir: dir, iss: iss, clientCA: clientCA, roots: x509.NewCertPool()}
	d.roots.AddCert(serverCA.Cert)
	var stopped bool
	d.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	t.Cleanup(d.stop)
	raw, err := os.ReadFile(filepath.Join(dir, daemon.BootstrapKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	d.key = strings.TrimSpace(string(raw))
	return d
}

// client returns an HTTPS client trusting the daemon, presenting certs.
func (d *tlsDaemon) client(certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: d.roots, Certificates: certs}}}
}

type reply struct {
	code int
	body []byte
}

func (r reply) message(t *testing.T) string {
	t.Helper()
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Code != r.code || e.Message == "" {
		t.Fatalf("error body is not {code,message}: %d %s", r.code, r.body)
	}
	return e.Message
}

func (d *tlsDaemon) do(c *http.Client, method, path, token string, body []byte) reply {
	d.t.Helper()
	req, _ := http.NewRequest(method, d.url+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, b}
}

func (d *tlsDaemon) githubToken(edit func(map[string]any)) string {
	d.t.Helper()
	c := d.iss.GitHubActions(time.Now(), "gatelog", fmt.Sprintf("gh-%d", jtiSeq.Add(1)))
	if edit != nil {
		edit(c)
	}
	tok, err := d.iss.Token(c)
	if err != nil {
		d.t.Fatal(err)
	}
	return tok
}

// decideOK asks for a decision with a proof and verifies the receipt offline.
func (d *tlsDaemon) decideOK(c *http.Client, token, body string) decision.Record {
	d.t.Helper()
	r := d.do(c, http.MethodPost, "/v1/decide?wait=checkpoint", token, []byte(body))
	if r.code != http.StatusOK {
		d.t.Fatalf("decide: %d %s", r.code, r.body)
	}
	return d.verifyReceipt(r.body)
}

func (d *tlsDaemon) verifyReceipt(raw []byte) decision.Record {
	d.t.Helper()
	var rc decision.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil {
		d.t.Fatal(err)
	}
	if rc.InclusionProof == nil {
		r := d.do(d.client(), http.MethodGet, "/v1/decisions/"+rc.DecisionID, d.key, nil)
		if r.code != 200 {
			d.t.Fatalf("get decision: %d %s", r.code, r.body)
		}
		rc = decision.Receipt{}
		_ = json.Unmarshal(r.body, &rc)
	}
	res, err := verify.Receipt(rc, daemontest.PublicKey(d.t, filepath.Join(d.dir, "keys/log.pub")), daemontest.PublicKey(d.t, filepath.Join(d.dir, "keys/decision.pub")))
	if err != nil {
		d.t.Fatalf("receipt does not verify: %v", err)
	}
	return res.Statement.Predicate
}

// A GitHub Actions OIDC token reaches a decision whose signed record names
// the workflow as the verified subject; the same token is accepted once.
func TestOIDCCallerDecision(t *testing.T) {
	d := startTLSDaemon(t, nil)
	c := d.client()
	tok := d.githubToken(nil)
	rec := d.decideOK(c, tok, `{"action":"pipeline.trigger","resource":{"system":"github","name":"deploy"},"context":{"unverified":{"commit_author":"mallory"}}}`)
	s := rec.Request.Subject
	if s.ID != "repo:acme/shop:environment:production" || !s.Verified || s.Issuer != d.iss.URL || s.AssertedBy != "" || s.Claims["actor"] != "alice" {
		t.Errorf("recorded subject = %+v", s)
	}
	if rec.Caller.Kind != "oidc" || rec.Caller.ID != "oidc:github:repo:acme/shop:environment:production" {
		t.Errorf("recorded caller = %+v", rec.Caller)
	}
	if r := rec.Request.Resource; r.Repository != "acme/shop" || r.Environment != "production" || r.Ref != "refs/heads/main" {
		t.Errorf("resource not bound to the token: %+v", r)
	}
	if rec.Request.Context.Unverified["commit_author"] != "mallory" {
		t.Errorf("payload claims should stay as unverified context: %+v", rec.Request.Context)
	}
	envelope, _ := json.Marshal(rec)
	if bytes.Contains(envelope, []byte(strings.Split(tok, ".")[2])) {
		t.Error("the token's signature reached the log")
	}
	r := d.do(c, http.MethodPost, "/v1/decide", tok, []byte(`{"action":"pipeline.trigger"}`))
	if r.code != 401 || !strings.Contains(r.message(t), "already used") {
		t.Errorf("replayed token: %d %s", r.code, r.body)
	}
	// A token from a repository's job cannot ask about another environment.
	r = d.do(c, http.MethodPost, "/v1/decide", d.githubToken(nil), []byte(`{"action":"deploy","resource":{"environment":"staging"}}`))
	if r.code != 403 || !strings.Contains(r.message(t), "resource.environment") {
		t.Errorf("contradicting resource: %d %s", r.code, r.body)
	}
}

// The Kubernetes API server's certificate may vouch: the record keeps both
// the subject it names and the certificate as asserted_by.
func TestMTLSCallerVouches(t *testing.T) {
	d := startTLSDaemon(t, nil)
	cert, err := d.clientCA.Issue("kube-apiserver", []string{"kube-apiserver.cluster.local"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	rec := d.decideOK(d.client(cert), "", allowedDeploy)
	if rec.Caller.ID != "mtls:kube-apiserver.cluster.local" || rec.Caller.Kind != "mtls" {
		t.Errorf("caller = %+v", rec.Caller)
	}
	if s := rec.Request.Subject; s.ID != "alice" || s.AssertedBy != "mtls:kube-apiserver.cluster.local" || !s.Verified {
		t.Errorf("subject = %+v", s)
	}
	// Without the body's subject the certificate itself is the subject.
	rec = d.decideOK(d.client(cert), "", `{"action":"pipeline.trigger"}`)
	if s := rec.Request.Subject; s.ID != "kube-apiserver.cluster.local" || s.Kind != "mtls" || s.Issuer != "CN=gatelog test client CA" {
		t.Errorf("subject = %+v", s)
	}
	// A verified certificate no rule maps has no permissions.
	other, _ := d.clientCA.Issue("build-bot", nil, nil, true)
	if r := d.do(d.client(other), http.MethodPost, "/v1/decide", "", []byte(`{"action":"pipeline.trigger"}`)); r.code != 403 {
		t.Errorf("unmapped certificate: %d %s", r.code, r.body)
	}
	// Public endpoints need no certificate.
	if r := d.do(d.client(), http.MethodGet, "/checkpoint", "", nil); r.code != 200 {
		t.Errorf("checkpoint over TLS: %d", r.code)
	}
}

// The issue's rejection table over HTTPS: each bad credential is refused
// with 401 and a reason, and nothing reaches the log.
func TestRejectedCredentialsAre401AndNotLogged(t *testing.T) {
	d := startTLSDaemon(t, nil)
	c := d.client()
	d.decideOK(c, d.key, `{"action":"pipeline.trigger"}`) // index 0
	now := time.Now()
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubPEM, _ := cryptoutils.MarshalPublicKeyToPEM(d.iss.Key.Public())
	claims := d.iss.GitHubActions(now, "gatelog", "fresh")
	b64 := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	sign := func(alg jose.SignatureAlgorithm, key any) string {
		tok, err := identitytest.Sign(alg, key, d.iss.KeyID, claims)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	used := d.githubToken(nil)
	d.decideOK(c, used, `{"action":"pipeline.trigger"}`) // index 1
	good := strings.Split(d.githubToken(nil), ".")
	rogueCA, _ := identitytest.NewCA("gatelog test client CA")
	rogueCert, _ := rogueCA.Issue("kube-apiserver", []string{"kube-apiserver.cluster.local"}, nil, true)

	cases := []struct {
		name, token string
		client      *http.Client
		reason      string
	}{
		{"forged signature", sign(jose.ES256, other), c, "does not verify"},
		{"expired", d.githubToken(func(m map[string]any) {
			m["iat"] = now.Add(-8 * time.Minute).Unix()
			m["exp"] = now.Add(-2 * time.Minute).Unix()
		}), c, "expired"},
		{"not yet valid", d.githubToken(func(m map[string]any) { m["nbf"] = now.Add(10 * time.Minute).Unix() }), c, "not valid before"},
		{"replayed jti", used, c, "already used"},
		{"wrong audience", d.githubToken(func(m map[string]any) { m["aud"] = "https://github.com/acme" }), c, "audience"},
		{"wrong issuer", d.githubToken(func(m map[string]any) { m["iss"] = "https://token.actions.githubusercontent.com" }), c, "not trusted"},
		{"alg none", b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64(claims) + ".", c, "algorithm"},
		{"unsigned", good[0] + "." + good[1] + ".", c, "does not verify"},
		{"HS256 with the public key", sign(jose.HS256, pubPEM), c, "algorithm"},
		{"revoked-looking API key", "glk_0011223344556677_deadbeef", c, "invalid API key"},
		{"no credentials", "", c, "missing credentials"},
		{"wrong-CA client certificate", "", d.client(rogueCert), "does not verify against the configured client CAs"},
		{"wrong-CA certificate with a valid key", d.key, d.client(rogueCert), "client CAs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := d.do(tc.client, http.MethodPost, "/v1/decide", tc.token, []byte(`{"action":"pipeline.trigger"}`))
			if r.code != http.StatusUnauthorized {
				t.Fatalf("got %d %s", r.code, r.body)
			}
			if msg := r.message(t); !strings.Contains(msg, tc.reason) {
				t.Errorf("message %q does not give the reason %q", msg, tc.reason)
			}
		})
	}
	// Nothing was appended: the next accepted decision is entry 3 (0 is
	// the start-up policy record, 1 and 2 the accepted calls above).
	r := d.do(c, http.MethodPost, "/v1/decide", d.key, []byte(`{"action":"pipeline.trigger"}`))
	var rc decision.Receipt
	_ = json.Unmarshal(r.body, &rc)
	if r.code != 200 || rc.LogIndex != 3 {
		t.Fatalf("after the rejections: %d, index %d (want 3): rejected calls were logged", r.code, rc.LogIndex)
	}
	counts := d.srv.AuthCounts()
	if counts["oidc/replayed"] != 1 || counts["mtls/bad_certificate"] != 2 || counts["oidc/ok"] != 1 || counts["api_key/ok"] < 2 {
		t.Errorf("auth counters = %v", counts)
	}
}

// API keys are administered through the daemon: created (shown once),
// two per name, revoked with immediate effect, each change a signed log entry.
func TestAPIKeyAdministration(t *testing.T) {
	d := startTLSDaemon(t, nil)
	c := d.client()
	create := func(name string) reply {
		return d.do(c, http.MethodPost, "/v1/apikeys", d.key, []byte(fmt.Sprintf(`{"name":%q,"permissions":["decide"],"expires_in":"90d"}`, name)))
	}
	var keys []api.CreateKeyResponse
	for range 2 {
		r := create("ci-jenkins")
		if r.code != http.StatusCreated {
			t.Fatalf("create: %d %s", r.code, r.body)
		}
		var k api.CreateKeyResponse
		_ = json.Unmarshal(r.body, &k)
		keys = append(keys, k)
		rec := d.verifyReceipt(mustJSON(t, k.Receipt))
		if rec.Request.Action != daemon.ActionKeyCreate || rec.Request.Subject.ID != "apikey:bootstrap" || rec.Request.Resource.Name != "ci-jenkins" {
			t.Errorf("creation record = %+v", rec.Request)
		}
		if strings.Contains(string(k.Receipt.Envelope), strings.Split(k.Key, "_")[2]) {
			t.Fatal("secret in the log")
		}
	}
	if r := create("ci-jenkins"); r.code != http.StatusConflict || !strings.Contains(r.message(t), "active keys") {
		t.Errorf("third key: %d %s", r.code, r.body)
	}
	// The new key decides, but may not administer.
	rec := d.decideOK(c, keys[0].Key, `{"action":"pipeline.trigger"}`)
	if rec.Request.Subject.ID != "apikey:ci-jenkins" || rec.Request.Subject.CredentialExpiresAt == "" {
		t.Errorf("subject = %+v", rec.Request.Subject)
	}
	if r := d.do(c, http.MethodGet, "/v1/apikeys", keys[0].Key, nil); r.code != 403 {
		t.Errorf("non-admin lists keys: %d", r.code)
	}
	r := d.do(c, http.MethodDelete, "/v1/apikeys/"+keys[0].Info.ID, d.key, nil)
	if r.code != 200 {
		t.Fatalf("revoke: %d %s", r.code, r.body)
	}
	var rv api.RevokeKeyResponse
	_ = json.Unmarshal(r.body, &rv)
	if rec := d.verifyReceipt(mustJSON(t, rv.Receipt)); rec.Request.Action != daemon.ActionKeyRevoke {
		t.Errorf("revocation record = %+v", rec.Request)
	}
	// Immediate: the very next request with it fails; the other key works.
	if r := d.do(c, http.MethodPost, "/v1/decide", keys[0].Key, []byte(`{"action":"pipeline.trigger"}`)); r.code != 401 || !strings.Contains(r.message(t), "revoked") {
		t.Errorf("revoked key: %d %s", r.code, r.body)
	}
	d.decideOK(c, keys[1].Key, `{"action":"pipeline.trigger"}`)
	r = d.do(c, http.MethodGet, "/v1/apikeys", d.key, nil)
	var list struct{ Keys []identity.Info }
	_ = json.Unmarshal(r.body, &list)
	if len(list.Keys) != 3 || bytes.Contains(r.body, []byte(`"hash"`)) {
		t.Errorf("list: %s", r.body)
	}
	if r := d.do(c, http.MethodDelete, "/v1/apikeys/nobody", d.key, nil); r.code != 404 {
		t.Errorf("revoke unknown: %d", r.code)
	}
}

func TestRateLimitPerCaller(t *testing.T) {
	now := time.Now()
	d := startTLSDaemon(t, func(c *daemon.Config) {
		c.RateLimit, c.RateBurst = 1, 2
		c.Now = func() time.Time { return now } // the bucket never refills
	})
	c := d.client()
	var codes []int
	for range 3 {
		codes = append(codes, d.do(c, http.MethodPost, "/v1/decide", d.key, []byte(`{"action":"pipeline.trigger"}`)).code)
	}
	if fmt.Sprint(codes) != "[200 200 429]" {
		t.Errorf("codes = %v", codes)
	}
	// Another caller has its own bucket.
	cert, _ := d.clientCA.Issue("kube-apiserver", []string{"kube-apiserver.cluster.local"}, nil, true)
	if r := d.do(d.client(cert), http.MethodPost, "/v1/decide", "", []byte(`{"action":"pipeline.trigger"}`)); r.code != 200 {
		t.Errorf("other caller: %d %s", r.code, r.body)
	}
}

func TestTLSKeyMustBeOwnerOnly(t *testing.T) {
	ca, _ := identitytest.NewCA("x")
	cert, _ := ca.Issue("gatelog", []string{"127.0.0.1"}, nil, false)
	certPEM, keyPEM, _ := identitytest.PEM(cert)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "c.pem"), certPEM, 0o644)
	os.WriteFile(filepath.Join(dir, "k.pem"), keyPEM, 0o644)
	_, err := daemon.Open(context.Background(), daemon.Config{
		DataDir: t.TempDir(), Policies: fstest.MapFS{"d.rego": {Data: []byte(testPolicy)}},
		TLSCertFile: filepath.Join(dir, "c.pem"), TLSKeyFile: filepath.Join(dir, "k.pem"),
	})
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable TLS key accepted: %v", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
