package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/gatelog/gatelog/internal/poll"
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

// bundledTestsPass is what `policy test` prints when every test of the
// bundled library passes: "PASS: N/N", N its test rules.
func bundledTestsPass(t *testing.T) string {
	t.Helper()
	files, err := filepath.Glob("../../policies/*_test.rego")
	if err != nil || len(files) == 0 {
		t.Fatalf("the bundled library's tests: %v %v", files, err)
	}
	n := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += len(regexp.MustCompile(`(?m)^test_\w+`).FindAll(raw, -1))
	}
	return fmt.Sprintf("PASS: %d/%d", n, n)
}

// TestPolicyTestEvalBuild runs the authoring commands as docs/policy.md
// does.
func TestPolicyTestEvalBuild(t *testing.T) {
	bin := buildGatelog(t)
	dir := t.TempDir()
	ex := "../../examples/policies"

	pass := bundledTestsPass(t)
	code, out := run(t, bin, nil, "policy", "test")
	expectExit(t, code, out, 0, pass, ": PASS (", "Coverage: 100.0% of policy lines (embedded library)")

	code, out = run(t, bin, nil, "policy", "test", "--coverage", "--coverage-threshold", "90", "../../policies")
	expectExit(t, code, out, 0, pass, "coverage decision.rego")

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
	expectExit(t, code, out, 0, pass)
	code, out = run(t, bin, nil, "policy", "eval", "--bundle", bundle, "-i", "../../examples/requests/deploy-prod.json")
	expectExit(t, code, out, 1, "give the key to verify it with")
	code, out = run(t, bin, nil, "policy", "eval", "--bundle", bundle, "--bundle-verification-key", otherPub, "-i", "../../examples/requests/deploy-prod.json")
	expectExit(t, code, out, 1, "failed to verify")
	code, out = run(t, bin, nil, "policy", "build", "--out", filepath.Join(dir, "b.tar.gz"), filepath.Join(dir, "nowhere"))
	expectExit(t, code, out, 1, "nowhere")
}

