// Package identity turns what a caller presents — an API key, an OIDC token
// or a TLS client certificate — into a verified Caller with permissions, and
// binds that caller (or the subject it vouches for) into a decision Request.
// Secrets never leave this package: API keys are kept as salted hashes only.
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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatelog/gatelog/internal/durable"
	"github.com/gatelog/gatelog/record/decision"
)

// tokenPrefix starts every gatelog API key, so leaked keys are easy to spot.
const tokenPrefix = "glk_"

// MaxActiveKeysPerName is how many unrevoked, unexpired keys one name may
// have at once: two, so a key can be rotated without downtime.
const MaxActiveKeysPerName = 2

// ErrTooManyKeys means a name already has MaxActiveKeysPerName active keys.
var ErrTooManyKeys = errors.New("too many active keys")

// ErrNoSuchKey means no active key matches a name or ID.
var ErrNoSuchKey = errors.New("no such active key")

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
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	LastUsed    time.Time `json:"last_used,omitzero"`
}

// Info is what may be shown about a key: everything but salt and hash.
type Info struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Permissions []string  `json:"permissions"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires,omitzero"`
	Revoked     bool      `json:"revoked,omitempty"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	LastUsed    time.Time `json:"last_used,omitzero"`
}

// Info drops the secret material.
func (k APIKey) Info() Info {
	return Info{ID: k.ID, Name: k.Name, Permissions: k.Permissions, Created: k.Created, Expires: k.Expires,
		Revoked: k.Revoked, RevokedAt: k.RevokedAt, LastUsed: k.LastUsed}
}

// active reports whether the key can still authenticate at now.
func (k APIKey) active(now time.Time) bool {
	return !k.Revoked && (k.Expires.IsZero() || now.Before(k.Expires))
}

// KeyStore is a file of API keys (0600). It is safe for concurrent use.
// The daemon is its only writer: key administration goes through the
// daemon's API, so a revocation takes effect on the next request.
type KeyStore struct {
	path string
	mu   sync.RWMutex
	keys []APIKey

	// lastUsed is updated on every use and written with the next save
	// (or Flush), so authentication never waits for a file write.
	useMu    sync.Mutex
	lastUsed map[string]time.Time
}

// OpenKeyStore reads the key file at path, creating an empty store if it
// does not exist.
func OpenKeyStore(path string) (*KeyStore, error) {
	s := &KeyStore{path: path, lastUsed: map[string]time.Time{}}
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

// Create makes a new key, stores its hash and returns its secret, which is
// shown once and never stored. A zero ttl means the key does not expire.
func (s *KeyStore) Create(name string, perms []string, ttl time.Duration, now time.Time) (string, APIKey, error) {
	secret, k, err := s.NewKey(name, perms, ttl, now)
	if err != nil {
		return "", APIKey{}, err
	}
	if err := s.Add(k, now); err != nil {
		return "", APIKey{}, err
	}
	return secret, k, nil
}

// NewKey generates a key without storing it, after checking that the name
// may have another key. Add stores it; the split lets the daemon log the
// creation before the key can be used.
func (s *KeyStore) NewKey(name string, perms []string, ttl time.Duration, now time.Time) (string, APIKey, error) {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, " \t\n_/") {
		return "", APIKey{}, fmt.Errorf("key name %q must be 1-64 characters without spaces, '/' or '_'", name)
	}
	if len(perms) == 0 {
		return "", APIKey{}, fmt.Errorf("key %q needs at least one permission (%s)", name, strings.Join(validPerms, ", "))
	}
	for _, p := range perms {
		if !slices.Contains(validPerms, p) {
			return "", APIKey{}, fmt.Errorf("unknown permission %q (want one of %s)", p, strings.Join(validPerms, ", "))
		}
	}
	if ttl < 0 {
		return "", APIKey{}, fmt.Errorf("key %q: expiry must be in the future", name)
	}
	if err := s.checkRoom(name, now); err != nil {
		return "", APIKey{}, err
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
	k := APIKey{ID: id, Name: name, Salt: salt, Hash: hashSecret(salt, secret), Permissions: slices.Clone(perms), Created: now.UTC()}
	if ttl > 0 {
		k.Expires = now.Add(ttl).UTC()
	}
	return tokenPrefix + id + "_" + secret, k, nil
}

func (s *KeyStore) checkRoom(name string, now time.Time) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.checkRoomLocked(name, now)
}

func (s *KeyStore) checkRoomLocked(name string, now time.Time) error {
	n := 0
	for _, k := range s.keys {
		if k.Name == name && k.active(now) {
			n++
		}
	}
	if n >= MaxActiveKeysPerName {
		return fmt.Errorf("%w: %q already has %d active keys; revoke one (gatelog keys revoke ID) before creating another", ErrTooManyKeys, name, n)
	}
	return nil
}

// Add stores a key made by NewKey, checking the two-keys-per-name rule again.
func (s *KeyStore) Add(k APIKey, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkRoomLocked(k.Name, now); err != nil {
		return err
	}
	keys := append(slices.Clone(s.keys), k)
	if err := s.saveLocked(keys); err != nil {
		return err
	}
	s.keys = keys
	return nil
}

// Match returns the active keys that ref names, by ID or by name.
func (s *KeyStore) Match(ref string, now time.Time) []Info {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Info
	for _, k := range s.keys {
		if (k.ID == ref || k.Name == ref) && k.active(now) {
			out = append(out, k.Info())
		}
	}
	return out
}

// Revoke revokes every active key whose ID or name is ref, at once: the
// next request with any of them is refused.
func (s *KeyStore) Revoke(ref string, now time.Time) ([]Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := slices.Clone(s.keys)
	var revoked []Info
	for i, k := range keys {
		if (k.ID == ref || k.Name == ref) && k.active(now) {
			keys[i].Revoked = true
			keys[i].RevokedAt = now.UTC()
			revoked = append(revoked, keys[i].Info())
		}
	}
	if len(revoked) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrNoSuchKey, ref)
	}
	if err := s.saveLocked(keys); err != nil {
		return nil, err
	}
	s.keys = keys
	return revoked, nil
}

// List returns every key (revoked and expired ones too) without secrets,
// oldest first, with its last use.
func (s *KeyStore) List() []Info {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.useMu.Lock()
	defer s.useMu.Unlock()
	out := make([]Info, len(s.keys))
	for i, k := range s.keys {
		out[i] = k.Info()
		if t, ok := s.lastUsed[k.ID]; ok && t.After(out[i].LastUsed) {
			out[i].LastUsed = t
		}
	}
	return out
}

// Flush writes pending last-use times to the file.
func (s *KeyStore) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.useMu.Lock()
	pending := len(s.lastUsed)
	s.useMu.Unlock()
	if pending == 0 {
		return nil
	}
	return s.saveLocked(slices.Clone(s.keys))
}

// saveLocked merges pending last-use times into keys and writes them.
func (s *KeyStore) saveLocked(keys []APIKey) error {
	s.useMu.Lock()
	for i := range keys {
		if t, ok := s.lastUsed[keys[i].ID]; ok && t.After(keys[i].LastUsed) {
			keys[i].LastUsed = t
		}
	}
	s.useMu.Unlock()
	raw, err := json.MarshalIndent(keys, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(s.path, raw); err != nil {
		return fmt.Errorf("write API key store: %w", err)
	}
	s.useMu.Lock()
	clear(s.lastUsed)
	s.useMu.Unlock()
	return nil
}

// Authenticate checks a presented API key.
func (s *KeyStore) Authenticate(token string, now time.Time) (Caller, error) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return Caller{}, authError(KindAPIKey, ReasonMalformed, "not a gatelog API key")
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || id == "" || secret == "" {
		return Caller{}, authError(KindAPIKey, ReasonMalformed, "malformed API key")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, k := range s.keys {
		if k.ID != id {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(hashSecret(k.Salt, secret)), []byte(k.Hash)) != 1 {
			return Caller{}, authError(KindAPIKey, ReasonInvalid, "invalid API key")
		}
		if k.Revoked {
			return Caller{}, authError(KindAPIKey, ReasonRevoked, "API key %q (%s) is revoked", k.Name, k.ID)
		}
		if !k.Expires.IsZero() && !now.Before(k.Expires) {
			return Caller{}, authError(KindAPIKey, ReasonExpired, "API key %q (%s) expired at %s", k.Name, k.ID, k.Expires.Format(time.RFC3339))
		}
		s.useMu.Lock()
		s.lastUsed[k.ID] = now.UTC().Truncate(time.Second)
		s.useMu.Unlock()
		c := Caller{
			Caller:      decision.Caller{ID: "apikey:" + k.Name, Kind: KindAPIKey},
			Permissions: slices.Clone(k.Permissions),
			Created:     k.Created,
			Expires:     k.Expires,
		}
		c.Subject = decision.Subject{ID: c.ID, Kind: KindAPIKey}
		return c, nil
	}
	return Caller{}, authError(KindAPIKey, ReasonInvalid, "invalid API key")
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

// ParseTTL reads a key lifetime: a Go duration ("12h", "90m") or a number
// of days ("90d"); "" means no expiry.
func ParseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 3650 {
			return 0, fmt.Errorf("%q: want a number of days between 1 and 3650, like \"90d\"", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration like \"90d\" or \"12h\"", s)
	}
	return d, nil
}
