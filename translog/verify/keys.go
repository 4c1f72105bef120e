package verify

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog/entry"
)

// ValidityGrace absorbs decisions signed just before a rotation and
// integrated into the log just after it: a key is accepted for entries
// integrated up to this long outside its window.
const ValidityGrace = time.Minute

// Key-set failures, wrapped in a *CheckError of [CheckSignerKey].
var (
	// ErrUnknownKey: the record names a key that is not in the key set.
	ErrUnknownKey = errors.New("not in the signing key set")
	// ErrKeyNotValid: the key was not valid when the log integrated the
	// entry (before it was activated, after it was retired, or never used).
	ErrKeyNotValid = errors.New("not valid when the entry was logged")
)

// SigningKey is one decision-signing public key and when it signed.
type SigningKey struct {
	KeyID     string    `json:"key_id"`
	PublicKey string    `json:"public_key"`
	ValidFrom time.Time `json:"valid_from,omitzero"`
	// ValidUntil is zero for the key in use.
	ValidUntil time.Time `json:"valid_until,omitzero"`
	// Pending keys are rotated in but start signing at the daemon's next start.
	Pending bool `json:"pending,omitempty"`
}

// SigningKeys is a daemon's decision-signing key set, as served at GET
// /v1/keys: every key it has used, each with its validity window. A record
// verifies only with the key it names, valid at the time the log
// integrated it (a time the SET proves).
type SigningKeys struct {
	Keys []SigningKey `json:"keys"`
}

// ParseSigningKeys decodes a key set (untrusted input) and checks each
// key's ID is its public key's.
func ParseSigningKeys(raw []byte) (SigningKeys, error) {
	var ks SigningKeys
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&ks); err != nil {
		return ks, fmt.Errorf("not a gatelog signing key set: %w", err)
	}
	if len(ks.Keys) == 0 {
		return ks, errors.New("the signing key set has no keys")
	}
	for i, k := range ks.Keys {
		if _, err := k.publicKey(); err != nil {
			return ks, fmt.Errorf("keys[%d]: %w", i, err)
		}
	}
	return ks, nil
}

// KeySet is the key set of one key valid at all times: what a caller who
// pinned a single --signer-key trusts.
func KeySet(pub crypto.PublicKey) (SigningKeys, error) {
	id, err := receipt.KeyID(pub)
	if err != nil {
		return SigningKeys{}, err
	}
	pem, err := entry.PublicKeyPEM(pub)
	if err != nil {
		return SigningKeys{}, err
	}
	return SigningKeys{Keys: []SigningKey{{KeyID: id, PublicKey: string(pem)}}}, nil
}

func (k SigningKey) publicKey() (crypto.PublicKey, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(k.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", k.KeyID, err)
	}
	if id, err := receipt.KeyID(pub); err != nil || id != k.KeyID {
		return nil, fmt.Errorf("signing key %s: the public key's ID is %s", k.KeyID, id)
	}
	return pub, nil
}

// ValidAt reports whether the key may have signed an entry the log
// integrated at t (allowing [ValidityGrace] at both ends).
func (k SigningKey) ValidAt(t time.Time) error {
	switch {
	case k.Pending:
		return fmt.Errorf("%w: signing key %s was never in use", ErrKeyNotValid, k.KeyID)
	case !k.ValidFrom.IsZero() && t.Before(k.ValidFrom.Add(-ValidityGrace)):
		return fmt.Errorf("%w: signing key %s is valid from %s, the entry was logged at %s", ErrKeyNotValid, k.KeyID, k.ValidFrom.Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	case !k.ValidUntil.IsZero() && t.After(k.ValidUntil.Add(ValidityGrace)):
		return fmt.Errorf("%w: signing key %s was retired at %s, the entry was logged at %s", ErrKeyNotValid, k.KeyID, k.ValidUntil.Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	return nil
}

// Select returns the public key with keyID, checking that it was valid at
// the time the log integrated the entry. Its errors wrap [ErrUnknownKey]
// or [ErrKeyNotValid].
func (ks SigningKeys) Select(keyID string, integrated time.Time) (crypto.PublicKey, error) {
	for _, k := range ks.Keys {
		if k.KeyID != keyID {
			continue
		}
		if err := k.ValidAt(integrated); err != nil {
			return nil, err
		}
		return k.publicKey()
	}
	return nil, fmt.Errorf("%w: signing key %s", ErrUnknownKey, keyID)
}

// SelectPEM is [SigningKeys.Select] for the key a log entry's body names
// by its PEM.
func (ks SigningKeys) SelectPEM(pem []byte, integrated time.Time) (crypto.PublicKey, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem)
	if err != nil {
		return nil, fmt.Errorf("%w: the entry names no valid public key: %w", ErrUnknownKey, err)
	}
	id, err := receipt.KeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnknownKey, err)
	}
	return ks.Select(id, integrated)
}
