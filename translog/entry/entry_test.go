package entry_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/translog/entry"
)

func FuzzParseUUID(f *testing.F) {
	f.Add(strings.Repeat("0", 16) + strings.Repeat("ab", 32))
	f.Add(strings.Repeat("cd", 32))
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		treeID, leaf, err := entry.ParseUUID(s)
		if err != nil {
			return
		}
		// A UUID that parses prints back the same (up to hex case).
		if got := entry.UUID(treeID, leaf); len(s) == 80 && got != strings.ToLower(s) {
			t.Fatalf("UUID(%q) round-trips to %q", s, got)
		}
	})
}

func FuzzParseBody(f *testing.F) {
	body, _ := entry.DSSEBody([]byte(`{"payloadType":"x","payload":"e30=","signatures":[{"sig":"c2ln"}]}`), []byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"))
	f.Add(body)
	f.Add([]byte(`{"kind":"dsse"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := entry.ParseBody(raw)
		if err != nil {
			return
		}
		// Whatever parses re-encodes canonically and parses again.
		c, err := entry.Canonical(b)
		if err != nil {
			return
		}
		b2, err := entry.ParseBody(c)
		if err != nil {
			t.Fatalf("canonical form does not parse: %v", err)
		}
		c2, _ := entry.Canonical(b2)
		if !bytes.Equal(c, c2) {
			t.Fatalf("canonical form is not stable:\n%s\n%s", c, c2)
		}
	})
}
