package main_test

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/internal/logtest"
)

// audit runs a gatelog auditor command against the fixture's daemon,
// without a credential: what anyone can check.
func (f *logFixture) audit(t *testing.T, state string, args ...string) (int, string) {
	t.Helper()
	return f.auditWith(t, nil, state, args...)
}

// auditKeyed runs it as an auditor with a read key (the bootstrap key in
// GATELOG_API_KEY), who may see the records.
func (f *logFixture) auditKeyed(t *testing.T, state string, args ...string) (int, string) {
	t.Helper()
	return f.auditWith(t, []string{"GATELOG_API_KEY=" + f.bootstrapKey(t)}, state, args...)
}

func (f *logFixture) auditWith(t *testing.T, env []string, state string, args ...string) (int, string) {
	t.Helper()
	return run(t, f.bin, env, append(args, "--server", f.server, "--log-key", f.logPub(), "--state-dir", state)...)
}

func (f *logFixture) bootstrapKey(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(string(mustRead(t, filepath.Join(f.data, "bootstrap-api-key"))))
}

// createKey makes an API key with the permissions given, with gatelog keys
// create as an operator would.
func (f *logFixture) createKey(t *testing.T, name string, perms ...string) string {
	t.Helper()
	args := []string{"keys", "create", "--server", f.server, "--name", name}
	for _, p := range perms {
		args = append(args, "--perm", p)
	}
	code, out := run(t, f.bin, []string{"GATELOG_API_KEY=" + f.bootstrapKey(t)}, args...)
	if code != 0 {
		t.Fatalf("keys create: exit %d\n%s", code, out)
	}
	for _, w := range strings.Fields(out) {
		if strings.HasPrefix(w, "glk_") {
			return w
		}
	}
	t.Fatalf("keys create printed no key:\n%s", out)
	return ""
}

