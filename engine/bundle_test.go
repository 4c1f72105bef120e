package engine_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/record/decision"
)

// testKeys generates an ES256 key pair as PEM: private (SEC 1) and public (PKIX).
func testKeys(t testing.TB) (priv, pub []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
}

// testedPolicy is basePolicy with a Rego test beside it.
func testedPolicy() fstest.MapFS {
	fsys := policyFS(basePolicy)
	fsys["decision_test.rego"] = &fstest.MapFile{Data: []byte(`package gatelog_test

import data.gatelog

test_trigger_allowed if {
	gatelog.decision.allow with input as {"action": "pipeline.trigger", "subject": {"verified": true}}
}

test_deploy_frozen if {
	not gatelog.decision.allow with input as {"action": "deploy"}
}
`)}
	return fsys
}

func buildBundle(t testing.TB, fsys fstest.MapFS, opts engine.BuildOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := engine.BuildBundle(context.Background(), &buf, fsys, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBundleRoundTrip(t *testing.T) {
	ctx := context.Background()
	priv, pub := testKeys(t)
	raw := buildBundle(t, testedPolicy(), engine.BuildOptions{Revision: "r42", SigningKeyPEM: priv})
	src, err := engine.LoadBundle(bytes.NewReader(raw), &engine.BundleVerification{PublicKeyPEM: pub}, "test.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	if src.Revision != "r42" {
		t.Errorf("revision %q, want r42", src.Revision)
	}
	e, err := engine.NewFromSource(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	d, pol := e.Decide(ctx, decision.Request{Action: "deploy"})
	if d.Allow || d.Reasons[0] != "frozen: winter" {
		t.Errorf("bundle decides differently from its directory: %+v", d)
	}
	if pol.Revision != "r42" || pol.SHA256 == "" {
		t.Errorf("policy identity %+v lacks the bundle revision", pol)
	}
	// The bundle's tests travel with it.
	rep, err := engine.RunTests(ctx, src.FS, engine.TestOptions{})
	if err != nil || rep.Passed != 2 || !rep.OK() {
		t.Fatalf("tests in the bundle: %+v, %v", rep, err)
	}
}

func TestBundleVerificationRefuses(t *testing.T) {
	priv, pub := testKeys(t)
	_, otherPub := testKeys(t)
	signed := buildBundle(t, testedPolicy(), engine.BuildOptions{Revision: "r1", SigningKeyPEM: priv})
	unsigned := buildBundle(t, testedPolicy(), engine.BuildOptions{Revision: "r1"})
	tampered := rewriteBundle(t, signed, "decision.rego", func(b []byte) []byte {
		return bytes.Replace(b, []byte("open to all"), []byte("open to everyone"), 1)
	})
	added := addToBundle(t, signed, "/override.rego", []byte("package gatelog\n\nextra := true\n"))
	otherKeyID := buildBundle(t, testedPolicy(), engine.BuildOptions{Revision: "r1", SigningKeyPEM: priv, KeyID: "release-2026"})
	cases := []struct {
		name   string
		bundle []byte
		v      *engine.BundleVerification
		want   string
	}{
		{"unsigned", unsigned, &engine.BundleVerification{PublicKeyPEM: pub}, "missing .signatures.json"},
		{"wrong key", signed, &engine.BundleVerification{PublicKeyPEM: otherPub}, "failed to verify"},
		{"file changed after signing", tampered, &engine.BundleVerification{PublicKeyPEM: pub}, "digest mismatch"},
		{"file added after signing", added, &engine.BundleVerification{PublicKeyPEM: pub}, "override.rego"},
		{"signed but no key configured", signed, nil, "give the key to verify it with"},
		{"not a bundle", []byte("hello"), nil, "bundle"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := engine.LoadBundle(bytes.NewReader(tc.bundle), tc.v, tc.name)
			if err == nil {
				t.Fatal("bundle accepted")
			}
			if !errors.Is(err, engine.ErrPolicy) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want ErrPolicy mentioning %q", err, tc.want)
			}
		})
	}
	// A bundle signed under another key id verifies with that id configured.
	if _, err := engine.LoadBundle(bytes.NewReader(otherKeyID), &engine.BundleVerification{PublicKeyPEM: pub, KeyID: "release-2026"}, "kid"); err != nil {
		t.Errorf("bundle with the configured key id refused: %v", err)
	}
	if _, err := engine.LoadBundle(bytes.NewReader(otherKeyID), &engine.BundleVerification{PublicKeyPEM: otherPub, KeyID: "release-2026"}, "kid"); err == nil {
		t.Error("bundle accepted with another key under its key id")
	}
	// Without verification configured an unsigned bundle loads.
	if _, err := engine.LoadBundle(bytes.NewReader(unsigned), nil, "unsigned"); err != nil {
		t.Errorf("unsigned bundle without verification: %v", err)
	}
}

// rewriteBundle changes one file of a bundle, keeping .signatures.json.
func rewriteBundle(t *testing.T, raw []byte, name string, edit func([]byte) []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "/") == name {
			if nb := edit(b); !bytes.Equal(nb, b) {
				found = true
			}
			b = edit(b)
		}
		h.Size = int64(len(b))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if !found {
		t.Fatalf("bundle has no %s, or the edit changed nothing", name)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// addToBundle appends a file to a bundle, keeping .signatures.json.
func addToBundle(t *testing.T, raw []byte, name string, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	// Drop the two zero blocks that end the archive, then append.
	tw := tar.NewWriter(zw)
	if _, err := zw.Write(plain[:len(plain)-1024]); err != nil {
		t.Fatal(err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// A bundle made by the real opa CLI (`opa build --signing-key`) loads and
// verifies like one made by BuildBundle.
func TestOPABuiltBundleIsAccepted(t *testing.T) {
	opa, err := filepath.Abs("../bin/opa-v1.22.2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(opa); err != nil {
		t.Skipf("no opa binary at %s (make policy-test builds it): %v", opa, err)
	}
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy")
	if err := os.Mkdir(pol, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, f := range testedPolicy() {
		if err := os.WriteFile(filepath.Join(pol, name), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	priv, pub := testKeys(t)
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bundle.tar.gz")
	cmd := exec.Command(opa, "build", "--bundle", "--ignore", "README.md", "--signing-alg", "ES256", "--signing-key", keyFile, "--revision", "opa-7", "-o", out, pol)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opa build: %v\n%s", err, b)
	}
	v := &engine.BundleVerification{PublicKeyPEM: pub}
	src, err := engine.LoadBundleFile(out, v)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.NewFromSource(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	d, pol2 := e.Decide(context.Background(), decision.Request{Action: "deploy"})
	if d.Allow || pol2.Revision != "opa-7" {
		t.Errorf("opa-built bundle: %+v %+v", d, pol2)
	}
	// And the real opa CLI accepts a bundle BuildBundle signed.
	ours := filepath.Join(dir, "ours.tar.gz")
	if err := os.WriteFile(ours, buildBundle(t, testedPolicy(), engine.BuildOptions{Revision: "g1", SigningKeyPEM: priv}), 0o644); err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(dir, "key.pub")
	if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(opa, "build", "--bundle", "--verification-key", pubFile, "--signing-alg", "ES256", "-o", filepath.Join(dir, "re.tar.gz"), ours)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opa build --verification-key on a gatelog bundle: %v\n%s", err, b)
	}
}

func FuzzLoadBundle(f *testing.F) {
	priv, pub := testKeys(f)
	f.Add(buildBundle(f, testedPolicy(), engine.BuildOptions{Revision: "r1", SigningKeyPEM: priv}))
	f.Add(buildBundle(f, testedPolicy(), engine.BuildOptions{Revision: "r1"}))
	f.Add([]byte{0x1f, 0x8b})
	v := &engine.BundleVerification{PublicKeyPEM: pub}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, ver := range []*engine.BundleVerification{nil, v} {
			src, err := engine.LoadBundle(bytes.NewReader(raw), ver, "fuzz")
			if err != nil {
				if !errors.Is(err, engine.ErrPolicy) {
					t.Fatalf("error does not wrap ErrPolicy: %v", err)
				}
				continue
			}
			if _, err := engine.Digest(src.FS); err != nil {
				t.Fatalf("loaded bundle cannot be digested: %v", err)
			}
		}
	})
}

func ExampleLoadBundle() {
	ctx := context.Background()
	priv, pub := testKeys(&testing.T{})
	var bundle bytes.Buffer
	if err := engine.BuildBundle(ctx, &bundle, policyFS(basePolicy), engine.BuildOptions{Revision: "2026-04-01.1", SigningKeyPEM: priv}); err != nil {
		panic(err)
	}
	src, err := engine.LoadBundle(&bundle, &engine.BundleVerification{PublicKeyPEM: pub}, "bundle.tar.gz")
	if err != nil {
		panic(err)
	}
	e, err := engine.NewFromSource(ctx, src)
	if err != nil {
		panic(err)
	}
	d, pol := e.Decide(ctx, decision.Request{Action: "deploy"})
	fmt.Println(d.Allow, d.Reasons, pol.Revision)
	// Output: false [frozen: winter] 2026-04-01.1
}
