package main_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/record/decision"
)

// rekorCLIVersion is the unmodified rekor-cli the log must satisfy.
const rekorCLIVersion = "v1.5.4"

// rekorCLI builds github.com/sigstore/rekor/cmd/rekor-cli at
// rekorCLIVersion in a throwaway module (it needs the module proxy or a
// warm module cache) and caches the binary in the repository's bin/.
func rekorCLI(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "rekor-cli-"+rekorCLIVersion)
	if fi, err := os.Stat(bin); err == nil && fi.Mode()&0o111 != 0 {
		return bin
	}
	mod := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"mod", "init", "rekorclibuild"},
		{"get", "github.com/sigstore/rekor/cmd/rekor-cli@" + rekorCLIVersion},
		{"build", "-o", bin + ".tmp", "github.com/sigstore/rekor/cmd/rekor-cli"},
	} {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// rekorEnv is what rekor-cli needs: the log key (its content: rekor-cli
// reads REKOR_REKOR_SERVER_PUBLIC_KEY as PEM, not as a path) and a HOME of
// its own for the tree state it keeps in ~/.rekor/state.json.
func rekorEnv(t *testing.T, logPub string) []string {
	t.Helper()
	pem, err := os.ReadFile(logPub)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"HOME=" + t.TempDir(), "REKOR_REKOR_SERVER_PUBLIC_KEY=" + string(pem)}
}

// logFixture is a real daemon (the gatelog binary) with a few decisions.
type logFixture struct {
	bin, data, server string
	d                 *e2e.Daemon
	receipts          []decision.Receipt
	receiptFiles      []string
	envelopeFiles     []string
}

func newLogFixture(t *testing.T, decisions int) *logFixture {
	t.Helper()
	f := &logFixture{bin: buildGatelog(t), data: filepath.Join(t.TempDir(), "data")}
	f.d = startServe(t, f.bin, f.data)
	f.server = "http://" + f.d.Addr
	for range decisions {
		f.decide(t)
	}
	return f
}

func (f *logFixture) logPub() string    { return filepath.Join(f.data, "keys", "log.pub") }
func (f *logFixture) signerPub() string { return filepath.Join(f.data, "keys", "decision.pub") }

func (f *logFixture) decide(t *testing.T) decision.Receipt {
	t.Helper()
	key, err := os.ReadFile(filepath.Join(f.data, "bootstrap-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "receipt.json")
	inputs := []string{"deploy-prod.json", "deploy-prod-denied.json", "pipeline-trigger.json"}
	input := filepath.Join("..", "..", "examples", "requests", inputs[len(f.receipts)%len(inputs)])
	code, text := run(t, f.bin, []string{"GATELOG_API_KEY=" + strings.TrimSpace(string(key))},
		"decide", "--server", f.server, "--input", input, "--out", out)
	if code != 0 && code != 2 {
		t.Fatalf("decide: exit %d: %s", code, text)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rc decision.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil {
		t.Fatal(err)
	}
	env := filepath.Join(dir, "envelope.json")
	if err := os.WriteFile(env, rc.Envelope, 0o644); err != nil {
		t.Fatal(err)
	}
	f.receipts = append(f.receipts, rc)
	f.receiptFiles = append(f.receiptFiles, out)
	f.envelopeFiles = append(f.envelopeFiles, env)
	return rc
}

// TestRekorCLI runs the unmodified rekor-cli against the daemon: loginfo
// (twice, so the second proves consistency with the state the first
// kept), get by index and by UUID, and verify by UUID, by index and by
// the artifact itself (the DSSE envelope with the decision key).
func TestRekorCLI(t *testing.T) {
	rekor := rekorCLI(t)
	f := newLogFixture(t, 3) // and entry 0, the start-up policy record
	env := rekorEnv(t, f.logPub())
	rk := func(args ...string) (int, string) {
		return run(t, rekor, env, append(args, "--rekor_server", f.server, "--retry", "0")...)
	}

	if code, out := rk("loginfo"); code != 0 || !strings.Contains(out, "Verification Successful!") || !strings.Contains(out, "Total Tree Size:        4") {
		t.Fatalf("loginfo: exit %d\n%s", code, out)
	}
	f.decide(t)
	if code, out := rk("loginfo", "--format", "json"); code != 0 || !strings.Contains(out, `"ActiveTreeSize":5`) {
		t.Fatalf("loginfo after growth (consistency with the stored state): exit %d\n%s", code, out)
	}

	for i, rc := range f.receipts {
		code, out := rk("get", "--log-index", itoa(rc.LogIndex))
		if code != 0 || !strings.Contains(out, "UUID: "+rc.UUID) || !strings.Contains(out, "envelopeHash") {
			t.Fatalf("get --log-index %d: exit %d\n%s", rc.LogIndex, code, out)
		}
		if code, out := rk("get", "--uuid", rc.UUID); code != 0 || !strings.Contains(out, "Index: "+itoa(rc.LogIndex)) {
			t.Fatalf("get --uuid: exit %d\n%s", code, out)
		}
		if code, out := rk("verify", "--uuid", rc.UUID); code != 0 || !strings.Contains(out, "Entry Index in Current Tree: "+itoa(rc.LogIndex)) {
			t.Fatalf("verify --uuid: exit %d\n%s", code, out)
		}
		if code, out := rk("verify", "--log-index", itoa(rc.LogIndex)); code != 0 {
			t.Fatalf("verify --log-index: exit %d\n%s", code, out)
		}
		code, out = rk("verify", "--type", "dsse", "--artifact", f.envelopeFiles[i], "--public-key", f.signerPub())
		if code != 0 || !strings.Contains(out, "Entry Index in Current Tree: "+itoa(rc.LogIndex)) {
			t.Fatalf("verify --artifact: exit %d\n%s", code, out)
		}
	}

	// The wrong log key fails everything.
	other := filepath.Join(t.TempDir(), "other.pub")
	if err := os.WriteFile(other, mustRead(t, f.signerPub()), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := rekorEnv(t, other)
	for _, args := range [][]string{{"loginfo"}, {"get", "--log-index", "0"}, {"verify", "--uuid", f.receipts[0].UUID}} {
		if code, out := run(t, rekor, bad, append(args, "--rekor_server", f.server, "--retry", "0")...); code == 0 {
			t.Errorf("rekor-cli %v with the wrong log key succeeded:\n%s", args, out)
		}
	}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