// TestAuditorCommands runs every auditor command twice: as anyone (the
// log keeps its records private: everything the leaves prove is checked,
// and each command says what it could not check) and with a read key (the
// records are shown and their envelopes checked).
func TestAuditorCommands(t *testing.T) {
	f := newLogFixture(t, 3) // entry 0 is the start-up policy record, 1-3 the decisions
	state := t.TempDir()

	code, out := f.audit(t, state, "log", "info")
	if code != 0 || !strings.Contains(out, "VERIFIED") || !strings.Contains(out, "tree size 4") || !strings.Contains(out, "first time") ||
		!strings.Contains(out, "4 envelopes not checked: records are private (give a read key)") {
		t.Fatalf("log info: exit %d\n%s", code, out)
	}
	f.decide(t)
	code, out = f.auditKeyed(t, state, "log", "info", "--signer-key", f.signerPub())
	if code != 0 || !strings.Contains(out, "consistent with the checkpoint of size 4") || !strings.Contains(out, "5 envelope signatures OK") {
		t.Fatalf("log info after growth, with a read key: exit %d\n%s", code, out)
	}

	// Without a key: the leaf, its proof and SET, and the signer it names.
	code, out = f.audit(t, state, "log", "get", "--index", "1", "--signer-key", f.signerPub())
	if code != 0 || !strings.Contains(out, "VERIFIED  entry 1") || !strings.Contains(out, "inclusion proof, checkpoint signature and SET OK") ||
		!strings.Contains(out, "names signing key") || !strings.Contains(out, "record not shown, envelope not checked: records are private") ||
		strings.Contains(out, "deploy") || strings.Contains(out, f.receipts[0].DecisionID) {
		t.Fatalf("log get --index without a key: exit %d\n%s", code, out)
	}
	code, out = f.auditKeyed(t, state, "log", "get", "--index", "1", "--signer-key", f.signerPub())
	if code != 0 || !strings.Contains(out, "VERIFIED  entry 1") || !strings.Contains(out, "ALLOW deploy") || !strings.Contains(out, "envelope signature OK") {
		t.Fatalf("log get --index with a read key: exit %d\n%s", code, out)
	}
	// Entry 0, the start-up policy record, is shown as what it is: an
	// administrative record, neither allowed nor denied by a policy.
	code, out = f.auditKeyed(t, state, "log", "get", "--index", "0", "--signer-key", f.signerPub())
	if code != 0 || !strings.Contains(out, "  admin ") || !strings.Contains(out, "RECORDED policy.update by gatelog-daemon") || strings.Contains(out, "DENY") || strings.Contains(out, "ALLOW") {
		t.Fatalf("log get of the start-up policy record: exit %d\n%s", code, out)
	}
	var ce struct {
		UUID          string          `json:"uuid"`
		Record        json.RawMessage `json:"record"`
		RecordPrivate bool            `json:"record_private"`
	}
	code, out = f.audit(t, state, "log", "get", "--uuid", f.receipts[1].UUID, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &ce) != nil || ce.UUID != f.receipts[1].UUID || !ce.RecordPrivate || string(ce.Record) != "null" {
		t.Fatalf("log get --uuid --json without a key: exit %d\n%s", code, out)
	}
	ce.RecordPrivate = false
	code, out = f.auditKeyed(t, state, "log", "get", "--uuid", f.receipts[1].UUID, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &ce) != nil || ce.UUID != f.receipts[1].UUID || ce.RecordPrivate || !strings.Contains(string(ce.Record), f.receipts[1].DecisionID) {
		t.Fatalf("log get --uuid --json with a read key: exit %d\n%s", code, out)
	}
	if code, out = f.audit(t, state, "log", "proof", "--index", "2"); code != 0 || !strings.Contains(out, "VERIFIED  entry 2 is in the tree of size 5") {
		t.Fatalf("log proof: exit %d\n%s", code, out)
	}
	if code, out = f.audit(t, state, "log", "consistency", "--from", "1"); code != 0 || !strings.Contains(out, "is a prefix of the tree of size 5") {
		t.Fatalf("log consistency: exit %d\n%s", code, out)
	}

	mstate := t.TempDir()
	code, out = f.audit(t, mstate, "monitor", "--once", "--signer-key", f.signerPub())
	if code != 0 || !strings.Contains(out, "OK  size 5") || !strings.Contains(out, "5 new entries") ||
		!strings.Contains(out, "5 envelopes not checked: records are private (give a read key); every entry names a signer key valid when it was logged") || strings.Contains(out, "ALARM") {
		t.Fatalf("monitor without a key: exit %d\n%s", code, out)
	}
	f.decide(t)
	if code, out = f.auditKeyed(t, mstate, "monitor", "--once", "--signer-key", f.signerPub()); code != 0 || !strings.Contains(out, "from the saved checkpoint of size 5") || !strings.Contains(out, "1 new entries") || !strings.Contains(out, "1 envelope signatures OK") {
		t.Fatalf("monitor from saved state, with a read key: exit %d\n%s", code, out)
	}
	if code, out = f.audit(t, state, "log", "get", "--index", "99"); code != 1 {
		t.Fatalf("log get of a missing entry: exit %d\n%s", code, out)
	}

	// A key the daemon refuses, or one without the read permission, is
	// an error (exit 1) saying so: neither a quiet public view nor an alarm.
	decider := f.createKey(t, "ci-only", "decide")
	for _, tc := range []struct {
		key, want string
	}{
		{"glk_not-a-key", "401"},
		{decider, "lacks the read permission"},
	} {
		for _, args := range [][]string{{"log", "get", "--index", "0"}, {"monitor", "--once"}, {"log", "info"}} {
			code, out := f.auditWith(t, []string{"GATELOG_API_KEY=" + tc.key}, t.TempDir(), args...)
			if code != 1 || !strings.Contains(out, tc.want) || strings.Contains(out, "ALARM") {
				t.Errorf("%v with key %.12s…: exit %d, want 1 with %q\n%s", args, tc.key, code, tc.want, out)
			}
		}
	}
	reader := f.createKey(t, "auditor", "read")
	if code, out := f.auditWith(t, []string{"GATELOG_API_KEY=" + reader}, t.TempDir(), "log", "get", "--index", "1"); code != 0 || !strings.Contains(out, "ALLOW deploy") {
		t.Errorf("log get with a read-only key: exit %d\n%s", code, out)
	}
}

