package receipt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatelog/gatelog/record/decision"
)

// canonicalRequests are requests whose canonical form the direct writer
// must get exactly right: every field set, keys that sort differently in
// UTF-16 than in UTF-8, strings with every kind of escape, numbers in
// each of JCS's forms.
func canonicalRequests() []decision.Request {
	tricky := "q\"b\\s/<>&\u2028\u2029\x00\x01\x08\x09\x0a\x0c\x0d\x1f\x7f é 😀 \ufffd"
	full := decision.Request{
		Subject: decision.Subject{
			ID: "alice", Kind: "user", Issuer: "https://issuer.example", Groups: []string{"ops", tricky, ""},
			MFA: true, AuthTime: "2026-12-06T10:00:00Z", TokenAgeS: 1<<53 - 1, CredentialExpiresAt: "2026-12-06T11:00:00Z",
			Verified: true, AssertedBy: "apikey:ci",
			Claims: map[string]any{"break_glass": true, "amr": []any{"pwd", "otp"}, "n": 3.0, "nil": nil, "": "empty key"},
		},
		Action: "deploy",
		Resource: decision.Resource{
			System: "github", Kind: "environment", Name: "prod", Namespace: "ns", Environment: "production",
			Repository: "acme/shop", Ref: "refs/heads/main",
			Attributes: map[string]any{
				"\uffff": 1.0, "😀": 2.0, "\ue000": 3.0, "a": map[string]any{"z": []any{}, "y": map[string]any{}, "x": nil},
				"nums": []any{0.0, math.Copysign(0, -1), 1.5, -1e21, 1e21, 1e-7, 1e-6, 123456789012345680000.0, 5e-324, math.MaxFloat64, 0.1, 100.0, 1e300},
				tricky: tricky, "strs": []string{"a", "b"}, "nilstrs": []string(nil), "nilmap": map[string]any(nil), "nilarr": []any(nil),
			},
		},
		Context: decision.Context{
			Time: "2026-12-06T10:00:00Z", SourceIP: "10.0.0.1",
			Change:           &decision.Change{ID: "pr-1", Author: "bob", Approvers: []string{"carol", "dave"}},
			BreakGlassReason: "incident", History: &decision.History{PrivilegedActionsUsed: []string{"deploy"}},
			DryRun: true, Unverified: map[string]any{"commit_author": "mallory", "source": map[string]any{"adapter": "x"}},
		},
		Source: decision.Source{Adapter: "github", AdapterVersion: "1.0", RequestID: "r-1"},
	}
	return []decision.Request{
		{},
		{Action: "deploy"},
		full,
		{Action: "x", Context: decision.Context{Change: &decision.Change{}, History: &decision.History{}}},
		{Action: "x", Subject: decision.Subject{TokenAgeS: -(1<<53 - 1), Groups: []string{}}, Resource: decision.Resource{Attributes: map[string]any{}}},
	}
}

// The direct canonical form of a request is byte for byte what the RFC
// 8785 canonicalizer makes of its JSON.
func TestCanonicalRequestMatchesCanonicalizer(t *testing.T) {
	for i, req := range canonicalRequests() {
		got, ok := appendCanonicalRequest(nil, req)
		if !ok {
			t.Fatalf("request %d: the direct writer gave up", i)
		}
		want, err := canonicalRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("request %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// What the direct writer does not write itself goes through the
// canonicalizer, and the digest is the same either way.
func TestCanonicalRequestFallsBack(t *testing.T) {
	cases := map[string]decision.Request{
		"invalid UTF-8":            {Action: "a\xffb"},
		"integer beyond 2^53":      {Action: "a", Subject: decision.Subject{TokenAgeS: 1 << 60}},
		"type no decoder produces": {Action: "a", Context: decision.Context{Unverified: map[string]any{"history": &decision.History{PrivilegedActionsUsed: []string{"deploy"}}}}},
		"int value":                {Action: "a", Resource: decision.Resource{Attributes: map[string]any{"n": 7}}},
	}
	for name, req := range cases {
		if _, ok := appendCanonicalRequest(nil, req); ok {
			t.Errorf("%s: the direct writer wrote it", name)
			continue
		}
		want, err := canonicalRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := RequestDigest(req)
		if err != nil {
			t.Fatal(err)
		}
		if got != sha256Hex(want) {
			t.Errorf("%s: digest %s, want %s", name, got, sha256Hex(want))
		}
	}
	// A number JSON cannot hold is an error, as json.Marshal makes it.
	if _, err := RequestDigest(decision.Request{Action: "a", Resource: decision.Resource{Attributes: map[string]any{"n": math.NaN()}}}); err == nil {
		t.Error("NaN digested")
	}
}

// FuzzCanonicalRequest: for any request the decoder accepts, the direct
// canonical form is the canonicalizer's.
func FuzzCanonicalRequest(f *testing.F) {
	for _, req := range canonicalRequests() {
		if raw, err := json.Marshal(req); err == nil {
			f.Add(raw)
		}
	}
	if files, _ := filepath.Glob("../../examples/requests/*.json"); len(files) > 0 {
		for _, file := range files {
			if raw, err := os.ReadFile(file); err == nil {
				f.Add(raw)
			}
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := decision.ParseRequest(raw)
		if err != nil {
			return
		}
		want, werr := canonicalRequest(req)
		got, ok := appendCanonicalRequest(nil, req)
		if !ok {
			return
		}
		if werr != nil {
			t.Fatalf("direct writer wrote %s, canonicalizer failed: %v", got, werr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// BenchmarkRequestDigest: the example production deploy's digest, written
// directly and through the canonicalizer.
func BenchmarkRequestDigest(b *testing.B) {
	raw, err := os.ReadFile("../../examples/requests/deploy-prod.json")
	if err != nil {
		b.Fatal(err)
	}
	req, err := decision.ParseRequest(raw)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := RequestDigest(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("canonicalizer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			canon, err := canonicalRequest(req)
			if err != nil {
				b.Fatal(err)
			}
			_ = sha256Hex(canon)
		}
	})
}
