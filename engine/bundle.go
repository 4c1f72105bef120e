package engine

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader"
)

// MaxBundleBytes bounds a policy bundle, compressed and per file.
const MaxBundleBytes = 64 << 20

// DefaultBundleKeyID is the key ID `opa build` signs with unless told
// otherwise; gatelog uses the same default so either tool's bundles verify.
const DefaultBundleKeyID = "default"

// bundleAlg is the only signature algorithm gatelog accepts for bundles.
const bundleAlg = "ES256"

// BundleVerification says which key a bundle's .signatures.json must be
// signed with. A bundle without signatures is refused.
type BundleVerification struct {
	// PublicKeyPEM is the ECDSA P-256 public key (PKIX PEM).
	PublicKeyPEM []byte
	// KeyID names the key in the signature; empty means DefaultBundleKeyID.
	KeyID string
}

// LoadBundleVerificationKey reads an ECDSA P-256 public key file for
// bundle verification and checks it is one.
func LoadBundleVerificationKey(file string) (*BundleVerification, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("bundle verification key: %w", err)
	}
	blk, _ := pem.Decode(raw)
	if blk == nil {
		return nil, fmt.Errorf("bundle verification key %s: no PEM block", file)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("bundle verification key %s: %v", file, err)
	}
	if k, ok := pub.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("bundle verification key %s: want an ECDSA P-256 public key (ES256), got %T", file, pub)
	}
	return &BundleVerification{PublicKeyPEM: raw}, nil
}

func (v *BundleVerification) config() *bundle.VerificationConfig {
	id := v.KeyID
	if id == "" {
		id = DefaultBundleKeyID
	}
	keys := map[string]*bundle.KeyConfig{id: {Key: string(v.PublicKeyPEM), Algorithm: bundleAlg}}
	return bundle.NewVerificationConfig(keys, id, "", nil)
}

// LoadBundle reads an OPA bundle (tar.gz). With v, its .signatures.json
// must verify with v's key and cover every file, or the bundle is
// refused; without v, a signed bundle is refused too, since
// its signature cannot be checked. The manifest revision becomes the
// Source's Revision. origin describes where the bytes came from.
func LoadBundle(r io.Reader, v *BundleVerification, origin string) (Source, error) {
	raw, err := io.ReadAll(io.LimitReader(r, MaxBundleBytes+1))
	if err != nil {
		return Source{}, fmt.Errorf("%w: reading bundle %s: %w", ErrPolicy, origin, err)
	}
	if len(raw) > MaxBundleBytes {
		return Source{}, fmt.Errorf("%w: bundle %s is larger than %d bytes", ErrPolicy, origin, MaxBundleBytes)
	}
	rd := bundle.NewReader(bytes.NewReader(raw)).WithSizeLimitBytes(MaxBundleBytes).WithRegoVersion(ast.RegoV1)
	if v != nil {
		rd = rd.WithBundleVerificationConfig(v.config())
	}
	b, err := rd.Read()
	if err != nil {
		hint := ""
		if v == nil && strings.Contains(err.Error(), "verification key not provided") {
			hint = " (the bundle is signed: give the key to verify it with)"
		}
		return Source{}, fmt.Errorf("%w: bundle %s: %w%s", ErrPolicy, origin, err, hint)
	}
	if b.Type() != bundle.SnapshotBundleType {
		return Source{}, fmt.Errorf("%w: bundle %s is a %s bundle; only snapshot bundles hold a whole policy", ErrPolicy, origin, b.Type())
	}
	if len(b.WasmModules) > 0 || len(b.PlanModules) > 0 || len(b.Wasm) > 0 {
		return Source{}, fmt.Errorf("%w: bundle %s holds Wasm or plan modules; gatelog evaluates Rego only", ErrPolicy, origin)
	}
	files := fstest.MapFS{}
	for _, m := range b.Modules {
		p := strings.TrimPrefix(path.Clean("/"+m.Path), "/")
		if !fs.ValidPath(p) || p == "." {
			return Source{}, fmt.Errorf("%w: bundle %s: module path %q is not a clean relative path", ErrPolicy, origin, m.Path)
		}
		if _, dup := files[p]; dup {
			return Source{}, fmt.Errorf("%w: bundle %s holds %s twice", ErrPolicy, origin, p)
		}
		files[p] = &fstest.MapFile{Data: m.Raw, Mode: 0o444}
	}
	if len(b.Data) > 0 {
		// Encoded as OPA's bundle writer writes data.json, so a bundle
		// from `opa build` or BuildBundle digests to its own file's bytes.
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(b.Data); err != nil {
			return Source{}, fmt.Errorf("%w: bundle %s: data: %w", ErrPolicy, origin, err)
		}
		if _, dup := files["data.json"]; dup {
			return Source{}, fmt.Errorf("%w: bundle %s holds data.json twice", ErrPolicy, origin)
		}
		files["data.json"] = &fstest.MapFile{Data: buf.Bytes(), Mode: 0o444}
	}
	return Source{FS: files, Revision: b.Manifest.Revision, Origin: "bundle " + origin}, nil
}

// LoadBundleFile reads the bundle at file (see LoadBundle).
func LoadBundleFile(file string, v *BundleVerification) (Source, error) {
	f, err := os.Open(file)
	if err != nil {
		return Source{}, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	defer f.Close()
	return LoadBundle(f, v, file)
}

// BuildOptions configures BuildBundle.
type BuildOptions struct {
	// Revision goes into the manifest; decisions record it.
	Revision string
	// SigningKeyPEM, if set, is the ECDSA P-256 private key (PEM) whose
	// ES256 signature over every file goes into .signatures.json.
	SigningKeyPEM []byte
	// KeyID names the signing key; empty means DefaultBundleKeyID.
	KeyID string
}

// BuildBundle writes the policies in src as an OPA bundle (tar.gz), the
// same format `opa build` writes: the Rego modules as they are, all data
// merged into /data.json, a .manifest with the revision and, with a
// signing key, .signatures.json. The policies must compile first.
func BuildBundle(ctx context.Context, w io.Writer, src fs.FS, opts BuildOptions) error {
	if _, err := compile(ctx, src); err != nil {
		return err
	}
	res, err := loader.NewFileLoader().WithFS(src).Filtered([]string{"."}, func(_ string, info fs.FileInfo, _ int) bool {
		return !info.IsDir() && !policyFile(info.Name())
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: opts.Revision},
		Data:     res.Documents,
	}
	if b.Data == nil {
		b.Data = map[string]any{}
	}
	b.Manifest.Init()
	b.Manifest.SetRegoVersion(ast.RegoV1)
	names := make([]string, 0, len(res.Modules))
	for name := range res.Modules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		m := res.Modules[name]
		p := "/" + strings.TrimPrefix(path.Clean("/"+name), "/")
		b.Modules = append(b.Modules, bundle.ModuleFile{URL: p, Path: p, Raw: m.Raw, Parsed: m.Parsed})
	}
	if len(opts.SigningKeyPEM) > 0 {
		if !bytes.HasPrefix(bytes.TrimSpace(opts.SigningKeyPEM), []byte("-----BEGIN")) {
			return errors.New("bundle signing key: not a PEM private key")
		}
		id := opts.KeyID
		if id == "" {
			id = DefaultBundleKeyID
		}
		sc := bundle.NewSigningConfig(string(bytes.TrimSpace(opts.SigningKeyPEM)), bundleAlg, "")
		if err := b.GenerateSignature(sc, id, false); err != nil {
			return fmt.Errorf("sign bundle: %w", err)
		}
	}
	if err := bundle.NewWriter(w).Write(b); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	return nil
}
