package main_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/translog/verify"
)

// TestKeyRotationNeverAlarmsAndARetiredKeyAlwaysDoes is the auditor's
// contract across a rotation: `gatelog keys rotate-signer`, a restart,
// more decisions; then monitor, log, verify, audit --verify and policy
// replay with the key set the daemon publishes pass on every entry, old
// key and new. A key set in which the old key was retired before it signed
// its entries makes each of them fail with exit 3.
func TestKeyRotationNeverAlarmsAndARetiredKeyAlwaysDoes(t *testing.T) {
	f := newLogFixture(t, 2)
	admin := []string{"GATELOG_API_KEY=" + f.bootstrapKey(t)}
	// An auditor without keys pins them on first use, before the rotation.
	pins := filepath.Join(t.TempDir(), "known_servers")
	code, out := run(t, f.bin, []string{"GATELOG_PIN_FILE=" + pins}, "log", "info", "--server", f.server, "--state-dir", t.TempDir())
	if code != 0 || !strings.Contains(out, "pinning the keys of "+f.server) {
		t.Fatalf("log info, keys pinned on first use: exit %d\n%s", code, out)
	}
	code, out = run(t, f.bin, admin, "keys", "rotate-signer", "--server", f.server)
	if code != 0 || !strings.Contains(out, "new decision-signing key") {
		t.Fatalf("keys rotate-signer: exit %d\n%s", code, out)
	}
	f.d.Stop(t)
	f.d = startServe(t, f.bin, f.data)
	// The daemon restarts on another port: carry its pins over.
	moved := strings.ReplaceAll(string(mustRead(t, pins)), f.server, "http://"+f.d.Addr)
	if err := os.WriteFile(pins, []byte(moved), 0o600); err != nil {
		t.Fatal(err)
	}
	f.server = "http://" + f.d.Addr
	f.decide(t)
	f.decide(t)
	published := filepath.Join(t.TempDir(), "signers.json")
	if code, out := run(t, f.bin, nil, "keys", "signers", "--server", f.server, "--out", published); code != 0 || !strings.Contains(out, "KEY ID") {
		t.Fatalf("keys signers: exit %d\n%s", code, out)
	}
	ks, err := verify.ParseSigningKeys(mustRead(t, published))
	if err != nil || len(ks.Keys) != 2 || ks.Keys[0].ValidUntil.IsZero() || !ks.Keys[1].ValidUntil.IsZero() {
		t.Fatalf("published key set after one rotation: %+v %v", ks, err)
	}
	// Entries: 0 (the start-up policy record), 1, 2 by the first key; 3
	// (the rotation, logged by the first key); 4, 5 by the new key.
	reader := []string{"GATELOG_API_KEY=" + f.bootstrapKey(t)}
	keyed := func(set string, args ...string) (int, string) {
		t.Helper()
		args = append(args, "--server", f.server, "--log-key", f.logPub(), "--signer-keys", set)
		if args[0] == "log" || args[0] == "monitor" {
			args = append(args, "--state-dir", t.TempDir())
		}
		return run(t, f.bin, reader, args...)
	}
	for _, args := range [][]string{
		{"monitor", "--once"},
		{"log", "info"},
		{"log", "get", "--index", "0"},
		{"log", "get", "--index", "5"},
		{"audit", "search", "--verify", "--all"},
		{"policy", "replay"},
	} {
		code, out := keyed(published, args...)
		if code != 0 || strings.Contains(out, "ALARM") || strings.Contains(out, "NOT VERIFIED") {
			t.Errorf("%v with the published key set: exit %d\n%s", args, code, out)
		}
	}
	code, out = run(t, f.bin, nil, append([]string{"verify", "--log-key", f.logPub(), "--signer-keys", published}, f.receiptFiles...)...)
	if code != 0 || !strings.Contains(out, "4 of 4 receipts verified") {
		t.Errorf("verify of receipts of both keys: exit %d\n%s", code, out)
	}
	// The keys pinned before the rotation: the grown key set is pinned
	// (it keeps the pinned key), and every entry verifies.
	code, out = run(t, f.bin, append(reader, "GATELOG_PIN_FILE="+pins), "monitor", "--once", "--server", f.server, "--state-dir", t.TempDir())
	if code != 0 || !strings.Contains(out, "pinning new signing keys") || !strings.Contains(out, "6 envelope signatures OK") {
		t.Errorf("monitor with the keys pinned before the rotation: exit %d\n%s", code, out)
	}
	// A pin file whose log key is not the log's: refused.
	var known struct {
		Servers map[string]map[string]any `json:"servers"`
	}
	if err := json.Unmarshal(mustRead(t, pins), &known); err != nil || known.Servers[f.server] == nil {
		t.Fatalf("pin file: %v\n%s", err, mustRead(t, pins))
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherDER, _ := x509.MarshalPKIXPublicKey(other.Public())
	known.Servers[f.server]["log_key"] = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: otherDER}))
	raw, _ := json.Marshal(known)
	if err := os.WriteFile(pins, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = run(t, f.bin, append(reader, "GATELOG_PIN_FILE="+pins), "log", "get", "--index", "0", "--server", f.server, "--state-dir", t.TempDir())
	if code != 3 || !strings.Contains(out, "changed since they were pinned") {
		t.Errorf("log get with a pinned log key that is not the log's: exit %d, want 3\n%s", code, out)
	}

	// With the first key alone, the new key's entries are not its.
	if code, out := run(t, f.bin, reader, "monitor", "--once", "--server", f.server, "--log-key", f.logPub(), "--signer-key", f.signerPub(), "--state-dir", t.TempDir()); code != 3 || !strings.Contains(out, "ALARM") {
		t.Errorf("monitor with the first key alone: exit %d, want 3\n%s", code, out)
	}

	// The first key retired an hour before its first entry was logged:
	// everything it signed is now outside its window.
	first := time.Unix(f.receipts[0].IntegratedTime, 0)
	ks.Keys[0].ValidFrom = first.Add(-48 * time.Hour)
	ks.Keys[0].ValidUntil = first.Add(-time.Hour)
	raw, _ = json.Marshal(ks)
	retired := filepath.Join(t.TempDir(), "retired.json")
	if err := os.WriteFile(retired, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"monitor", "--once"},
		{"log", "get", "--index", "0"},
		{"log", "info"}, // the last entry bundle holds every entry
		{"audit", "search", "--verify", "--all"},
		{"policy", "replay"},
	} {
		code, out := keyed(retired, args...)
		if code != 3 || !strings.Contains(out, "retired") {
			t.Errorf("%v, a key retired before it signed: exit %d, want 3 naming the retirement\n%s", args, code, out)
		}
	}
	code, out = run(t, f.bin, nil, "verify", "--log-key", f.logPub(), "--signer-keys", retired, "--receipt", f.receiptFiles[0])
	if code != 3 || !strings.Contains(out, "NOT VERIFIED") || !strings.Contains(out, "retired") {
		t.Errorf("verify of a receipt signed after its key's retirement: exit %d, want 3\n%s", code, out)
	}
	// The new key's receipts still verify with that set.
	if code, out := run(t, f.bin, nil, "verify", "--log-key", f.logPub(), "--signer-keys", retired, "--receipt", f.receiptFiles[3]); code != 0 {
		t.Errorf("verify of the new key's receipt: exit %d\n%s", code, out)
	}
}

