package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/gatelog/gatelog/internal/durable"
	"github.com/gatelog/gatelog/internal/secretfile"
)

// loadOrCreateKey loads the ECDSA P-256 private key at path, or creates it
// (0600, with the public key in path's .pub sibling) when it does not
// exist. A key file readable by group or others is refused.
func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	switch err := secretfile.CheckOwnerOnly(path); {
	case errors.Is(err, os.ErrNotExist):
		return createKey(path)
	case err != nil:
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(raw, cryptoutils.SkipPassword)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	k, ok := priv.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("key %s must be an ECDSA P-256 key, got %T", path, priv)
	}
	return k, nil
}

func createKey(path string) (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	privPEM, err := cryptoutils.MarshalPrivateKeyToPEM(k)
	if err != nil {
		return nil, err
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(k.Public())
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := writeNew(path, privPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(publicKeyPath(path), pubPEM, 0o644); err != nil {
		return nil, err
	}
	// The key files are fsync'd; their names (and keys/ itself, on first
	// start) are durable only once the directories are.
	if err := durable.SyncDirs(filepath.Dir(path), filepath.Dir(filepath.Dir(path))); err != nil {
		return nil, err
	}
	return k, nil
}

// publicKeyPath turns DIR/name.key into DIR/name.pub.
func publicKeyPath(privPath string) string {
	ext := filepath.Ext(privPath)
	return privPath[:len(privPath)-len(ext)] + ".pub"
}

// writeNew creates path with perm and fails if it already exists.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
