package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeKeyPair writes an ES256 key pair as dir/name.pem (private) and
// dir/name.pub, as `openssl ecparam -genkey -name prime256v1` would.
func writeKeyPair(t *testing.T, dir, name string) (priv, pub string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(k)
	pubDER, _ := x509.MarshalPKIXPublicKey(k.Public())
	priv, pub = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// copyPolicies copies the bundled library into a new directory an author
// can edit.
func copyPolicies(t *testing.T, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../../policies/*")
	for _, f := range files {
		if !strings.HasSuffix(f, ".rego") && !strings.HasSuffix(f, ".yaml") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func expectExit(t *testing.T, code int, out string, want int, contains ...string) {
	t.Helper()
	if code != want {
		t.Errorf("exit %d, want %d; output:\n%s", code, want, out)
	}
	for _, c := range contains {
		if !strings.Contains(out, c) {
			t.Errorf("output lacks %q:\n%s", c, out)
		}
	}
}

// TestPolicyTestEvalBuild runs the authoring commands as the README's "For
// policy authors" section does.
func TestPolicyTestEvalBuild(t *testing.T) {
	bin := buildGatelog(t)
	dir := t.TempDir()
	ex := "../../examples/policies"

	code, out := run(t, bin, nil, "policy", "test")
	expectExit(t, code, out, 0, "PASS: 98/98", ": PASS (", "Coverage: 100.0% of policy lines (embedded library)")

	code, out = run(t, bin, nil, "policy", "test", "--coverage", "--coverage-threshold", "90", "../../policies")
	expectExit(t, code, out, 0, "PASS: 98/98", "coverage decision.rego")

	code, out = run(t, bin, nil, "policy", "test", "../../policies", "--coverage")
	expectExit(t, code, out, 1, "put flags before DIR")

	// An author breaks a rule: the failing tests are named and the exit is 2.
	mine := filepath.Join(dir, "mine")
	copyPolicies(t, mine)
	sod, _ := os.ReadFile(filepath.Join(mine, "sod.rego"))
	broken := strings.Replace(string(sod), "input.subject.id == change.author", "input.subject.id == \"nobody\"", 1)
	if broken == string(sod) {
		t.Fatal("sod.rego no longer has the author check this test edits")
	}
	if err := os.WriteFile(filepath.Join(mine, "sod.rego"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = run(t, bin, nil, "policy", "test", mine)
	expectExit(t, code, out, 2, ": FAIL (", "FAIL: ")
	code, out = run(t, bin, nil, "policy", "test", "--coverage-threshold", "100", mine)
	expectExit(t, code, out, 2)

	// eval: each example request with Acme's configuration gives the
	// expected decision and exit code.
	var expected map[string]struct {
		Allow  bool   `json:"allow"`
		Reason string `json:"reason"`
	}
	raw, err := os.ReadFile(filepath.Join(ex, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatal(err)
	}
	for name, want := range expected {
		code, out := run(t, bin, nil, "policy", "eval", "--policy-data", filepath.Join(ex, "acme.yaml"), "--input", filepath.Join(ex, "requests", name))
		wantCode, verdict := 2, "DENIED"
		if want.Allow {
			wantCode, verdict = 0, "ALLOWED"
		}
		expectExit(t, code, out, wantCode, verdict, want.Reason)
	}
	code, out = run(t, bin, nil, "policy", "eval", "--explain", "--policy-data", filepath.Join(ex, "acme.yaml"), "-i", filepath.Join(ex, "requests", "rm-deploy-own-change.json"))
	expectExit(t, code, out, 2, "rules that fired:", "sod.rego:", "data.gatelog.decision")
	code, out = run(t, bin, nil, "policy", "eval", "--trace", "-i", "../../examples/requests/deploy-prod.json")
	expectExit(t, code, out, 0, "Enter data.gatelog.decision")
	code, out = run(t, bin, nil, "policy", "eval", "-i", filepath.Join(dir, "missing.json"))
	expectExit(t, code, out, 1, "--input")

	// build: a signed bundle of the author's policies; eval and test read it
	// with the public key and refuse it without, or with another key.
	priv, pub := writeKeyPair(t, dir, "bundle-signing")
	_, otherPub := writeKeyPair(t, dir, "other")
	fixed := filepath.Join(dir, "fixed")
	copyPolicies(t, fixed)
	bundle := filepath.Join(dir, "bundle.tar.gz")
	code, out = run(t, bin, nil, "policy", "build", "--signing-key", priv, "--revision", "2026-04-01.1", "--out", bundle, fixed)
	expectExit(t, code, out, 0, "revision 2026-04-01.1, signed (ES256")
	code, out = run(t, bin, nil, "policy", "eval", "--bundle", bundle, "--bundle-verification-key", pub, "-i", "../../examples/requests/deploy-prod.json")
	expectExit(t, code, out, 0, "ALLOWED", "revision 2026-04-01.1, sha256 ")
	code, out = run(t, bin, nil, "policy", "test", "--bundle-verification-key", pub, bundle)
	expectExit(t, code, out, 0, "PASS: 98/98")
	code, out = run(t, bin, nil, "policy", "eval", "--bundle", bundle, "-i", "../../examples/requests/deploy-prod.json")
	expectExit(t, code, out, 1, "give the key to verify it with")
	code, out = run(t, bin, nil, "policy", "eval", "--bundle", bundle, "--bundle-verification-key", otherPub, "-i", "../../examples/requests/deploy-prod.json")
	expectExit(t, code, out, 1, "failed to verify")
	code, out = run(t, bin, nil, "policy", "build", "--out", filepath.Join(dir, "b.tar.gz"), filepath.Join(dir, "nowhere"))
	expectExit(t, code, out, 1, "nowhere")
}
