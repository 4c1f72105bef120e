// Package identity turns what a caller presents (an API key today) into a
// verified Caller with permissions. Secrets never leave this package: the
// key store keeps only a salted SHA-256 of each key, and a presented key is
// compared in constant time.
package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatelog/gatelog/engine/decision"
)

// Permissions an API key may carry.
const (
	PermDecide = "decide" // ask for decisions about itself
	PermVouch  = "vouch"  // assert a subject on someone else's behalf
	PermAdmin  = "admin"
	PermRead   = "read"
)

var validPerms = []string{PermDecide, PermVouch, PermAdmin, PermRead}

// Sentinel errors.
var (
	// ErrUnauthenticated means no valid credential was presented.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden means the caller lacks a permission.
	ErrForbidden = errors.New("forbidden")
)

// tokenPrefix starts every gatelog API key, so leaked keys are easy to spot.
const tokenPrefix = "glk_"

// APIKey is a stored key: its secret is kept only as a salted hash.
type APIKey struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Salt        string    `json:"salt"`
	Hash        string    `json:"hash"`
	Permissions []string  `json:"permissions"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires,omitzero"`
	Revoked     bool      `json:"revoked,omitempty"`
}

// Caller is an authenticated caller.
type Caller struct {
	decision.Caller
	Permissions []string
	// Created is when the credential was issued; Expires when it lapses.
	Created time.Time
	Expires time.Time
}

// Has reports whether the caller holds perm (admin holds all).
func (c Caller) Has(perm string) bool {
	return slices.Contains(c.Permissions, perm) || slices.Contains(c.Permissions, PermAdmin)
}

// KeyStore is a file of API keys (0600). It is safe for concurrent use.
type KeyStore struct {
	path string
	mu   sync.RWMutex
	keys []APIKey
}

// OpenKeyStore reads the key file at path, creating an empty store if it
// does not exist.
func OpenKeyStore(path string) (*KeyStore, error) {
	s := &KeyStore{path: path}
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("read API key store: %w", err)
	}
	if err := json.Unmarshal(raw, &s.keys); err != nil {
		return nil, fmt.Errorf("API key store %s is corrupt: %w", filepath.Base(path), err)
	}
	return s, nil
}

// Len is the number of stored keys, revoked ones included.
func (s *KeyStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.keys)
}

// Create makes a new key and returns its secret, which is shown once and
// never stored. A zero ttl means the key does not expire.
func (s *KeyStore) Create(name string, perms []string, ttl time.Duration, now time.Time) (string, APIKey, error) {
	if name == "" || strings.ContainsAny(name, " \t\n_") {
		return "", APIKey{}, fmt.Errorf("key name %q must be non-empty without spaces or underscores", name)
	}
	for _, p := range perms {
		if !slices.Contains(validPerms, p) {
			return "", APIKey{}, fmt.Errorf("unknown permission %q (want one of %s)", p, strings.Join(validPerms, ", "))
		}
	}
	id, err := randomHex(8)
	if err != nil {
		return "", APIKey{}, err
	}
	secret, err := randomHex(24)
	if err != nil {
		return "", APIKey{}, err
	}
	salt, err := randomHex(16)
	if err != nil {
		return "", APIKey{}, err
	}
	k := APIKey{ID: id, Name: name, Salt: salt, Hash: hashSecret(salt, secret), Permissions: perms, Created: now.UTC()}
	if ttl > 0 {
		k.Expires = now.Add(ttl).UTC()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := append(slices.Clone(s.keys), k)
	if err := s.save(keys); err != nil {
		return "", APIKey{}, err
	}
	s.keys = keys
	return tokenPrefix + id + "_" + secret, k, nil
}

func (s *KeyStore) save(keys []APIKey) error {
	raw, err := json.MarshalIndent(keys, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write API key store: %w", err)
	}
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return fmt.Errorf("write API key store: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write API key store: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write API key store: %w", err)
	}
	return os.Rename(tmp, s.path)
}

// Authenticate checks a presented API key.
func (s *KeyStore) Authenticate(token string, now time.Time) (Caller, error) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return Caller{}, fmt.Errorf("%w: not a gatelog API key", ErrUnauthenticated)
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || id == "" || secret == "" {
		return Caller{}, fmt.Errorf("%w: malformed API key", ErrUnauthenticated)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, k := range s.keys {
		if k.ID != id {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(hashSecret(k.Salt, secret)), []byte(k.Hash)) != 1 {
			return Caller{}, fmt.Errorf("%w: invalid API key", ErrUnauthenticated)
		}
		if k.Revoked {
			return Caller{}, fmt.Errorf("%w: API key %q is revoked", ErrUnauthenticated, k.Name)
		}
		if !k.Expires.IsZero() && now.After(k.Expires) {
			return Caller{}, fmt.Errorf("%w: API key %q expired at %s", ErrUnauthenticated, k.Name, k.Expires.Format(time.RFC3339))
		}
		return Caller{
			Caller:      decision.Caller{ID: "apikey:" + k.Name, Kind: "api_key"},
			Permissions: k.Permissions,
			Created:     k.Created,
			Expires:     k.Expires,
		}, nil
	}
	return Caller{}, fmt.Errorf("%w: invalid API key", ErrUnauthenticated)
}

func hashSecret(salt, secret string) string {
	sum := sha256.Sum256([]byte(salt + ":" + secret))
	return hex.EncodeToString(sum[:])
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
