package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cosignType is the attestation type gatelog records carry.
const cosignType = "https://gatelog.dev/decision/v1"

// TestCosignVerifiesBundles runs the unmodified cosign (v2.6.5, built by
// `make interop`, named by GATELOG_COSIGN) on `gatelog log bundle` output
// offline, claims checked: the subject blob `--subject-out` writes must
// match the attestation, and one changed character in any field cosign
// authenticates, in the blob, or the wrong --type, must be refused.
// Without GATELOG_COSIGN it is skipped: building cosign takes minutes,
// so it is not part of `make test`.
func TestCosignVerifiesBundles(t *testing.T) {
	cosign := os.Getenv("GATELOG_COSIGN")
	if cosign == "" {
		t.Skip("set GATELOG_COSIGN to a cosign v2.6.5 binary, or run make interop")
	}
	f := newLogFixture(t, 2)
	dir := t.TempDir()
	root := filepath.Join(dir, "trusted_root.json")
	if code, out := run(t, f.bin, nil, "log", "trusted-root", "--server", f.server, "--log-key", f.logPub(), "--out", root); code != 0 {
		t.Fatalf("log trusted-root: exit %d\n%s", code, out)
	}
	reader := []string{"GATELOG_API_KEY=" + f.bootstrapKey(t)}
	bundles, subjects := map[int]string{}, map[int]string{}
	for _, i := range []int{0, 1, 2} {
		bundles[i], subjects[i] = filepath.Join(dir, fmt.Sprintf("bundle-%d.json", i)), filepath.Join(dir, fmt.Sprintf("subject-%d.json", i))
		if code, out := run(t, f.bin, reader, "log", "bundle", "--server", f.server, "--index", fmt.Sprint(i), "--out", bundles[i], "--subject-out", subjects[i]); code != 0 {
			t.Fatalf("log bundle --index %d: exit %d\n%s", i, code, out)
		}
	}
	verifyBlob := func(bundle, subject, typ string) (bool, string) {
		t.Helper()
		out, err := exec.Command(cosign, "verify-blob-attestation", "--bundle", bundle, "--new-bundle-format",
			"--trusted-root", root, "--key", f.signerPub(), "--type", typ, subject).CombinedOutput()
		return err == nil, string(out)
	}
	// Entry 0 is the daemon's start-up policy record, an administrative
	// record: cosign refuses it as a decision and accepts it as what it is.
	if ok, out := verifyBlob(bundles[0], subjects[0], cosignType); ok {
		t.Errorf("cosign accepts the administrative record as a decision:\n%s", out)
	}
	if ok, out := verifyBlob(bundles[0], subjects[0], "https://gatelog.dev/admin/v1"); !ok || !strings.Contains(out, "Verified OK") {
		t.Errorf("cosign refuses the administrative record as one:\n%s", out)
	}
	for _, i := range []int{1, 2} {
		if ok, out := verifyBlob(bundles[i], subjects[i], cosignType); !ok || !strings.Contains(out, "Verified OK") {
			t.Fatalf("cosign refuses the good bundle of entry %d with its subject:\n%s", i, out)
		}
	}
	if ok, out := verifyBlob(bundles[2], subjects[1], cosignType); ok {
		t.Errorf("cosign accepts entry 2's bundle with entry 1's subject:\n%s", out)
	}
	if ok, out := verifyBlob(bundles[2], subjects[2], "https://example.com/other/v1"); ok {
		t.Errorf("cosign accepts the bundle as another predicate type:\n%s", out)
	}
	blob := mustRead(t, subjects[2])
	changed := filepath.Join(dir, "subject-changed.json")
	if err := os.WriteFile(changed, []byte(strings.Replace(string(blob), `"deploy"`, `"deplox"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, out := verifyBlob(bundles[2], changed, cosignType); ok {
		t.Errorf("cosign accepts a changed subject blob:\n%s", out)
	}

	// One character changed in each field of the bundle cosign checks.
	// Two fields are metadata cosign does not rely on with --key and a
	// dsse entry, so changing them changes nothing it verifies: the key
	// hint and the entry's kind/version.
	var b map[string]any
	if err := json.Unmarshal(mustRead(t, bundles[2]), &b); err != nil {
		t.Fatal(err)
	}
	unchecked := map[string]bool{
		"verificationMaterial/publicKey/hint":                    true,
		"verificationMaterial/tlogEntries/0/kindVersion/kind":    true,
		"verificationMaterial/tlogEntries/0/kindVersion/version": true,
	}
	tampered := 0
	for _, leaf := range jsonLeaves(b, "") {
		if unchecked[leaf.path] {
			continue
		}
		var c map[string]any
		_ = json.Unmarshal(mustRead(t, bundles[2]), &c)
		setJSONLeaf(c, strings.Split(leaf.path, "/"), oneCharOff(leaf.value))
		raw, _ := json.Marshal(c)
		p := filepath.Join(dir, "tampered.json")
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		if ok, out := verifyBlob(p, subjects[2], cosignType); ok {
			t.Errorf("cosign accepts the bundle with %s changed (%q → %q):\n%s", leaf.path, leaf.value, oneCharOff(leaf.value), out)
		}
		tampered++
	}
	if tampered < 12 {
		t.Errorf("only %d fields tampered with; the bundle has fewer fields than expected", tampered)
	}
}

type jsonLeaf struct{ path, value string }

// jsonLeaves lists every string or number in v with its slash path.
func jsonLeaves(v any, path string) []jsonLeaf {
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "/" + k
	}
	var out []jsonLeaf
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			out = append(out, jsonLeaves(e, join(k))...)
		}
	case []any:
		for i, e := range x {
			out = append(out, jsonLeaves(e, join(fmt.Sprint(i)))...)
		}
	case string:
		out = append(out, jsonLeaf{path, x})
	case float64:
		out = append(out, jsonLeaf{path, fmt.Sprint(int64(x))})
	}
	return out
}

func setJSONLeaf(v map[string]any, path []string, value string) {
	var cur any = v
	for i, k := range path {
		last := i == len(path)-1
		switch x := cur.(type) {
		case map[string]any:
			if last {
				x[k] = value
				return
			}
			cur = x[k]
		case []any:
			var n int
			fmt.Sscan(k, &n)
			if last {
				x[n] = value
				return
			}
			cur = x[n]
		}
	}
}

// oneCharOff changes the middle character of s (a digit to the next
// digit, anything else to 'B', or 'C' if it was 'B').
func oneCharOff(s string) string {
	if s == "" {
		return "x"
	}
	r := []byte(s)
	i := len(r) / 2
	switch {
	case r[i] >= '0' && r[i] <= '9':
		r[i] = '0' + (r[i]-'0'+1)%10
	case r[i] == 'B':
		r[i] = 'C'
	default:
		r[i] = 'B'
	}
	return string(r)
}