// TestAuditorDetectsRollbackAndFork splits one log in two (same key, same
// first entries, different histories after) and shows a client that saw
// one side each way the other side lies to it.
func TestAuditorDetectsRollbackAndFork(t *testing.T) {
	f := newLogFixture(t, 2)
	f.d.Stop(t)
	twin := filepath.Join(t.TempDir(), "twin")
	if out, err := exec.Command("cp", "-a", f.data, twin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	f.d = startServe(t, f.bin, f.data)
	f.server = "http://" + f.d.Addr
	f.decide(t)
	f.decide(t)
	state := t.TempDir()
	if code, out := f.audit(t, state, "log", "info"); code != 0 {
		t.Fatalf("log info: exit %d\n%s", code, out)
	}

	g := &logFixture{bin: f.bin, data: twin}
	g.d = startServe(t, g.bin, g.data)
	g.server = "http://" + g.d.Addr
	g.decide(t) // size 3 < 4: a rollback to this client
	code, out := g.audit(t, state, "log", "info")
	if code != 3 || !strings.Contains(out, "ALARM") || !strings.Contains(out, "ROLLBACK") || !strings.Contains(out, "last checkpoint this client trusted") {
		t.Fatalf("rollback not reported: exit %d\n%s", code, out)
	}
	g.decide(t)
	g.decide(t) // size 5 > 4 but a different history: a fork
	code, out = g.audit(t, state, "log", "info")
	if code != 3 || !strings.Contains(out, "FORK") {
		t.Fatalf("fork not reported: exit %d\n%s", code, out)
	}
	if code, out = g.audit(t, state, "monitor", "--once"); code != 3 || !strings.Contains(out, "FORK") {
		t.Fatalf("monitor did not report the fork: exit %d\n%s", code, out)
	}
}

// TestTamperDetected changes one byte of each kind of log file on disk and
// checks that gatelog log info, gatelog verify (on a receipt fetched after
// the change), gatelog monitor and rekor-cli verify all fail.
func TestTamperDetected(t *testing.T) {
	rekor := rekorCLI(t)
	base := newLogFixture(t, 3) // entries 1-3; entry 0 is the start-up policy record
	base.d.Stop(t)
	for _, tc := range []struct {
		name string
		file string
		// tamper changes one byte of the file's content.
		tamper func([]byte) []byte
	}{
		{"tile", "log/tlog/tile/0/000.p/4", func(b []byte) []byte { return flip(b, 8) }}, // leaf 0: a sibling in leaf 1's proof
		{"entry bundle", "log/tlog/tile/entries/000.p/4", func(b []byte) []byte {
			// A hex digit of entry 1's envelope hash: still JSON, wrong leaf.
			const k = `"envelopeHash":{"algorithm":"sha256","value":"`
			first := strings.Index(string(b), k) + len(k)
			i := first + strings.Index(string(b[first:]), k) + len(k) + 3
			return setByte(b, i, b[i]^0x01)
		}},
		{"stored envelope", "", nil},
		{"checkpoint", "log/tlog/checkpoint", func(b []byte) []byte {
			lines := strings.SplitN(string(b), "\n", 3)
			i := len(lines[0]) + 1 + len(lines[1]) + 1 + 5 // inside the root hash
			return setByte(b, i, b[i]^0x01)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &logFixture{bin: base.bin, data: filepath.Join(t.TempDir(), "data"), receipts: base.receipts}
			if out, err := exec.Command("cp", "-a", base.data, f.data).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v %s", err, out)
			}
			target := 0 // receipts[0], log entry 1
			if tc.name == "stored envelope" {
				// The store is one database the daemon holds open: change
				// a base64 character of the envelope before it starts.
				leaf, _ := hex.DecodeString(f.receipts[target].UUID[16:])
				err := logtest.RewriteStoredEnvelope(filepath.Join(f.data, "log"), leaf, func(env []byte) []byte {
					i := strings.Index(string(env), `"payload":"`) + 40
					return setByte(env, i, map[bool]byte{true: 'B', false: 'A'}[env[i] == 'A'])
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			f.d = startServe(t, f.bin, f.data)
			f.server = "http://" + f.d.Addr
			if tc.name != "stored envelope" {
				path := filepath.Join(f.data, tc.file)
				if err := os.WriteFile(path, tc.tamper(mustRead(t, path)), 0o644); err != nil {
					t.Fatal(err)
				}
			}

			// An auditor with a read key: the stored envelopes are checked too.
			if code, out := f.auditKeyed(t, t.TempDir(), "log", "info", "--signer-key", f.signerPub()); code == 0 {
				t.Errorf("log info did not notice:\n%s", out)
			}
			if code, out := f.auditKeyed(t, t.TempDir(), "monitor", "--once", "--signer-key", f.signerPub()); code == 0 {
				t.Errorf("monitor did not notice:\n%s", out)
			}
			if ok, why := f.freshReceiptVerifies(t, target); ok {
				t.Errorf("gatelog verify passed a receipt fetched after the change: %s", why)
			}
			env := rekorEnv(t, f.logPub())
			if code, out := run(t, rekor, env, "verify", "--uuid", f.receipts[target].UUID, "--rekor_server", f.server, "--retry", "0"); code == 0 {
				t.Errorf("rekor-cli verify did not notice:\n%s", out)
			}
		})
	}
}

// freshReceiptVerifies fetches decision i's receipt from the daemon now
// and runs gatelog verify on it. A daemon that refuses to serve it (it
// checks its own files) counts as not verified.
func (f *logFixture) freshReceiptVerifies(t *testing.T, i int) (bool, string) {
	t.Helper()
	key := strings.TrimSpace(string(mustRead(t, filepath.Join(f.data, "bootstrap-api-key"))))
	req, _ := http.NewRequest(http.MethodGet, f.server+"/v1/decisions/"+f.receipts[i].DecisionID, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, string(body)
	}
	path := filepath.Join(t.TempDir(), "fresh.json")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := run(t, f.bin, nil, "verify", "--receipt", path, "--log-key", f.logPub(), "--signer-key", f.signerPub())
	return code == 0, out
}

func flip(b []byte, i int) []byte { return setByte(b, i, b[i]^0xff) }

func setByte(b []byte, i int, v byte) []byte {
	c := append([]byte(nil), b...)
	c[i] = v
	return c
}
