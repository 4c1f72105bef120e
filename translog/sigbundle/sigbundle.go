// Package sigbundle packages one gatelog decision as a Sigstore bundle
// (protobuf-specs, media type application/vnd.dev.sigstore.bundle.v0.3+json)
// and describes a gatelog log as a Sigstore trusted root, so that Sigstore
// verifiers (sigstore-go, cosign) can check a decision offline.
//
// The bundle holds the stored DSSE envelope, a public-key hint naming the
// decision key, and one Rekor v1 transparency-log entry: the canonical dsse
// v0.0.1 body, its Signed Entry Timestamp and its inclusion proof up to a
// signed checkpoint, all exactly as the log's Rekor v1 API serves them. The
// trusted root names the log key; the decision key is not part of a trusted
// root and is given to the verifier separately.
//
// Nothing here is trusted or verified: FromEntry repackages what the API
// returned, and a verifier checks it.
package sigbundle

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	prototrustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/rekorapi"
)

// Media types of what this package writes.
const (
	BundleMediaType      = "application/vnd.dev.sigstore.bundle.v0.3+json"
	TrustedRootMediaType = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
)

// ErrIncomplete marks a Rekor API entry that lacks what a bundle needs.
var ErrIncomplete = errors.New("log entry cannot make a bundle")

type envelopeJSON struct {
	PayloadType string `json:"payloadType"`
	Payload     string `json:"payload"`
	Signatures  []struct {
		KeyID string `json:"keyid"`
		Sig   string `json:"sig"`
	} `json:"signatures"`
}

// Fetch builds the bundle for the entry at index from the log served
// through c (with a read credential, rekorapi.WithBearer, unless the log
// publishes its records): the entry as the Rekor v1 API returns it, with the inclusion
// proof's checkpoint restated by the log in Rekor v1's origin form
// ("<host> - <tree id>"). sigstore-go (v1.3.0) treats a checkpoint whose
// origin does not end in " - <tree id>" as a Rekor v2 checkpoint and then
// cannot verify it, so a bundle needs this form.
func Fetch(ctx context.Context, c *rekorapi.Client, index int64) (*protobundle.Bundle, error) {
	_, e, err := c.EntryByIndex(ctx, index)
	if err != nil {
		return nil, err
	}
	if e.LogIndex != index {
		return nil, fmt.Errorf("asked for entry %d, the log answered with entry %d", index, e.LogIndex)
	}
	// A bundle carries the envelope: a log that keeps records private
	// serves it only to a client with a read credential.
	if _, err := c.Envelope(e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIncomplete, err)
	}
	if e.Verification == nil || e.Verification.InclusionProof == nil {
		return nil, fmt.Errorf("%w: no inclusion proof", ErrIncomplete)
	}
	p := *e.Verification.InclusionProof
	cp, err := c.RekorV1Checkpoint(ctx, []byte(p.Checkpoint))
	if err != nil {
		return nil, fmt.Errorf("restate checkpoint in Rekor v1 form: %w", err)
	}
	p.Checkpoint = string(cp)
	v := *e.Verification
	v.InclusionProof = &p
	e.Verification = &v
	return FromEntry(e)
}

