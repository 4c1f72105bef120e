package identity

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gatelog/gatelog/internal/durable"
)

// DefaultReplayCacheSize bounds the replay cache when no size is given.
const DefaultReplayCacheSize = 100_000

// ErrReplayed means a token ID was already used.
var ErrReplayed = errors.New("token already used")

// ReplayCache remembers used token IDs until the tokens expire, so each
// token is accepted once. It is bounded: when full of unexpired entries it
// refuses new tokens (fail closed) rather than forget a used one. Every
// use is appended to a file and synced before it counts, so a restart does
// not reopen the window.
//
// The file holds one line per use: the hex SHA-256 of the key, a space,
// and the Unix second after which the entry may be forgotten.
type ReplayCache struct {
	path  string
	max   int
	mu    sync.Mutex
	seen  map[string]int64
	f     *os.File
	lines int
}

// OpenReplayCache loads the cache at path (creating it), dropping expired
// entries. max ≤ 0 means DefaultReplayCacheSize.
func OpenReplayCache(path string, max int, now time.Time) (*ReplayCache, error) {
	if max <= 0 {
		max = DefaultReplayCacheSize
	}
	raw, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("replay cache: %w", err)
	}
	seen, err := parseReplayLog(raw)
	if err != nil {
		return nil, fmt.Errorf("replay cache %s: %w", path, err)
	}
	c := &ReplayCache{path: path, max: max, seen: seen}
	c.prune(now.Unix())
	if err := c.rewrite(); err != nil {
		return nil, err
	}
	return c, nil
}

// parseReplayLog reads the cache file. A torn last line (a crash during
// an append) is ignored; anything else malformed is an error.
func parseReplayLog(raw []byte) (map[string]int64, error) {
	seen := map[string]int64{}
	complete := raw
	if i := bytes.LastIndexByte(raw, '\n'); i < 0 {
		complete = nil
	} else {
		complete = raw[:i+1]
	}
	sc := bufio.NewScanner(bytes.NewReader(complete))
	for n := 1; sc.Scan(); n++ {
		key, exp, ok := bytes.Cut(sc.Bytes(), []byte{' '})
		if !ok || len(key) != 64 {
			return nil, fmt.Errorf("line %d: want \"<64 hex> <unix seconds>\"", n)
		}
		if _, err := hex.DecodeString(string(key)); err != nil {
			return nil, fmt.Errorf("line %d: key is not hex", n)
		}
		t, err := strconv.ParseInt(string(exp), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: expiry is not a Unix time", n)
		}
		if t > seen[string(key)] {
			seen[string(key)] = t
		}
	}
	return seen, sc.Err()
}

func (c *ReplayCache) prune(now int64) {
	for k, exp := range c.seen {
		if exp < now {
			delete(c.seen, k)
		}
	}
}

// rewrite replaces the file with the live entries and reopens it for appending.
func (c *ReplayCache) rewrite() error {
	var b bytes.Buffer
	for k, exp := range c.seen {
		fmt.Fprintf(&b, "%s %d\n", k, exp)
	}
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
	if err := durable.WriteFile(c.path, b.Bytes()); err != nil {
		return fmt.Errorf("replay cache: %w", err)
	}
	f, err := os.OpenFile(c.path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("replay cache: %w", err)
	}
	c.f, c.lines = f, len(c.seen)
	return nil
}

// Use records id (scoped by issuer) as used until forgetAfter. It returns
// ErrReplayed if it was used before, and an error wrapping ErrUnavailable
// if the cache is full or cannot be written; either way the token must be
// refused.
func (c *ReplayCache) Use(issuer, id string, forgetAfter, now time.Time) error {
	sum := sha256.Sum256([]byte(issuer + "\x00" + id))
	key := hex.EncodeToString(sum[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return fmt.Errorf("%w: replay cache is closed", ErrUnavailable)
	}
	if exp, ok := c.seen[key]; ok && exp >= now.Unix() {
		return ErrReplayed
	}
	if len(c.seen) >= c.max {
		c.prune(now.Unix())
		if len(c.seen) >= c.max {
			return fmt.Errorf("%w: replay cache holds %d unexpired tokens", ErrUnavailable, len(c.seen))
		}
	}
	if c.lines > 2*len(c.seen)+1024 {
		c.prune(now.Unix())
		if err := c.rewrite(); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	line := fmt.Sprintf("%s %d\n", key, forgetAfter.Unix())
	if _, err := c.f.WriteString(line); err != nil {
		return fmt.Errorf("%w: replay cache: %w", ErrUnavailable, err)
	}
	if err := c.f.Sync(); err != nil {
		return fmt.Errorf("%w: replay cache: %w", ErrUnavailable, err)
	}
	c.seen[key] = forgetAfter.Unix()
	c.lines++
	return nil
}

// Len is the number of remembered tokens.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// Close closes the file; later uses fail closed.
func (c *ReplayCache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	return err
}
