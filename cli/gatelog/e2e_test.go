package main_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/gatelog/gatelog/internal/e2e"
)

// buildGatelog compiles the real binary into a temporary directory of t.
func buildGatelog(t *testing.T) string { return e2e.Build(t) }

// startServe starts `gatelog serve` on data and waits until it is ready
// (internal/e2e, the one way tests start a daemon process).
func startServe(t *testing.T, bin, data string, extra ...string) *e2e.Daemon {
	t.Helper()
	return e2e.StartWith(t, bin, e2e.Options{Data: data, Args: append([]string{"--checkpoint-interval", "200ms"}, extra...)})
}

// run runs the CLI and returns its exit code and combined output.
func run(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	return e2e.Run(t, bin, env, args...)
}

// TestReadmeWalkthrough does what the README tells a new user to do:
// serve, decide an allow and a deny with receipts, verify both offline with
// the two public keys, and see a tampered receipt fail.
func TestReadmeWalkthrough(t *testing.T) {
	bin := buildGatelog(t)
	data := filepath.Join(t.TempDir(), "gatelog-data")
	d := startServe(t, bin, data)
	if !strings.Contains(d.Log(), "origin=") {
		t.Errorf("serve did not log its origin line:\n%s", d.Log())
	}
	key, err := os.ReadFile(filepath.Join(data, "bootstrap-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"GATELOG_API_KEY=" + strings.TrimSpace(string(key))}
	server := "http://" + d.Addr
	examples := filepath.Join("..", "..", "examples", "requests")
	dir := t.TempDir()

	for _, tc := range []struct {
		input string
		code  int
		word  string
	}{
		{"deploy-prod.json", 0, "ALLOWED"},
		{"deploy-prod-denied.json", 2, "DENIED"},
		{"pipeline-trigger.json", 0, "ALLOWED"},
	} {
		t.Run(tc.input, func(t *testing.T) {
			out := filepath.Join(dir, tc.input+".receipt.json")
			code, text := run(t, bin, env, "decide", "--server", server, "--input", filepath.Join(examples, tc.input), "--out", out)
			if code != tc.code || !strings.Contains(text, tc.word) {
				t.Fatalf("decide exit %d (want %d): %s", code, tc.code, text)
			}
			code, text = run(t, bin, nil, "verify", "--receipt", out,
				"--log-key", filepath.Join(data, "keys/log.pub"), "--signer-key", filepath.Join(data, "keys/decision.pub"))
			if code != 0 || !strings.Contains(text, "VERIFIED") {
				t.Fatalf("verify exit %d: %s", code, text)
			}
			// One changed byte in the receipt and verify says which check failed.
			raw, _ := os.ReadFile(out)
			var rc map[string]any
			_ = json.Unmarshal(raw, &rc)
			rc["log_index"] = rc["log_index"].(float64) + 1
			bad, _ := json.Marshal(rc)
			badPath := out + ".bad"
			_ = os.WriteFile(badPath, bad, 0o644)
			code, text = run(t, bin, nil, "verify", "--receipt", badPath,
				"--log-key", filepath.Join(data, "keys/log.pub"), "--signer-key", filepath.Join(data, "keys/decision.pub"))
			if code != 3 || !strings.Contains(text, "NOT VERIFIED") {
				t.Fatalf("tampered receipt: verify exit %d: %s", code, text)
			}
		})
	}

	// Many receipts in one run: each is reported, and one bad receipt among
	// them makes the run fail and is named.
	good, _ := filepath.Glob(filepath.Join(dir, "*.receipt.json"))
	keys := []string{"--log-key", filepath.Join(data, "keys/log.pub"), "--signer-key", filepath.Join(data, "keys/decision.pub")}
	code, text := run(t, bin, nil, append(append([]string{"verify"}, keys...), good...)...)
	if code != 0 || strings.Count(text, "VERIFIED  decision") != 3 || !strings.Contains(text, "3 of 3 receipts verified") {
		t.Errorf("verify of %d receipts: exit %d: %s", len(good), code, text)
	}
	bad := filepath.Join(dir, "pipeline-trigger.json.receipt.json.bad")
	code, text = run(t, bin, nil, append(append([]string{"verify", "--receipt", bad}, keys...), good...)...)
	if code != 3 || !strings.Contains(text, "3 of 4 receipts verified") || !strings.Contains(text, bad+": NOT VERIFIED") {
		t.Errorf("verify of 3 good receipts and a tampered one: exit %d: %s", code, text)
	}

	// Errors are exit 1, never 0: no key, and a daemon that is gone.
	if code, text := run(t, bin, []string{"GATELOG_API_KEY="}, "decide", "--server", server, "--input", filepath.Join(examples, "deploy-prod.json")); code != 1 {
		t.Errorf("decide without a key: exit %d: %s", code, text)
	}
	d.Stop(t)
	if code, text := run(t, bin, env, "decide", "--server", server, "--input", filepath.Join(examples, "deploy-prod.json")); code != 1 {
		t.Errorf("decide with the daemon down: exit %d: %s", code, text)
	}
}

func TestServeRejectsBadFlags(t *testing.T) {
	bin := buildGatelog(t)
	code, text := run(t, bin, nil, "serve", "--data", t.TempDir(), "--policies", "/nonexistent-policy-dir", "--addr", e2e.FreeAddr(t))
	if code != 1 || !strings.Contains(text, "--policies") {
		t.Errorf("exit %d: %s", code, text)
	}
	code, text = run(t, bin, nil, "serve", "--data", t.TempDir(), "--append-timeout", "-1s", "--addr", e2e.FreeAddr(t))
	if code != 1 || !strings.Contains(text, "--append-timeout") {
		t.Errorf("exit %d: %s", code, text)
	}
	code, text = run(t, bin, nil, "verify", "--receipt", "x.json", "--log-key", "nope.pub", "--signer-key", "nope.pub")
	if code != 1 || !strings.Contains(text, "--log-key") {
		t.Errorf("exit %d: %s", code, text)
	}
}

// TestServeHelpMatchesDocs: every `serve` flag has one default in its
// help line and an environment variable, and the flag table of
// docs/operators.md names both.
func TestServeHelpMatchesDocs(t *testing.T) {
	bin := buildGatelog(t)
	code, help := run(t, bin, nil, "serve", "--help")
	if code != 0 {
		t.Fatalf("serve --help: exit %d\n%s", code, help)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "docs", "operators.md"))
	if err != nil {
		t.Fatal(err)
	}
	flagLine := regexp.MustCompile(`^\s+--([a-z0-9-]+)\b`)
	envVar := regexp.MustCompile(`\[\$([A-Z0-9_]+)\]`)
	n := 0
	for _, line := range strings.Split(help, "\n") {
		m := flagLine.FindStringSubmatch(line)
		if m == nil || m[1] == "help" {
			continue
		}
		n++
		if c := strings.Count(line, "default"); c > 1 {
			t.Errorf("--%s names %d defaults: %s", m[1], c, line)
		}
		env := envVar.FindStringSubmatch(line)
		if env == nil {
			t.Errorf("--%s has no environment variable: %s", m[1], line)
			continue
		}
		if !bytes.Contains(readme, []byte("`--"+m[1]+"`")) || !bytes.Contains(readme, []byte("`"+env[1]+"`")) {
			t.Errorf("docs/operators.md's flag table lacks --%s (%s)", m[1], env[1])
		}
	}
	if n < 25 {
		t.Errorf("read only %d flags from serve --help:\n%s", n, help)
	}
}

// TestDataDirIsOwnerOnly: started with the usual umask 022, the daemon
// still creates nothing under --data that its group or others may read.
func TestDataDirIsOwnerOnly(t *testing.T) {
	bin := buildGatelog(t)
	data := filepath.Join(t.TempDir(), "gatelog-data")
	old := syscall.Umask(0o022)
	d := startServe(t, bin, data)
	syscall.Umask(old)
	key, err := os.ReadFile(filepath.Join(data, "bootstrap-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"GATELOG_API_KEY=" + strings.TrimSpace(string(key))}
	if code, out := run(t, bin, env, "decide", "--server", "http://"+d.Addr, "--input", filepath.Join("..", "..", "examples", "requests", "pipeline-trigger.json")); code != 0 {
		t.Fatalf("decide: exit %d: %s", code, out)
	}
	d.Stop(t)
	n := 0
	err = filepath.WalkDir(data, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		n++
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %04o; want nothing for group and others", strings.TrimPrefix(p, data), fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("only %d files under the data directory", n)
	}
}