// testCA is a private CA and a server certificate for 127.0.0.1 it signed,
// written as PEM files.
type testCA struct {
	caFile, certFile, keyFile string
	clientCert, clientKey     string
	pool                      *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gatelog test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	ca := &testCA{caFile: filepath.Join(dir, "ca.pem"), pool: x509.NewCertPool()}
	ca.pool.AddCert(caCert)
	writePEM(t, ca.caFile, "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		writePEM(t, certFile, "CERTIFICATE", der)
		kder, _ := x509.MarshalECPrivateKey(key)
		writePEM(t, keyFile, "EC PRIVATE KEY", kder)
		return certFile, keyFile
	}
	ca.certFile, ca.keyFile = issue("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	ca.clientCert, ca.clientKey = issue("ci-runner", 3, x509.ExtKeyUsageClientAuth, nil)
	return ca
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startTLS runs `gatelog serve` over HTTPS with the CA's server
// certificate and waits until /readyz answers through the CA.
func startTLS(t *testing.T, bin, data string, ca *testCA, extra ...string) string {
	t.Helper()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	d := e2e.StartWith(t, bin, e2e.Options{Data: data, Client: hc,
		Args: append([]string{"--checkpoint-interval", "200ms", "--tls-cert", ca.certFile, "--tls-key", ca.keyFile}, extra...)})
	return d.URL
}

// TestEveryClientCommandOverTLS: each command that talks to a daemon
// reaches one served over HTTPS by a private CA with --cacert (or
// GATELOG_CACERT), the same flags and variables everywhere; without the CA
// each fails with exit 1 naming the certificate.
func TestEveryClientCommandOverTLS(t *testing.T) {
	bin := buildGatelog(t)
	ca := newTestCA(t)
	data := filepath.Join(t.TempDir(), "data")
	dir := t.TempDir()
	// The bundled data with working hours around the clock: the alerts
	// below are the same whatever the time the test runs (no off_hours).
	allDay := filepath.Join(dir, "data.yaml")
	bundled := string(mustRead(t, filepath.Join("..", "..", "policies", "data.yaml")))
	hours := strings.NewReplacer(`days: [Monday, Tuesday, Wednesday, Thursday, Friday]`, `days: [Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday]`,
		`start: "07:00"`, `start: "00:00"`, `end: "19:00"`, `end: "24:00"`).Replace(bundled)
	if hours == bundled || os.WriteFile(allDay, []byte(hours), 0o644) != nil {
		t.Fatal("policies/data.yaml: working_hours not found as expected, or not written")
	}
	server := startTLS(t, bin, data, ca, "--client-ca", ca.caFile, "--policy-data", allDay)
	key := strings.TrimSpace(string(mustRead(t, filepath.Join(data, "bootstrap-api-key"))))
	grant := filepath.Join(dir, "grant.json")
	if err := os.WriteFile(grant, []byte(`{"subject":{"id":"mallory"},"action":"role.grant","resource":{"name":"mallory"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	logKey, signerKey := filepath.Join(data, "keys/log.pub"), filepath.Join(data, "keys/decision.pub")
	env := []string{"GATELOG_SERVER=" + server, "GATELOG_API_KEY=" + key, "GATELOG_CACERT=" + ca.caFile,
		"GATELOG_PIN_FILE=" + filepath.Join(dir, "known_servers")}
	receipt := filepath.Join(dir, "receipt.json")

	// decide pins the keys on first use over TLS, then with pinned keys.
	code, out := run(t, bin, env, "decide", "--input", filepath.Join("..", "..", "examples", "requests", "deploy-prod.json"), "--out", receipt)
	if code != 0 || !strings.Contains(out, "pinning the keys of "+server) || !strings.Contains(out, "ALLOWED") {
		t.Fatalf("decide over TLS: exit %d\n%s", code, out)
	}
	code, out = run(t, bin, env, "decide", "--input", grant, "--log-key", logKey, "--signer-key", signerKey)
	if code != 2 || !strings.Contains(out, "DENIED") {
		t.Fatalf("decide over TLS with pinned keys: exit %d, want 2\n%s", code, out)
	}
	signers := filepath.Join(dir, "signers.json")
	commands := []struct {
		args []string
		want string
	}{
		{[]string{"keys", "list"}, "bootstrap"},
		{[]string{"keys", "signers", "--out", signers}, "in use"},
		{[]string{"audit", "search", "--verify", "--log-key", logKey, "--signer-keys", signers}, "verified"},
		{[]string{"audit", "counts", "--by", "subject"}, "mallory"},
		{[]string{"alerts", "tail", "--recent", "10", "--count", "1"}, "self_grant"},
		{[]string{"log", "info", "--log-key", logKey, "--signer-keys", signers, "--state-dir", t.TempDir()}, "VERIFIED  log"},
		{[]string{"log", "get", "--index", "0", "--log-key", logKey, "--signer-keys", signers, "--state-dir", t.TempDir()}, "envelope signature OK"},
		{[]string{"log", "bundle", "--index", "0", "--out", filepath.Join(dir, "bundle.json")}, ""},
		{[]string{"monitor", "--once", "--log-key", logKey, "--signer-keys", signers, "--state-dir", t.TempDir()}, "envelope signatures OK"},
		{[]string{"policy", "replay", "--log-key", logKey, "--signer-keys", signers}, "replayed"},
		{[]string{"index", "rebuild"}, "rebuilt the audit index"},
	}
	for _, tc := range commands {
		code, out := run(t, bin, env, tc.args...)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%v over TLS: exit %d, want 0 and %q\n%s", tc.args, code, tc.want, out)
		}
		// Without the private CA the certificate is not trusted: exit 1.
		code, out = run(t, bin, append(env, "GATELOG_CACERT="), tc.args...)
		if code != 1 || !strings.Contains(out, "certificate") {
			t.Errorf("%v over TLS without --cacert: exit %d, want 1 naming the certificate\n%s", tc.args, code, out)
		}
	}
	// The flags name the same things as the variables.
	code, out = run(t, bin, []string{"GATELOG_SERVER=", "GATELOG_API_KEY=", "GATELOG_CACERT="},
		"keys", "list", "--server", server, "--api-key", key, "--cacert", ca.caFile, "--timeout", "10s")
	if code != 0 || !strings.Contains(out, "bootstrap") {
		t.Errorf("keys list with flags: exit %d\n%s", code, out)
	}
	// A client certificate from the CA is presented when asked for.
	code, out = run(t, bin, env, "keys", "list", "--client-cert", ca.clientCert, "--client-key", ca.clientKey)
	if code != 0 || !strings.Contains(out, "bootstrap") {
		t.Errorf("keys list with a client certificate: exit %d\n%s", code, out)
	}
	if code, out := run(t, bin, env, "keys", "list", "--client-cert", ca.clientCert); code != 1 || !strings.Contains(out, "--client-key") {
		t.Errorf("--client-cert without --client-key: exit %d\n%s", code, out)
	}
	if code, out := run(t, bin, env, "keys", "list", "--server", strings.Replace(server, "https://", "http://", 1)); code != 1 || !strings.Contains(out, "need https://") {
		t.Errorf("--cacert with an http:// server: exit %d\n%s", code, out)
	}
	if code, out := run(t, bin, nil, "verify", "--log-key", logKey, "--signer-key", signerKey, "--receipt", receipt); code != 0 {
		t.Errorf("verify of the receipt decided over TLS: exit %d\n%s", code, out)
	}
}

// TestExitCodeTable: one table for the whole CLI, printed in the root
// --help and kept by every command: 0 ok/allowed, 1 error, 2 no (denied,
// or a check asked for did not pass), 3 not verified.
func TestExitCodeTable(t *testing.T) {
	f := newLogFixture(t, 3) // allow, deny, allow
	dir := t.TempDir()
	code, out := run(t, f.bin, nil, "--help")
	if code != 0 || !strings.Contains(out, "EXIT CODES") || !strings.Contains(out, "3  verification failed") || !strings.Contains(out, "GATELOG_CACERT") {
		t.Errorf("root --help: exit %d\n%s", code, out)
	}
	admin := []string{"GATELOG_API_KEY=" + f.bootstrapKey(t), "GATELOG_SERVER=" + f.server, "GATELOG_PIN_FILE=" + filepath.Join(dir, "pins")}
	examples := filepath.Join("..", "..", "examples", "requests")
	tampered := filepath.Join(dir, "tampered.json")
	raw := mustRead(t, f.receiptFiles[0])
	if err := os.WriteFile(tampered, bytes.Replace(raw, []byte(`"allow": true`), []byte(`"allow": false`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	failing := filepath.Join(dir, "failing")
	if err := os.MkdirAll(failing, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(failing, "p.rego"), []byte("package gatelog\n\ndecision := {\"allow\": false, \"reasons\": [\"no\"]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(failing, "p_test.rego"), []byte("package gatelog\n\ntest_allows if decision.allow\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	otherKey := filepath.Join(dir, "other.pub")
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(k.Public())
	writePEM(t, otherKey, "PUBLIC KEY", der)
	verifyKeys := []string{"--log-key", f.logPub(), "--signer-key", f.signerPub()}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in the output, when given
	}{
		{"decide allowed", []string{"decide", "--input", filepath.Join(examples, "deploy-prod.json")}, 0, "ALLOWED"},
		{"decide denied", []string{"decide", "--input", filepath.Join(examples, "deploy-prod-denied.json")}, 2, "DENIED"},
		{"decide, receipt not verified (another signer key pinned)", []string{"decide", "--input", filepath.Join(examples, "deploy-prod.json"), "--log-key", f.logPub(), "--signer-key", otherKey}, 3, "NOT VERIFIED"},
		{"decide, daemon unreachable", []string{"decide", "--input", filepath.Join(examples, "deploy-prod.json"), "--server", "http://" + e2e.FreeAddr(t)}, 1, ""},
		{"decide, no input", []string{"decide", "--input", filepath.Join(dir, "missing.json")}, 1, ""},
		{"verify ok", append([]string{"verify", "--receipt", f.receiptFiles[0]}, verifyKeys...), 0, "VERIFIED"},
		{"verify tampered", append([]string{"verify", "--receipt", tampered}, verifyKeys...), 3, "NOT VERIFIED: verification failed: allow"},
		{"verify, no such file", append([]string{"verify", "--receipt", filepath.Join(dir, "missing.json")}, verifyKeys...), 1, ""},
		{"policy eval allowed", []string{"policy", "eval", "--input", filepath.Join(examples, "deploy-prod.json")}, 0, ""},
		{"policy eval denied", []string{"policy", "eval", "--input", filepath.Join(examples, "deploy-prod-denied.json")}, 2, ""},
		{"policy test failed", []string{"policy", "test", failing}, 2, "FAIL"},
		{"policy replay would change", []string{"policy", "replay", "--policies", failing, "--log-key", f.logPub(), "--signer-key", f.signerPub(), "--fail-on-change"}, 2, "allow -> deny"},
		{"log get ok", []string{"log", "get", "--index", "0", "--log-key", f.logPub(), "--state-dir", dir}, 0, ""},
		{"log get, another log's key", []string{"log", "get", "--index", "0", "--log-key", otherKey, "--state-dir", dir}, 3, ""},
		{"log get, no such entry", []string{"log", "get", "--index", "99", "--log-key", f.logPub(), "--state-dir", dir}, 1, ""},
		{"monitor, another log's key", []string{"monitor", "--once", "--log-key", otherKey, "--state-dir", t.TempDir()}, 3, "ALARM"},
		{"monitor, another signer key", []string{"monitor", "--once", "--log-key", f.logPub(), "--signer-key", otherKey, "--state-dir", t.TempDir()}, 3, "not in the signing key set"},
		{"audit search --verify ok", append([]string{"audit", "search", "--verify"}, verifyKeys...), 0, ""},
		{"audit search --verify, another signer key", []string{"audit", "search", "--verify", "--log-key", f.logPub(), "--signer-key", otherKey}, 3, "did NOT verify"},
		{"audit search, refused key", []string{"audit", "search", "--api-key", "glk_not-a-key"}, 1, ""},
		{"keys list, refused key", []string{"keys", "list", "--api-key", "glk_not-a-key"}, 1, ""},
		{"alerts tail, refused key", []string{"alerts", "tail", "--api-key", "glk_not-a-key"}, 1, ""},
		{"unknown flag", []string{"verify", "--no-such-flag"}, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := run(t, f.bin, admin, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want %d and %q\n%s", code, tc.code, tc.want, out)
			}
		})
	}
}