// The daemon reloads --policies on SIGHUP and on file changes; a policy
// whose tests fail is refused and decisions go on under the old one.
func TestServeReloadsPolicies(t *testing.T) {
	bin := buildGatelog(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policies")
	copyPolicies(t, pol)
	data := filepath.Join(dir, "data")
	d := startServe(t, bin, data, "--policies", pol)
	server, logs := d.URL, d.Log
	key, err := os.ReadFile(filepath.Join(data, "bootstrap-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"GATELOG_API_KEY=" + strings.TrimSpace(string(key))}
	decide := func() (int, string) {
		return run(t, bin, env, "decide", "--server", server, "--input", "../../examples/requests/pipeline-trigger.json")
	}
	code, out := decide()
	expectExit(t, code, out, 0, "ALLOWED")

	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the SIGHUP reload", func() bool { return strings.Contains(logs(), "policy unchanged") }, logs)

	// Break a rule: its tests fail, so the edit is refused.
	rbac := filepath.Join(pol, "data.yaml")
	orig, err := os.ReadFile(rbac)
	if err != nil {
		t.Fatal(err)
	}
	sod, err := os.ReadFile(filepath.Join(pol, "sod.rego"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(sod), "input.subject.id == change.author", "input.subject.id == \"nobody\"", 1)
	if err := os.WriteFile(filepath.Join(pol, "sod.rego"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the refusal", func() bool { return strings.Contains(logs(), "Rego tests fail") }, logs)
	code, out = run(t, bin, env, "decide", "--server", server, "--input", "../../examples/requests/deploy-prod-denied.json")
	expectExit(t, code, out, 2, "DENIED")

	// Restore the library and change its configuration: loaded and logged.
	copyPolicies(t, pol)
	if err := os.WriteFile(rbac, append(orig, []byte("\n# reviewed\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the new policy", func() bool { return strings.Contains(logs(), "policy loaded") }, logs)
	code, out = decide()
	expectExit(t, code, out, 0, "ALLOWED")
	d.Stop(t)
	if !strings.Contains(logs(), "trigger=hangup") || !strings.Contains(logs(), `trigger="file change"`) {
		t.Errorf("daemon log does not name the triggers:\n%s", logs())
	}
}

// TestServeBundleAndReplay follows docs/policy.md: serve a signed bundle,
// decide, replay the log with another policy from the data directory and
// over the Rekor API, and ship a new revision that the daemon picks up
// while refusing an unsigned one.
func TestServeBundleAndReplay(t *testing.T) {
	bin := buildGatelog(t)
	dir := t.TempDir()
	priv, pub := writeKeyPair(t, dir, "bundle-signing")
	mine := filepath.Join(dir, "my-policies")
	copyPolicies(t, mine)
	bundle := filepath.Join(dir, "bundle.tar.gz")
	code, out := run(t, bin, nil, "policy", "build", "--signing-key", priv, "--revision", "r1", "--out", bundle, mine)
	expectExit(t, code, out, 0, "revision r1")
	data := filepath.Join(dir, "gatelog-data")
	d := startServe(t, bin, data, "--bundle", bundle, "--bundle-verification-key", pub)
	server, logs := d.URL, d.Log
	key, err := os.ReadFile(filepath.Join(data, "bootstrap-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"GATELOG_API_KEY=" + strings.TrimSpace(string(key))}
	// A running daemon holds its envelope store: replay reads it over the
	// daemon's API, and from the data directory once it has stopped.
	live := []string{"--server", server, "--log-key", filepath.Join(data, "keys/log.pub"), "--signer-key", filepath.Join(data, "keys/decision.pub")}
	code, out = run(t, bin, env, append([]string{"policy", "replay"}, live...)...)
	expectExit(t, code, out, 0, "nothing to replay")
	for _, req := range []string{"deploy-prod-denied.json", "deploy-prod.json", "pipeline-trigger.json"} {
		// --out waits for a checkpoint covering the decision, so replay sees it.
		code, out := run(t, bin, env, "decide", "--server", server, "--out", filepath.Join(dir, "receipt.json"), "--input", filepath.Join("../../examples/requests", req))
		if code != 0 && code != 2 {
			t.Fatalf("decide %s: exit %d\n%s", req, code, out)
		}
	}
	acme := "../../examples/policies/acme.yaml"
	// Replay reads the records, which the daemon keeps for read callers.
	code, out = run(t, bin, nil, append([]string{"policy", "replay", "--policy-data", acme}, live...)...)
	expectExit(t, code, out, 1, "records are private")
	code, out = run(t, bin, env, append([]string{"policy", "replay", "--policy-data", acme}, live...)...)
	expectExit(t, code, out, 0, "replayed 3 decisions (log indexes 0 to 3; 1 events and administrative records skipped", "allow -> deny  pipeline.trigger by bob", "allow -> deny  deploy by alice")
	code, out = run(t, bin, env, "policy", "replay", "--server", server, "--log-key", filepath.Join(data, "keys/log.pub"),
		"--signer-key", filepath.Join(data, "keys/decision.pub"), "--from", "2", "--to", "2", "--policy-data", acme, "--fail-on-change")
	expectExit(t, code, out, 2, "replayed 1 decisions (log indexes 2 to 2", "1 would change")
	code, out = run(t, bin, env, append([]string{"policy", "replay", "--bundle", bundle, "--bundle-verification-key", pub, "--fail-on-change"}, live...)...)
	expectExit(t, code, out, 0, "revision r1", "0 would change")
	code, out = run(t, bin, env, "policy", "replay", "--server", server, "--log-key", filepath.Join(data, "keys/decision.pub"), "--signer-key", filepath.Join(data, "keys/decision.pub"))
	expectExit(t, code, out, 3, "verification failed: log_id")

	// An unsigned bundle over the file is refused; a new signed revision loads.
	code, out = run(t, bin, nil, "policy", "build", "--revision", "evil", "--out", bundle, mine)
	expectExit(t, code, out, 0, "unsigned")
	poll.Until(t, "the unsigned bundle to be refused", func() bool { return strings.Contains(logs(), "missing .signatures.json") }, logs)
	code, out = run(t, bin, nil, "policy", "build", "--signing-key", priv, "--revision", "r2", "--out", bundle, mine)
	expectExit(t, code, out, 0, "revision r2")
	poll.Until(t, "revision r2", func() bool { return strings.Contains(logs(), "revision=r2") }, logs)
	// The reload's record is durable once logged; replay reads up to the
	// latest checkpoint, which covers it a moment later.
	poll.Until(t, "a checkpoint covering the r2 record (5 entries)", func() bool {
		resp, err := http.Get(server + "/checkpoint")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		lines := strings.SplitN(string(b), "\n", 3)
		size, err := strconv.Atoi(lines[min(1, len(lines)-1)])
		return err == nil && size >= 5
	}, logs)
	type replayReport struct {
		Replayed int `json:"replayed"`
		Skipped  int `json:"skipped_policy_updates"`
	}
	code, out = run(t, bin, env, append([]string{"policy", "replay", "--json", "--policy-data", acme}, live...)...)
	expectExit(t, code, out, 0)
	var rep replayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Replayed != 3 || rep.Skipped != 2 { // the start-up policy record and the reload
		t.Errorf("replay --json after the r2 reload: %+v %v\n%s", rep, err, out)
	}
	code, out = run(t, bin, nil, "policy", "replay", "--data", data)
	expectExit(t, code, out, 1, "in use")
	d.Stop(t)
	code, out = run(t, bin, nil, "policy", "replay", "--json", "--data", data, "--policy-data", acme)
	expectExit(t, code, out, 0)
	var offline replayReport
	if err := json.Unmarshal([]byte(out), &offline); err != nil || offline != rep {
		t.Errorf("replay --data of the stopped daemon: %+v %v, want %+v\n%s", offline, err, rep, out)
	}
	if strings.Contains(logs(), "revision=evil") {
		t.Errorf("the unsigned bundle was loaded:\n%s", logs())
	}
}
