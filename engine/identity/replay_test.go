package identity_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatelog/gatelog/engine/identity"
)

func TestReplayCacheBoundedAndPersistent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replay")
	now := time.Unix(1_700_000_000, 0)
	c, err := identity.OpenReplayCache(path, 3, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if err := c.Use("iss", id, now.Add(time.Minute), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Use("iss", "a", now.Add(time.Minute), now); !errors.Is(err, identity.ErrReplayed) {
		t.Fatalf("replay: %v", err)
	}
	if err := c.Use("other-iss", "a", now.Add(time.Minute), now); err != nil {
		t.Fatalf("same jti from another issuer: %v", err)
	}
	// Full of unexpired entries: refuse rather than forget.
	if err := c.Use("iss", "d", now.Add(time.Minute), now); !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("full cache: %v", err)
	}
	// Once entries expire there is room again.
	later := now.Add(2 * time.Minute)
	if err := c.Use("iss", "d", later.Add(time.Minute), later); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	c.Close()
	if err := c.Use("iss", "e", later, later); !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("closed cache must fail closed: %v", err)
	}
	// A torn last line (crash mid-append) is ignored on reopen.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("deadbeef")
	f.Close()
	c, err = identity.OpenReplayCache(path, 3, later)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Len() != 1 {
		t.Errorf("after reopen %d entries, want 1 (only d is unexpired)", c.Len())
	}
	if err := c.Use("iss", "d", later.Add(time.Minute), later); !errors.Is(err, identity.ErrReplayed) {
		t.Fatalf("replay after reopen: %v", err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o", fi.Mode().Perm())
	}
}
