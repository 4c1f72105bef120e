package entry_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"

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

// FuzzCanonicalIsRFC8785: Canonical's output is exactly what the RFC 8785
// canonicalizer makes of the body, whatever the strings hold (the fast
// path for plain strings must never differ from it).
func FuzzCanonicalIsRFC8785(f *testing.F) {
	f.Add("MEUCIQDx+/=", "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0=", "ab12")
	f.Add("sig\"with\\quotes", "\u2028<&>", "\b\f\x01")
	f.Add("é", "\x7f", "")
	f.Fuzz(func(t *testing.T, sig, verifier, hash string) {
		b := entry.Body{APIVersion: entry.APIVersion, Kind: entry.Kind, Spec: entry.BodySpec{
			EnvelopeHash: entry.Hash{Algorithm: "sha256", Value: hash},
			PayloadHash:  entry.Hash{Algorithm: "sha256", Value: hash},
			Signatures:   []entry.Signature{{Signature: sig, Verifier: verifier}, {Signature: verifier, Verifier: sig}},
		}}
		got, err := entry.Canonical(b)
		if err != nil {
			return
		}
		// The canonicalizer sorts nothing in arrays: sort as Canonical does.
		var sorted entry.Body
		if err := json.Unmarshal(got, &sorted); err != nil {
			t.Fatalf("Canonical made invalid JSON %q: %v", got, err)
		}
		raw, err := json.Marshal(sorted)
		if err != nil {
			t.Fatal(err)
		}
		want, err := jsoncanonicalizer.Transform(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Canonical = %q\nRFC 8785  = %q", got, want)
		}
	})
}
