package identity_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatelog/gatelog/engine/identity"
)

func TestAPIKeyLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apikeys.json")
	s, err := identity.OpenKeyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	k1, info1, err := s.Create("ci-jenkins", []string{identity.PermDecide}, 90*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	k2, _, err := s.Create("ci-jenkins", []string{identity.PermDecide}, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	// Two active keys per name: a third is refused until one goes.
	if _, _, err := s.Create("ci-jenkins", []string{identity.PermDecide}, 0, now); !errors.Is(err, identity.ErrTooManyKeys) {
		t.Fatalf("third key: %v", err)
	}
	c, err := s.Authenticate(k1, now.Add(time.Hour))
	if err != nil || c.ID != "apikey:ci-jenkins" || !c.Has(identity.PermDecide) || c.Has(identity.PermVouch) {
		t.Fatalf("auth: %+v %v", c, err)
	}
	// Only hashes are stored; the secret never reaches the file.
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), strings.Split(k1, "_")[2]) {
		t.Fatal("secret stored in the key file")
	}
	if _, err := s.Revoke(info1.ID, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(k1, now.Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked key: %v", err)
	}
	if _, err := s.Authenticate(k2, now.Add(2*time.Hour)); err != nil {
		t.Fatalf("the other key stopped working: %v", err)
	}
	if _, _, err := s.Create("ci-jenkins", []string{identity.PermRead}, time.Hour, now.Add(2*time.Hour)); err != nil {
		t.Fatalf("after a revoke there is room again: %v", err)
	}
	k4, _, _ := s.Create("short", []string{identity.PermRead}, time.Minute, now)
	if _, err := s.Authenticate(k4, now.Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired key: %v", err)
	}
	if _, err := s.Revoke("nobody", now); !errors.Is(err, identity.ErrNoSuchKey) {
		t.Fatalf("revoke unknown: %v", err)
	}
	for _, bad := range [][]string{{"root"}, {}} {
		if _, _, err := s.Create("x", bad, 0, now); err == nil {
			t.Errorf("permissions %v accepted", bad)
		}
	}
	// Last use survives a reopen once flushed.
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	s2, err := identity.OpenKeyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	var used int
	for _, k := range s2.List() {
		if !k.LastUsed.IsZero() {
			used++
		}
		if k.ID == info1.ID && (!k.Revoked || k.RevokedAt.IsZero()) {
			t.Errorf("revocation not persisted: %+v", k)
		}
	}
	if used != 2 || len(s2.List()) != 4 {
		t.Errorf("list after reopen: %d keys, %d used", len(s2.List()), used)
	}
}
