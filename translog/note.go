package translog

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
)

// noteSigner signs C2SP checkpoints the way Rekor v1 signs its signed
// notes: ECDSA over the SHA-256 of the note text, key hint = the first four
// bytes of the SHA-256 of the key's PKIX DER. It satisfies
// golang.org/x/mod/sumdb/note.Signer, which is what Tessera takes.
type noteSigner struct {
	name string
	hash uint32
	key  crypto.Signer
}

func newNoteSigner(name string, key crypto.Signer) (*noteSigner, error) {
	if _, ok := key.Public().(*ecdsa.PublicKey); !ok {
		return nil, fmt.Errorf("log key must be ECDSA, got %T", key.Public())
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("marshal log key: %w", err)
	}
	sum := sha256.Sum256(der)
	return &noteSigner{name: name, hash: binary.BigEndian.Uint32(sum[:4]), key: key}, nil
}

func (s *noteSigner) Name() string    { return s.name }
func (s *noteSigner) KeyHash() uint32 { return s.hash }

func (s *noteSigner) Sign(msg []byte) ([]byte, error) {
	digest := sha256.Sum256(msg)
	return s.key.Sign(rand.Reader, digest[:], crypto.SHA256)
}
