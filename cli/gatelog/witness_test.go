package main_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"

	"github.com/gatelog/gatelog/translog/verify"
)

// TestWitnessCosigning: a monitor with a witness key cosigns the checkpoint
// it checked, the daemon that trusts the witness serves it at
// /witness/checkpoint, and a witness it does not trust is refused.
func TestWitnessCosigning(t *testing.T) {
	bin := buildGatelog(t)
	dir := t.TempDir()
	code, vkey := run(t, bin, nil, "log", "witness-key", "--name", "witness.test", "--out", filepath.Join(dir, "w.key"))
	if code != 0 {
		t.Fatalf("witness-key: exit %d\n%s", code, vkey)
	}
	vkey = strings.TrimSpace(vkey)
	if code, out := run(t, bin, nil, "log", "witness-key", "--name", "stranger.test", "--out", filepath.Join(dir, "s.key")); code != 0 {
		t.Fatalf("witness-key: exit %d\n%s", code, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "w.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("witness key file: %v %v", fi, err)
	}

	f := &logFixture{bin: bin, data: filepath.Join(t.TempDir(), "data")}
	f.d = startServe(t, f.bin, f.data, "--witness-vkey", vkey)
	f.server = "http://" + f.d.Addr
	f.decide(t)
	f.decide(t)
	if code, _ := getWitnessed(t, f.server); code != http.StatusNotFound {
		t.Fatalf("GET /witness/checkpoint before any cosignature: %d", code)
	}

	code, out := f.audit(t, t.TempDir(), "monitor", "--once", "--witness-key", filepath.Join(dir, "w.key"))
	if code != 0 || !strings.Contains(out, "cosigned as witness.test") {
		t.Fatalf("monitor --witness-key: exit %d\n%s", code, out)
	}
	status, raw := getWitnessed(t, f.server)
	if status != http.StatusOK {
		t.Fatalf("GET /witness/checkpoint: %d %s", status, raw)
	}
	pemBytes, err := os.ReadFile(f.logPub())
	if err != nil {
		t.Fatal(err)
	}
	logKey, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	origin, _, _ := strings.Cut(string(raw), "\n")
	lv, err := verify.CheckpointVerifier(origin, logKey)
	if err != nil {
		t.Fatal(err)
	}
	wv, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	cp, _, n, err := log.ParseCheckpoint(raw, origin, lv, wv)
	if err != nil {
		t.Fatalf("cosigned checkpoint does not verify: %v\n%s", err, raw)
	}
	if cp.Size != 3 || len(n.Sigs) != 2 { // the start-up policy record and two decisions
		t.Errorf("cosigned checkpoint of size %d with %d verified signatures, want 3 and 2:\n%s", cp.Size, len(n.Sigs), raw)
	}

	if code, out := f.audit(t, t.TempDir(), "monitor", "--once", "--witness-key", filepath.Join(dir, "s.key")); code != 1 || !strings.Contains(out, "refused") {
		t.Errorf("monitor with an untrusted witness key: exit %d\n%s", code, out)
	}
}

func getWitnessed(t *testing.T, server string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(server + "/witness/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}
