package main_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatelog/gatelog/engine/identity/identitytest"
	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/record/decision"
)

// TestIdentityWalkthrough does what docs/identity.md shows,
// with the real binary: an HTTPS daemon trusting an OIDC issuer and a
// client CA; an API key created, used, listed and revoked with gatelog
// keys; a GitHub Actions token and a client certificate each reaching a
// decision whose signed record names the verified subject.
func TestIdentityWalkthrough(t *testing.T) {
	bin := buildGatelog(t)
	dir := t.TempDir()
	iss, err := identitytest.NewIssuer()
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	serverCA, _ := identitytest.NewCA("walkthrough server CA")
	clientCA, _ := identitytest.NewCA("walkthrough client CA")
	srvCert, _ := serverCA.Issue("gatelog", []string{"127.0.0.1"}, nil, false)
	certPEM, keyPEM, _ := identitytest.PEM(srvCert)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("tls.crt", certPEM)
	write("tls.key", keyPEM)
	write("server-ca.pem", serverCA.PEM)
	write("clients-ca.pem", clientCA.PEM)
	write("identity.json", []byte(fmt.Sprintf(`{
  "oidc": [{"name": "github", "kind": "github", "issuer": %q, "audience": "gatelog"}],
  "mtls": {"clients": [{"dns": "kube-apiserver.*", "permissions": ["decide", "vouch"]}]}
}`, iss.URL)))
	data := filepath.Join(dir, "gatelog-data")
	addr := e2e.FreeAddr(t)
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}
	serve := e2e.Options{Data: data, Addr: addr, Client: client(), Args: []string{
		"--tls-cert", filepath.Join(dir, "tls.crt"), "--tls-key", filepath.Join(dir, "tls.key"),
		"--client-ca", filepath.Join(dir, "clients-ca.pem"), "--identity-config", filepath.Join(dir, "identity.json"),
		"--checkpoint-interval", "200ms",
	}}
	cmd := e2e.StartWith(t, bin, serve)
	server := "https://" + addr
	admin, _ := os.ReadFile(filepath.Join(data, "bootstrap-api-key"))
	env := []string{"GATELOG_API_KEY=" + strings.TrimSpace(string(admin)), "GATELOG_SERVER=" + server, "GATELOG_CACERT=" + filepath.Join(dir, "server-ca.pem")}

	var lastReceipt string
	decide := func(c *http.Client, token, body string) (int, decision.Record) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, server+"/v1/decide?wait=checkpoint", strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return resp.StatusCode, decision.Record{}
		}
		out := filepath.Join(t.TempDir(), "receipt.json")
		lastReceipt = out
		if err := os.WriteFile(out, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		code, text := run(t, bin, nil, "verify", "--receipt", out, "--log-key", filepath.Join(data, "keys/log.pub"), "--signer-key", filepath.Join(data, "keys/decision.pub"))
		if code != 0 {
			t.Fatalf("verify: %s", text)
		}
		var rc decision.Receipt
		_ = json.Unmarshal(raw, &rc)
		var env struct{ Payload []byte }
		_ = json.Unmarshal(rc.Envelope, &env)
		var st struct{ Predicate decision.Record }
		_ = json.Unmarshal(env.Payload, &st)
		return 200, st.Predicate
	}

	// API key: created once, used, listed, revoked.
	code, out := run(t, bin, env, "keys", "create", "--name", "ci-jenkins", "--perm", "decide", "--expires", "90d")
	if code != 0 {
		t.Fatalf("keys create: %s", out)
	}
	key := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	if !strings.HasPrefix(key, "glk_") || !strings.Contains(out, "logged at index 1") {
		t.Fatalf("keys create printed: %s", out)
	}
	if code, rec := decide(client(), key, `{"action":"pipeline.trigger"}`); code != 200 || rec.Request.Subject.ID != "apikey:ci-jenkins" || !rec.Request.Subject.Verified {
		t.Fatalf("API key decision: %d %+v", code, rec.Request.Subject)
	}
	code, out = run(t, bin, env, "keys", "list")
	if code != 0 || !strings.Contains(out, "ci-jenkins") || !strings.Contains(out, "LAST USED") || !strings.Contains(out, "in 89d") {
		t.Fatalf("keys list: %s", out)
	}
	run(t, bin, env, "keys", "create", "--name", "ci-jenkins", "--perm", "decide")
	if code, out = run(t, bin, env, "keys", "create", "--name", "ci-jenkins", "--perm", "decide"); code != 1 || !strings.Contains(out, "active keys") {
		t.Fatalf("third key: %d %s", code, out)
	}
	if code, out = run(t, bin, env, "keys", "revoke", "ci-jenkins"); code != 0 || strings.Count(out, "revoked") != 2 {
		t.Fatalf("keys revoke: %s", out)
	}
	if code, _ := decide(client(), key, `{"action":"pipeline.trigger"}`); code != 401 {
		t.Fatalf("revoked key still decides: %d", code)
	}

	// GitHub Actions OIDC token.
	tok, _ := iss.Token(iss.GitHubActions(time.Now(), "gatelog", "walkthrough-1"))
	code, rec := decide(client(), tok, `{"action":"pipeline.trigger","resource":{"system":"github"}}`)
	if code != 200 || rec.Request.Subject.ID != "repo:acme/shop:environment:production" || rec.Request.Subject.Issuer != iss.URL || rec.Caller.Kind != "oidc" {
		t.Fatalf("OIDC decision: %d %+v", code, rec)
	}
	if code, _ := decide(client(), tok, `{"action":"pipeline.trigger"}`); code != 401 {
		t.Fatalf("replayed token: %d", code)
	}

	// mTLS: the API server's certificate vouches for a user.
	cert, _ := clientCA.Issue("kube-apiserver", []string{"kube-apiserver.cluster.local"}, nil, true)
	code, rec = decide(client(cert), "", `{"action":"deploy","subject":{"id":"alice","groups":["release-managers"],"mfa":true},"resource":{"environment":"production"}}`)
	if code != 200 || rec.Request.Subject.AssertedBy != "mtls:kube-apiserver.cluster.local" || rec.Caller.Kind != "mtls" {
		t.Fatalf("mTLS decision: %d %+v", code, rec)
	}
	oldReceipt := lastReceipt

	// Signing-key rotation: logged now, in use from the next start; the
	// published key set verifies receipts of both keys.
	if code, out = run(t, bin, env, "keys", "rotate-signer"); code != 0 || !strings.Contains(out, "restart the daemon") {
		t.Fatalf("rotate-signer: %d %s", code, out)
	}
	cmd.Stop(t)
	cmd = e2e.StartWith(t, bin, serve)
	keySet := filepath.Join(dir, "signing-keys.json")
	if code, out = run(t, bin, env, "keys", "signers", "--out", keySet); code != 0 || strings.Count(out, "\n") != 3 {
		t.Fatalf("keys signers: %d %s", code, out)
	}
	tok, _ = iss.Token(iss.GitHubActions(time.Now(), "gatelog", "walkthrough-2"))
	req, _ := http.NewRequest(http.MethodPost, server+"/v1/decide?wait=checkpoint", strings.NewReader(`{"action":"pipeline.trigger"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	newReceipt := filepath.Join(dir, "new-receipt.json")
	os.WriteFile(newReceipt, raw, 0o644)
	for _, r := range []string{oldReceipt, newReceipt} {
		code, out := run(t, bin, nil, "verify", "--receipt", r, "--log-key", filepath.Join(data, "keys/log.pub"), "--signer-keys", keySet)
		if code != 0 || !strings.Contains(out, "VERIFIED") {
			t.Fatalf("verify %s with the key set: %d %s", filepath.Base(r), code, out)
		}
	}
	if code, out := run(t, bin, nil, "verify", "--receipt", newReceipt, "--log-key", filepath.Join(data, "keys/log.pub"), "--signer-key", filepath.Join(data, "keys/decision.pub")); code != 3 || !strings.Contains(out, "NOT VERIFIED") {
		t.Fatalf("new receipt verified with the retired key: exit %d (want 3) %s", code, out)
	}
	cmd.Stop(t)
}
