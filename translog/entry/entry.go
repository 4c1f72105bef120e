// Package entry is the format of one gatelog log entry, as Rekor v1 writes
// it: the leaf is the canonical Rekor "dsse" v0.0.1 entry body for a DSSE
// envelope, the leaf hash is RFC 6962's SHA-256(0x00 ‖ body), the entry
// UUID is the 16-hex-digit tree ID followed by the leaf hash, and the
// Signed Entry Timestamp signs the canonical JSON of
// {body, integratedTime, logID, logIndex}.
//
// Both the log (to write entries) and offline verifiers (to recompute them)
// use this package, so the two can never disagree on the bytes.
package entry

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Kind and APIVersion of the Rekor entry type gatelog writes.
const (
	Kind       = "dsse"
	APIVersion = "0.0.1"
)

// ErrMalformed marks entry bodies and UUIDs that cannot be parsed.
var ErrMalformed = errors.New("malformed log entry")

// Body is the canonical Rekor dsse v0.0.1 entry. Its JSON encoding, with
// fields in this order, is already RFC 8785 canonical.
type Body struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Spec       BodySpec `json:"spec"`
}

// BodySpec is the spec of a dsse v0.0.1 entry.
type BodySpec struct {
	EnvelopeHash Hash        `json:"envelopeHash"`
	PayloadHash  Hash        `json:"payloadHash"`
	Signatures   []Signature `json:"signatures"`
}

