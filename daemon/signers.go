package daemon

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"

	"github.com/gatelog/gatelog/daemon/api"
	"github.com/gatelog/gatelog/internal/durable"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/verify"
)

// SigningKey is one decision-signing public key and when it signed; the
// key set type lives with the verifier that reads it.
type SigningKey = verify.SigningKey

// SigningKeys is the public key set served at GET /v1/keys; every reader
// (gatelog verify, audit, log, monitor, decide) checks records with it
// through translog/verify.
type SigningKeys = verify.SigningKeys

// ParseSigningKeys decodes a key set (untrusted input).
func ParseSigningKeys(raw []byte) (SigningKeys, error) { return verify.ParseSigningKeys(raw) }

// signerEntry is a SigningKey as kept in SignersFile, with its private key's location.
type signerEntry struct {
	SigningKey
	Ref string `json:"ref"`
}

// signerRing is the daemon's signing keys. The key in use is fixed for
// the life of the process; a rotation is logged at once and takes effect
// at the next start, so every record in one run is signed by one key.
type signerRing struct {
	path string
	mu   sync.Mutex
	keys []signerEntry
}

// openSigners loads SignersFile (creating it for the original key),
// activates a pending rotation, and returns the signer in use.
func openSigners(ctx context.Context, cfg Config, original *ecdsa.PrivateKey) (*receipt.Signer, []byte, *signerRing, error) {
	r := &signerRing{path: filepath.Join(cfg.DataDir, SignersFile)}
	raw, err := os.ReadFile(r.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		s, pem, err := newSigner(original)
		if err != nil {
			return nil, nil, nil, err
		}
		var from time.Time
		if fi, err := os.Stat(filepath.Join(cfg.DataDir, DecisionKeyFile)); err == nil {
			from = fi.ModTime().UTC().Truncate(time.Second)
		}
		r.keys = []signerEntry{{SigningKey: SigningKey{KeyID: s.KeyID(), PublicKey: string(pem), ValidFrom: from}, Ref: DecisionKeyFile}}
		if err := r.saveLocked(r.keys); err != nil {
			return nil, nil, nil, err
		}
		return s, pem, r, nil
	case err != nil:
		return nil, nil, nil, fmt.Errorf("%s: %w", SignersFile, err)
	}
	if err := json.Unmarshal(raw, &struct {
		Keys *[]signerEntry `json:"keys"`
	}{&r.keys}); err != nil || len(r.keys) == 0 {
		return nil, nil, nil, fmt.Errorf("%s is corrupt: %v", SignersFile, err)
	}
	now := cfg.Now().UTC()
	if i := slices.IndexFunc(r.keys, func(e signerEntry) bool { return e.Pending }); i >= 0 {
		keys := slices.Clone(r.keys)
		for j := range keys {
			if !keys[j].Pending && keys[j].ValidUntil.IsZero() {
				keys[j].ValidUntil = now
			}
		}
		keys[i].Pending, keys[i].ValidFrom = false, now
		if err := r.saveLocked(keys); err != nil {
			return nil, nil, nil, err
		}
		r.keys = keys
		cfg.Logger.Info("activated rotated decision-signing key", "key_id", keys[i].KeyID)
	}
	cur := slices.IndexFunc(r.keys, func(e signerEntry) bool { return !e.Pending && e.ValidUntil.IsZero() })
	if cur < 0 {
		return nil, nil, nil, fmt.Errorf("%s has no signing key in use", SignersFile)
	}
	sv, err := loadSignerRef(ctx, cfg.DataDir, r.keys[cur].Ref)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("decision signing key %s: %w", r.keys[cur].KeyID, err)
	}
	s, pem, err := wrapSigner(sv)
	if err != nil {
		return nil, nil, nil, err
	}
	if s.KeyID() != r.keys[cur].KeyID {
		return nil, nil, nil, fmt.Errorf("decision signing key %s: %s holds key %s", r.keys[cur].KeyID, r.keys[cur].Ref, s.KeyID())
	}
	return s, pem, r, nil
}