// FromEntry builds the bundle for one entry as the Rekor v1 API returns it
// (GET /api/v1/log/entries?logIndex=N): it needs the stored envelope
// (attestation.data), the SET and the inclusion proof with its checkpoint.
// The public-key hint is the gatelog key ID of the decision key (hex
// SHA-256 of its PKIX DER), taken from the verifier the entry body names.
func FromEntry(e rekorapi.LogEntryAnon) (*protobundle.Bundle, error) {
	if e.Attestation == nil || len(e.Attestation.Data) == 0 {
		return nil, fmt.Errorf("%w: no stored envelope (attestation.data)", ErrIncomplete)
	}
	if e.Verification == nil || len(e.Verification.SignedEntryTimestamp) == 0 || e.Verification.InclusionProof == nil {
		return nil, fmt.Errorf("%w: no signed entry timestamp or inclusion proof", ErrIncomplete)
	}
	body, err := base64.StdEncoding.DecodeString(e.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: body is not base64", entry.ErrMalformed)
	}
	parsed, err := entry.ParseBody(body)
	if err != nil {
		return nil, err
	}
	if len(parsed.Spec.Signatures) == 0 {
		return nil, fmt.Errorf("%w: body has no signatures", entry.ErrMalformed)
	}
	hint, err := verifierKeyID(parsed.Spec.Signatures[0].Verifier)
	if err != nil {
		return nil, err
	}
	env, err := dsseEnvelope(e.Attestation.Data)
	if err != nil {
		return nil, err
	}
	logID, err := hex.DecodeString(e.LogID)
	if err != nil || len(logID) != sha256.Size {
		return nil, fmt.Errorf("%w: log ID %q is not a hex SHA-256", entry.ErrMalformed, e.LogID)
	}
	p := e.Verification.InclusionProof
	root, err := hex.DecodeString(p.RootHash)
	if err != nil {
		return nil, fmt.Errorf("%w: root hash is not hex", entry.ErrMalformed)
	}
	hashes := make([][]byte, len(p.Hashes))
	for i, h := range p.Hashes {
		if hashes[i], err = hex.DecodeString(h); err != nil {
			return nil, fmt.Errorf("%w: proof hash %d is not hex", entry.ErrMalformed, i)
		}
	}
	return &protobundle.Bundle{
		MediaType: BundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: hint}},
			TlogEntries: []*protorekor.TransparencyLogEntry{{
				LogIndex:          e.LogIndex,
				LogId:             &protocommon.LogId{KeyId: logID},
				KindVersion:       &protorekor.KindVersion{Kind: entry.Kind, Version: entry.APIVersion},
				IntegratedTime:    e.IntegratedTime,
				InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: e.Verification.SignedEntryTimestamp},
				CanonicalizedBody: body,
				InclusionProof: &protorekor.InclusionProof{
					LogIndex:   p.LogIndex,
					RootHash:   root,
					TreeSize:   p.TreeSize,
					Hashes:     hashes,
					Checkpoint: &protorekor.Checkpoint{Envelope: p.Checkpoint},
				},
			}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: env},
	}, nil
}

func verifierKeyID(b64PEM string) (string, error) {
	pemBytes, err := base64.StdEncoding.DecodeString(b64PEM)
	if err != nil {
		return "", fmt.Errorf("%w: verifier is not base64", entry.ErrMalformed)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return "", fmt.Errorf("%w: verifier is not a PEM public key: %w", entry.ErrMalformed, err)
	}
	return KeyID(pub)
}

func dsseEnvelope(raw []byte) (*protodsse.Envelope, error) {
	var env envelopeJSON
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("%w: envelope is not JSON: %w", entry.ErrMalformed, err)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: envelope payload is not base64", entry.ErrMalformed)
	}
	out := &protodsse.Envelope{Payload: payload, PayloadType: env.PayloadType}
	for i, s := range env.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			return nil, fmt.Errorf("%w: envelope signature %d is not base64", entry.ErrMalformed, i)
		}
		out.Signatures = append(out.Signatures, &protodsse.Signature{Sig: sig, Keyid: s.KeyID})
	}
	if len(out.Signatures) == 0 {
		return nil, fmt.Errorf("%w: envelope has no signatures", entry.ErrMalformed)
	}
	return out, nil
}

// KeyID is the gatelog key ID of a public key: the hex SHA-256 of its PKIX
// DER encoding (the bundle's public-key hint).
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// TrustedRoot describes the log served at baseURL, signing with logKey
// (ECDSA P-256) since validFrom, as a Sigstore trusted root with one
// transparency log. validFrom must not be later than the integrated time of
// any entry a verifier should accept.
func TrustedRoot(logKey crypto.PublicKey, baseURL string, validFrom time.Time) (*prototrustroot.TrustedRoot, error) {
	if k, ok := logKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("log key must be ECDSA P-256, got %T", logKey)
	}
	der, err := x509.MarshalPKIXPublicKey(logKey)
	if err != nil {
		return nil, fmt.Errorf("marshal log key: %w", err)
	}
	sum := sha256.Sum256(der)
	return &prototrustroot.TrustedRoot{
		MediaType: TrustedRootMediaType,
		Tlogs: []*prototrustroot.TransparencyLogInstance{{
			BaseUrl:       baseURL,
			HashAlgorithm: protocommon.HashAlgorithm_SHA2_256,
			PublicKey: &protocommon.PublicKey{
				RawBytes:   der,
				KeyDetails: protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256,
				ValidFor:   &protocommon.TimeRange{Start: timestamppb.New(validFrom)},
			},
			LogId: &protocommon.LogId{KeyId: sum[:]},
		}},
	}, nil
}

// Marshal encodes a bundle or trusted root as protobuf-specs JSON.
func Marshal(m proto.Message) ([]byte, error) {
	return protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
}