// Hash is an algorithm and a hex value.
type Hash struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"value"`
}

// Signature pairs a DSSE signature (base64, as in the envelope) with the
// PEM public key that verifies it (base64 of the PEM, as Rekor stores it).
type Signature struct {
	Signature string `json:"signature"`
	Verifier  string `json:"verifier"`
}

type envelope struct {
	PayloadType string `json:"payloadType"`
	Payload     string `json:"payload"`
	Signatures  []struct {
		Sig string `json:"sig"`
	} `json:"signatures"`
}

// PublicKeyPEM returns the PEM encoding Rekor uses for a verifier key.
func PublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	return cryptoutils.MarshalPublicKeyToPEM(pub)
}

// DSSEBody returns the canonical Rekor dsse v0.0.1 body for the exact
// envelope bytes, whose every signature is attributed to signerPEM. It does
// not verify the signatures; the log verifies them before appending and
// auditors verify them separately.
func DSSEBody(envelopeJSON, signerPEM []byte) ([]byte, error) {
	d, err := NewDSSE(envelopeJSON, signerPEM)
	return d.Body, err
}

// DSSE is a dsse entry and what its body was made from.
type DSSE struct {
	// Body is the canonical Rekor dsse v0.0.1 body (DSSEBody).
	Body []byte
	// PayloadHash and EnvelopeHash are the SHA-256s the body names.
	PayloadHash, EnvelopeHash [sha256.Size]byte
	// Payload is the envelope's payload, decoded.
	Payload []byte
}

// NewDSSE is DSSEBody, keeping what a caller that indexes the entry
// needs (the hashes and the payload) so that it parses nothing twice.
func NewDSSE(envelopeJSON, signerPEM []byte) (DSSE, error) {
	var env envelope
	if err := json.Unmarshal(envelopeJSON, &env); err != nil {
		return DSSE{}, fmt.Errorf("%w: envelope is not JSON: %w", ErrMalformed, err)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return DSSE{}, fmt.Errorf("%w: envelope payload is not base64: %w", ErrMalformed, err)
	}
	sigs := make([]string, len(env.Signatures))
	for i, s := range env.Signatures {
		sigs[i] = s.Sig
	}
	return NewDSSEParts(envelopeJSON, payload, sigs, signerPEM)
}

// NewDSSEParts is NewDSSE for an envelope whose parts the caller has at
// hand — its signer does — so that nothing is parsed back out of it: the
// payload, decoded, and the signatures, base64 as the envelope holds
// them, in its order. They must be the envelope's: the body commits to
// them.
func NewDSSEParts(envelopeJSON, payload []byte, sigs []string, signerPEM []byte) (DSSE, error) {
	if len(sigs) == 0 {
		return DSSE{}, fmt.Errorf("%w: envelope has no signatures", ErrMalformed)
	}
	d := DSSE{PayloadHash: sha256.Sum256(payload), EnvelopeHash: sha256.Sum256(envelopeJSON), Payload: payload}
	verifier := base64.StdEncoding.EncodeToString(signerPEM)
	bs := make([]Signature, len(sigs))
	for i, s := range sigs {
		bs[i] = Signature{Signature: s, Verifier: verifier}
	}
	var err error
	d.Body, err = Canonical(Body{
		APIVersion: APIVersion,
		Kind:       Kind,
		Spec: BodySpec{
			EnvelopeHash: Hash{Algorithm: "sha256", Value: hex.EncodeToString(d.EnvelopeHash[:])},
			PayloadHash:  Hash{Algorithm: "sha256", Value: hex.EncodeToString(d.PayloadHash[:])},
			Signatures:   bs,
		},
	})
	return d, err
}

// Canonical encodes a body the way Rekor canonicalizes it: signatures
// sorted by signature, RFC 8785 JSON. The struct's fields are in RFC 8785
// key order and every value is a string, so when no string holds a byte
// the two encoders escape differently (quotes, backslashes, control and
// non-ASCII bytes) the JSON is written directly (what encoding/json
// writes, and already canonical); otherwise it goes through the RFC 8785
// canonicalizer.
func Canonical(b Body) ([]byte, error) {
	if len(b.Spec.Signatures) > 1 {
		b.Spec.Signatures = slices.Clone(b.Spec.Signatures)
		sort.Slice(b.Spec.Signatures, func(i, j int) bool { return b.Spec.Signatures[i].Signature < b.Spec.Signatures[j].Signature })
	}
	if plainBody(b) {
		return appendPlainBody(nil, b), nil
	}
	return canonicalized(b)
}

// canonicalized is Canonical through encoding/json and the canonicalizer.
func canonicalized(b Body) ([]byte, error) {
	raw, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	return jsoncanonicalizer.Transform(raw)
}

// appendPlainBody writes the JSON of a body whose strings need no escape
// (plainBody).
func appendPlainBody(dst []byte, b Body) []byte {
	n := 160 + len(b.APIVersion) + len(b.Kind) + len(b.Spec.EnvelopeHash.Value) + len(b.Spec.PayloadHash.Value)
	for _, s := range b.Spec.Signatures {
		n += 32 + len(s.Signature) + len(s.Verifier)
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, `{"apiVersion":"`...)
	dst = append(dst, b.APIVersion...)
	dst = append(dst, `","kind":"`...)
	dst = append(dst, b.Kind...)
	dst = append(dst, `","spec":{"envelopeHash":{"algorithm":"`...)
	dst = append(dst, b.Spec.EnvelopeHash.Algorithm...)
	dst = append(dst, `","value":"`...)
	dst = append(dst, b.Spec.EnvelopeHash.Value...)
	dst = append(dst, `"},"payloadHash":{"algorithm":"`...)
	dst = append(dst, b.Spec.PayloadHash.Algorithm...)
	dst = append(dst, `","value":"`...)
	dst = append(dst, b.Spec.PayloadHash.Value...)
	dst = append(dst, `"},"signatures":`...)
	if b.Spec.Signatures == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, s := range b.Spec.Signatures {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"signature":"`...)
			dst = append(dst, s.Signature...)
			dst = append(dst, `","verifier":"`...)
			dst = append(dst, s.Verifier...)
			dst = append(dst, `"}`...)
		}
		dst = append(dst, ']')
	}
	return append(dst, "}}"...)
}

// plainBody reports whether every string of b is printable ASCII without
// quotes or backslashes: strings encoding/json and RFC 8785 write alike.
func plainBody(b Body) bool {
	strs := []string{b.APIVersion, b.Kind, b.Spec.EnvelopeHash.Algorithm, b.Spec.EnvelopeHash.Value, b.Spec.PayloadHash.Algorithm, b.Spec.PayloadHash.Value}
	for _, s := range b.Spec.Signatures {
		strs = append(strs, s.Signature, s.Verifier)
	}
	for _, s := range strs {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
		}
	}
	return true
}

