package translog

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
)

// noteSigner signs C2SP checkpoints the way Rekor v1 signs its signed
// notes: ECDSA over the SHA-256 of the note text, key hint = the first four
// bytes of the SHA-256 of the key's PKIX DER. It satisfies
// golang.org/x/mod/sumdb/note.Signer, which is what Tessera takes.
//
// It never signs a checkpoint smaller than floor, the largest tree the log
// has published: Tessera, finding no tree state under a published log,
// starts an empty tree and publishes it, and the log key must not sign
// that rollback. Open sets floor from the published checkpoint before
// Tessera starts; refused records that a rollback was refused.
type noteSigner struct {
	name    string
	hash    uint32
	key     crypto.Signer
	floor   atomic.Uint64
	refused atomic.Bool
}

// errRollback is a refusal to sign a checkpoint below the floor.
var errRollback = errors.New("refusing to sign a checkpoint smaller than one the log has published")

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
	// A checkpoint body is "<origin>\n<size>\n<root hash>\n[extensions]".
	lines := bytes.SplitN(msg, []byte("\n"), 3)
	if len(lines) == 3 {
		size, err := strconv.ParseUint(string(lines[1]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("checkpoint size %q: %w", lines[1], err)
		}
		if floor := s.floor.Load(); size < floor {
			s.refused.Store(true)
			return nil, fmt.Errorf("%w: size %d, published %d", errRollback, size, floor)
		}
		defer func() {
			for {
				cur := s.floor.Load()
				if size <= cur || s.floor.CompareAndSwap(cur, size) {
					return
				}
			}
		}()
	}
	digest := sha256.Sum256(msg)
	return s.key.Sign(rand.Reader, digest[:], crypto.SHA256)
}
