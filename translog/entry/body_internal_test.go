package entry

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

// A plain body's direct JSON is byte for byte what the canonicalizer
// makes of it, and a body that is not plain still goes through the
// canonicalizer.
func TestPlainBodyIsCanonical(t *testing.T) {
	pem := base64.StdEncoding.EncodeToString([]byte("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"))
	hash := Hash{Algorithm: "sha256", Value: strings.Repeat("0f", 32)}
	bodies := []Body{
		{},
		{APIVersion: APIVersion, Kind: Kind, Spec: BodySpec{EnvelopeHash: hash, PayloadHash: hash}},
		{APIVersion: APIVersion, Kind: Kind, Spec: BodySpec{EnvelopeHash: hash, PayloadHash: hash, Signatures: []Signature{}}},
		{APIVersion: APIVersion, Kind: Kind, Spec: BodySpec{EnvelopeHash: hash, PayloadHash: hash, Signatures: []Signature{{Signature: "MEUCIQ+/=", Verifier: pem}}}},
		{APIVersion: APIVersion, Kind: Kind, Spec: BodySpec{EnvelopeHash: hash, PayloadHash: hash, Signatures: []Signature{{Signature: "b", Verifier: pem}, {Signature: "a", Verifier: ""}}}},
		{APIVersion: "x<y", Kind: "é", Spec: BodySpec{Signatures: []Signature{{Signature: "\"\\", Verifier: "\x01"}}}},
	}
	for i, b := range bodies {
		got, err := Canonical(b)
		if err != nil {
			t.Fatal(err)
		}
		sorted := b
		if len(b.Spec.Signatures) > 1 {
			sorted.Spec.Signatures = []Signature{b.Spec.Signatures[1], b.Spec.Signatures[0]}
		}
		want, err := canonicalized(sorted)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("body %d:\n got %s\nwant %s", i, got, want)
		}
		if plainBody(b) != (i < 5) {
			t.Errorf("body %d: plain is %t", i, plainBody(b))
		}
	}
}
