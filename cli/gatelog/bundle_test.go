package main_test

import (
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/translog/sigbundle"
)

// gatelog log bundle and gatelog log trusted-root write files that
// sigstore-go v1.3.0 verifies offline, with the decision key as a trusted
// public key, as docs/auditors.md shows; writing a bundle
// needs a read key, since it carries the record.
func TestBundleVerifiesWithSigstoreGo(t *testing.T) {
	f := newLogFixture(t, 3)
	dir := t.TempDir()
	rootPath := filepath.Join(dir, "trusted_root.json")
	code, out := run(t, f.bin, nil, "log", "trusted-root", "--server", f.server, "--log-key", f.logPub(), "--signer-key", f.signerPub(), "--out", rootPath)
	if code != 0 || !strings.Contains(out, "decision key hint") {
		t.Fatalf("log trusted-root: exit %d\n%s", code, out)
	}
	signerPEM, err := os.ReadFile(f.signerPub())
	if err != nil {
		t.Fatal(err)
	}
	signKey, err := cryptoutils.UnmarshalPEMToPublicKey(signerPEM)
	if err != nil {
		t.Fatal(err)
	}
	// A bundle holds the record: without a read key the command says why
	// it cannot write one.
	if code, out := run(t, f.bin, nil, "log", "bundle", "--server", f.server, "--index", "0"); code != 1 || !strings.Contains(out, "records are private") {
		t.Errorf("log bundle without a read key: exit %d\n%s", code, out)
	}
	reader := []string{"GATELOG_API_KEY=" + f.bootstrapKey(t)}
	for _, index := range []string{"0", "2"} {
		bundlePath := filepath.Join(dir, "bundle-"+index+".json")
		if code, out := run(t, f.bin, reader, "log", "bundle", "--server", f.server, "--index", index, "--out", bundlePath); code != 0 {
			t.Fatalf("log bundle --index %s: exit %d\n%s", index, code, out)
		}
		if err := verifyBundleFiles(rootPath, bundlePath, signKey); err != nil {
			t.Errorf("sigstore-go rejects the bundle of entry %s: %v", index, err)
		}
	}
	if code, out := run(t, f.bin, reader, "log", "bundle", "--server", f.server, "--index", "99"); code != 1 {
		t.Errorf("log bundle of a missing entry: exit %d\n%s", code, out)
	}
}

func verifyBundleFiles(rootPath, bundlePath string, signKey crypto.PublicKey) error {
	tr, err := root.NewTrustedRootFromPath(rootPath)
	if err != nil {
		return err
	}
	sv, err := signature.LoadVerifier(signKey, crypto.SHA256)
	if err != nil {
		return err
	}
	keyID, err := sigbundle.KeyID(signKey)
	if err != nil {
		return err
	}
	keys := root.NewTrustedPublicKeyMaterial(func(hint string) (root.TimeConstrainedVerifier, error) {
		if hint != keyID {
			return nil, fmt.Errorf("bundle names key %q, the decision key is %q", hint, keyID)
		}
		return root.NewExpiringKey(sv, time.Time{}, time.Time{}), nil
	})
	v, err := sgverify.NewVerifier(root.TrustedMaterialCollection{tr, keys},
		sgverify.WithTransparencyLog(1), sgverify.WithIntegratedTimestamps(1))
	if err != nil {
		return err
	}
	b, err := bundle.LoadJSONFromPath(bundlePath)
	if err != nil {
		return err
	}
	_, err = v.Verify(b, sgverify.NewPolicy(sgverify.WithoutArtifactUnsafe(), sgverify.WithKey()))
	return err
}