// ParseBody decodes a dsse v0.0.1 body.
func ParseBody(body []byte) (Body, error) {
	var b Body
	if err := json.Unmarshal(body, &b); err != nil {
		return b, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if b.Kind != Kind || b.APIVersion != APIVersion {
		return b, fmt.Errorf("%w: kind %q version %q, want %s %s", ErrMalformed, b.Kind, b.APIVersion, Kind, APIVersion)
	}
	return b, nil
}

// LeafHash is the RFC 6962 leaf hash of a body.
func LeafHash(body []byte) []byte {
	return rfc6962.DefaultHasher.HashLeaf(body)
}

// LogID is the hex SHA-256 of the log key's PKIX DER encoding.
func LogID(logKey crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(logKey)
	if err != nil {
		return "", fmt.Errorf("marshal log key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// TreeID derives the log's tree ID from its key: the first eight bytes of
// the key's SHA-256 as a positive int64. Deriving it from the key means a
// verifier holding only the public key can check an entry's UUID.
func TreeID(logKey crypto.PublicKey) (int64, error) {
	der, err := x509.MarshalPKIXPublicKey(logKey)
	if err != nil {
		return 0, fmt.Errorf("marshal log key: %w", err)
	}
	sum := sha256.Sum256(der)
	return int64(binary.BigEndian.Uint64(sum[:8]) & 0x7fffffffffffffff), nil
}

// UUID is the Rekor entry UUID: tree ID as 16 hex digits, then the leaf hash.
func UUID(treeID int64, leafHash []byte) string {
	return fmt.Sprintf("%016x%s", treeID, hex.EncodeToString(leafHash))
}

// ParseUUID splits a UUID into tree ID and leaf hash. A bare 64-hex-digit
// leaf hash is accepted too (tree ID 0), as Rekor does.
func ParseUUID(uuid string) (treeID int64, leafHash []byte, err error) {
	switch len(uuid) {
	case 80:
		// Exactly 16 hex digits of a non-negative int64, as Rekor requires.
		if _, err := hex.DecodeString(uuid[:16]); err != nil {
			return 0, nil, fmt.Errorf("%w: tree ID %q is not hex", ErrMalformed, uuid[:16])
		}
		t, err := strconv.ParseInt(uuid[:16], 16, 64)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: tree ID %q is not a 63-bit number", ErrMalformed, uuid[:16])
		}
		treeID = t
		uuid = uuid[16:]
	case 64:
	default:
		return 0, nil, fmt.Errorf("%w: UUID must be 64 or 80 hex digits, got %d characters", ErrMalformed, len(uuid))
	}
	leafHash, err = hex.DecodeString(uuid)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: leaf hash is not hex", ErrMalformed)
	}
	return treeID, leafHash, nil
}

// SETPayload is the canonical JSON the Signed Entry Timestamp signs, exactly
// as Rekor's pkg/verify reconstructs it.
//
// The canonical form of these four fields is written directly when the
// values leave nothing to canonicalize: keys in JCS order, a base64 body
// and a hex log ID (no character to escape), integers within ±2^53 (which
// JCS's number form writes as plain decimals). Anything else goes through
// the canonicalizer. The body is most of the payload, so this spares
// parsing it back character by character on every append.
func SETPayload(body []byte, integratedTime int64, logID string, logIndex int64) ([]byte, error) {
	return AppendSETPayload(nil, body, integratedTime, logID, logIndex)
}

// AppendSETPayload is SETPayload appended to dst: a log signing one SET
// per entry hashes the payload and drops it, so it can reuse one buffer.
func AppendSETPayload(dst, body []byte, integratedTime int64, logID string, logIndex int64) ([]byte, error) {
	const exact = 1 << 53
	if integratedTime > -exact && integratedTime < exact && logIndex > -exact && logIndex < exact && isLowerHex(logID) {
		b := slices.Grow(dst, base64.StdEncoding.EncodedLen(len(body))+len(logID)+96)
		b = append(b, `{"body":"`...)
		b = base64.StdEncoding.AppendEncode(b, body)
		b = append(b, `","integratedTime":`...)
		b = strconv.AppendInt(b, integratedTime, 10)
		b = append(b, `,"logID":"`...)
		b = append(b, logID...)
		b = append(b, `","logIndex":`...)
		b = strconv.AppendInt(b, logIndex, 10)
		return append(b, '}'), nil
	}
	p, err := setPayloadCanonicalized(body, integratedTime, logID, logIndex)
	return append(dst, p...), err
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// setPayloadCanonicalized is SETPayload through the JCS canonicalizer.
func setPayloadCanonicalized(body []byte, integratedTime int64, logID string, logIndex int64) ([]byte, error) {
	p := struct {
		Body           string `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	}{base64.StdEncoding.EncodeToString(body), integratedTime, logIndex, logID}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return jsoncanonicalizer.Transform(raw)
}