// loadSignerRef opens a private key: a file under the data directory, or a
// KMS key through sigstore's KMS registry (awskms://, hashivault://, … for
// the providers linked into the binary, or a sigstore-kms-* plugin).
func loadSignerRef(ctx context.Context, dataDir, ref string) (signature.SignerVerifier, error) {
	if strings.Contains(ref, "://") {
		return kms.Get(ctx, ref, crypto.SHA256)
	}
	k, err := loadOrCreateKey(filepath.Join(dataDir, ref))
	if err != nil {
		return nil, err
	}
	return signature.LoadECDSASignerVerifier(k, crypto.SHA256)
}

func wrapSigner(sv signature.SignerVerifier) (*receipt.Signer, []byte, error) {
	s, err := receipt.NewSigner(sv)
	if err != nil {
		return nil, nil, err
	}
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, nil, err
	}
	pem, err := entry.PublicKeyPEM(pub)
	if err != nil {
		return nil, nil, err
	}
	return s, pem, nil
}

func (r *signerRing) saveLocked(keys []signerEntry) error {
	raw, err := json.MarshalIndent(map[string]any{"keys": keys}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return err
	}
	if err := durable.WriteFile(r.path, raw); err != nil {
		return fmt.Errorf("write %s: %w", SignersFile, err)
	}
	return nil
}

// public is the key set without private key locations.
func (r *signerRing) public() SigningKeys {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := SigningKeys{Keys: make([]SigningKey, len(r.keys))}
	for i, e := range r.keys {
		out.Keys[i] = e.SigningKey
	}
	return out
}

func (s *Server) handleSigningKeys(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, s.signers.public())
}

// handleRotateSigner makes a new decision-signing key (a file, or a KMS
// key given by URI), logs its public key in an entry signed by the key in
// use, and stages it to sign from the daemon's next start.
func (s *Server) handleRotateSigner(w http.ResponseWriter, r *http.Request) {
	caller, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	var req api.RotateSignerRequest
	if err := decodeStrict(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	s.signers.mu.Lock()
	defer s.signers.mu.Unlock()
	if slices.ContainsFunc(s.signers.keys, func(e signerEntry) bool { return e.Pending }) {
		writeError(w, http.StatusConflict, "a rotated signing key is already waiting for the daemon's restart")
		return
	}
	ref := req.Signer
	var sv signature.SignerVerifier
	var err error
	if ref == "" {
		sv, ref, err = newKeyFile(s.cfg.DataDir)
	} else {
		sv, err = kms.Get(r.Context(), ref, crypto.SHA256)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "new signing key: %v", err)
		return
	}
	_, pem, err := wrapSigner(sv)
	if err != nil {
		writeError(w, http.StatusBadRequest, "new signing key: %v", err)
		return
	}
	pub, _ := sv.PublicKey()
	id, err := receipt.KeyID(pub)
	if err != nil {
		writeError(w, http.StatusBadRequest, "new signing key: %v", err)
		return
	}
	next := signerEntry{SigningKey: SigningKey{KeyID: id, PublicKey: string(pem), Pending: true}, Ref: ref}
	rc, err := s.logAdminEvent(r.Context(), caller, ActionSignerRotate, decision.Resource{
		System: "gatelog", Kind: "signing_key", Name: id,
		Attributes: map[string]any{"public_key": string(pem), "previous_key_id": s.signer.KeyID(), "kms": strings.Contains(ref, "://")},
	})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "signing key not rotated: %v", err)
		return
	}
	keys := append(slices.Clone(s.signers.keys), next)
	if err := s.signers.saveLocked(keys); err != nil {
		writeError(w, http.StatusServiceUnavailable, "signing key not rotated (its announcement is logged at index %d): %v", rc.LogIndex, err)
		return
	}
	s.signers.keys = keys
	writeJSON(w, http.StatusCreated, api.RotateSignerResponse{Key: next.SigningKey, Receipt: rc})
}

// newKeyFile creates keys/decision-<n>.key (0600) for a rotation.
func newKeyFile(dataDir string) (signature.SignerVerifier, string, error) {
	for n := 2; ; n++ {
		ref := fmt.Sprintf("keys/decision-%d.key", n)
		if _, err := os.Stat(filepath.Join(dataDir, ref)); err == nil {
			continue
		}
		k, err := createKey(filepath.Join(dataDir, ref))
		if err != nil {
			return nil, "", err
		}
		sv, err := signature.LoadECDSASignerVerifier(k, crypto.SHA256)
		return sv, ref, err
	}
}
