// Package receipt builds and checks the signed record: an in-toto
// Statement v1 whose predicate is the decision.Record — of type
// PredicateType for a policy decision, EventPredicateType for an event a
// caller reported, AdminPredicateType for an administrative record — and
// whose subject is the SHA-256 of the canonical request, wrapped in a DSSE
// envelope (payload type PayloadType) signed by the daemon's key.
//
// Signing and verification go through sigstore/sigstore's signature and
// DSSE packages; nothing here invents a signature format. (SignRecord
// signs DSSE's pre-authentication encoding with the sigstore signer,
// handing it the encoding's SHA-256 digest, and writes the envelope
// itself, byte for byte as sigstore's DSSE signer does, to spare that
// wrapper's copies.)
package receipt

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/gatelog/gatelog/record/decision"
)

const (
	// PredicateType names the gatelog decision record (a policy's allow or
	// deny): the type to pass to cosign's --type.
	PredicateType = "https://gatelog.dev/decision/v1"
	// EventPredicateType names an event a caller reported.
	EventPredicateType = "https://gatelog.dev/event/v1"
	// AdminPredicateType names an administrative record.
	AdminPredicateType = "https://gatelog.dev/admin/v1"
	// PayloadType is the DSSE payload type of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
	// StatementType is the in-toto Statement v1 type.
	StatementType = "https://in-toto.io/Statement/v1"
)

// ErrInvalid marks envelopes that fail verification or do not hold a
// well-formed gatelog decision record.
var ErrInvalid = errors.New("invalid decision record")

// predicateTypes maps each record kind to its predicate type.
var predicateTypes = map[string]string{
	decision.KindDecision: PredicateType,
	decision.KindEvent:    EventPredicateType,
	decision.KindAdmin:    AdminPredicateType,
}

// PredicateTypeOf is the predicate type of a record kind ("" for none).
func PredicateTypeOf(kind string) string { return predicateTypes[kind] }

// KindOf is the record kind a predicate type names ("" for none).
func KindOf(predicateType string) string {
	for k, t := range predicateTypes {
		if t == predicateType {
			return k
		}
	}
	return ""
}

// Statement is an in-toto Statement v1 carrying a gatelog record.
type Statement struct {
	Type          string             `json:"_type"`
	Subject       []StatementSubject `json:"subject"`
	PredicateType string             `json:"predicateType"`
	Predicate     decision.Record    `json:"predicate"`
}

// StatementSubject is an in-toto resource descriptor.
type StatementSubject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Signer signs decision records with one key.
type Signer struct {
	signer signature.Signer
	keyID  string
}

// NewSigner wraps s, which must sign with SHA-256 (e.g. an ECDSA P-256
// signer from signature.LoadECDSASigner or a KMS signer).
func NewSigner(s signature.Signer) (*Signer, error) {
	pub, err := s.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("signer public key: %w", err)
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	return &Signer{signer: s, keyID: id}, nil
}

// KeyID is the hex SHA-256 of the key's PKIX DER encoding.
func (s *Signer) KeyID() string { return s.keyID }

// KeyID computes the identifier gatelog uses for a public key: the hex
// SHA-256 of its PKIX DER encoding (the same as Rekor's log ID).
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// RequestDigest is the hex SHA-256 of the request in RFC 8785 (JCS)
// canonical JSON: the in-toto subject of the record.
//
// The canonical form is written straight from the struct when it can be
// (appendCanonicalRequest), and through the canonicalizer otherwise; the
// two give the same bytes.
func RequestDigest(req decision.Request) (string, error) {
	buf := canonicalBuffers.Get().(*[]byte)
	defer canonicalBuffers.Put(buf)
	canon, ok := appendCanonicalRequest((*buf)[:0], req)
	if ok {
		*buf = canon
	} else {
		var err error
		if canon, err = canonicalRequest(req); err != nil {
			return "", err
		}
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:]), nil
}

// canonicalRequest is req's canonical JSON through the canonicalizer.
func canonicalRequest(req decision.Request) ([]byte, error) {
	raw, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	return CanonicalJSON(raw)
}

// canonicalBuffers hold the canonical requests RequestDigest hashes.
var canonicalBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// CanonicalJSON is raw in RFC 8785 (JCS) canonical form. Applied to a
// record's predicate.request it gives the blob the statement's subject is
// the SHA-256 of: what `cosign verify-blob-attestation` checks claims on.
func CanonicalJSON(raw []byte) ([]byte, error) { return jsoncanonicalizer.Transform(raw) }

// Sign builds the statement for rec, stamps the signer's key ID into
// rec.Daemon.KeyID and returns the DSSE envelope bytes exactly as they
// will be logged. rec.Kind picks the predicate type (empty: a decision).
func (s *Signer) Sign(rec decision.Record) ([]byte, error) {
	return s.SignContext(context.Background(), rec)
}

// SignContext is Sign for signers that honour a context (KMS): ctx bounds
// the signing call.
func (s *Signer) SignContext(ctx context.Context, rec decision.Record) ([]byte, error) {
	signed, err := s.SignRecord(ctx, rec)
	return signed.Envelope, err
}

// Signed is a record as signed: the DSSE envelope exactly as it will be
// logged, with the parts it was made of, so that whoever logs it need not
// parse them back out of the envelope.
type Signed struct {
	// Envelope is the DSSE envelope's JSON.
	Envelope []byte
	// Statement is the envelope's payload: the in-toto statement's JSON.
	Statement []byte
	// Signature is the envelope's one signature, base64 as it is there.
	Signature string
	// SubjectDigest is the hex SHA-256 of the canonical request, the
	// statement's one subject.
	SubjectDigest string
}

// SignRecord is SignContext, returning the parts of the envelope too.
//
// The envelope is what sigstore's DSSE signer (dsse.WrapSigner) makes —
// the signature is the wrapped signer's over the DSSE pre-authentication
// encoding (securesystemslib's dsse.PAE) of the statement, and the
// envelope the JSON encoding of dsse.Envelope with that one signature —
// without the wrapper's copies: it reads the payload into a new slice,
// and encodes the envelope by reflection, when every byte of it but the
// two base64 strings is known in advance.
func (s *Signer) SignRecord(ctx context.Context, rec decision.Record) (Signed, error) {
	if rec.Kind == "" {
		rec.Kind = decision.KindDecision
	}
	if err := checkKind(rec); err != nil {
		return Signed{}, err
	}
	rec.Daemon.KeyID = s.keyID
	subject, err := RequestDigest(rec.Request)
	if err != nil {
		return Signed{}, fmt.Errorf("digest request: %w", err)
	}
	payload, err := marshalStatement(&rec, subject)
	if err != nil {
		return Signed{}, fmt.Errorf("marshal statement: %w", err)
	}
	// An ECDSA or RSA key held here signs the SHA-256 digest it is given
	// (a signer set up for another hash refuses its length: no wrong
	// signature); every other signer — Ed25519, which signs the message
	// itself, or a KMS client — is given the encoding, as DSSE defines it.
	var message io.Reader
	var opts []signature.SignOption
	if s.signsDigest() {
		digest := paeDigest(payload)
		message = bytes.NewReader(nil)
		opts = []signature.SignOption{options.WithDigest(digest[:]), options.WithContext(ctx)}
	} else {
		message = bytes.NewReader(dsse.PAE(PayloadType, payload))
		opts = []signature.SignOption{options.WithContext(ctx)}
	}
	sig, err := s.signer.SignMessage(message, opts...)
	if err != nil {
		return Signed{}, fmt.Errorf("sign decision %s: %w", rec.DecisionID, err)
	}
	env, sigB64 := envelopeJSON(payload, sig)
	return Signed{Envelope: env, Statement: payload, Signature: sigB64, SubjectDigest: subject}, nil
}

// marshalStatement is the JSON of rec's in-toto statement, whose one
// subject is the request's digest. The statement is a pooled one:
// encoding/json takes its value as an interface, so a statement made
// afresh would be a heap copy of the whole record, and its subject a
// slice and a map, for every record signed.
func marshalStatement(rec *decision.Record, subject string) ([]byte, error) {
	st := statements.Get().(*Statement)
	defer func() {
		st.Predicate = decision.Record{}
		clear(st.Subject[0].Digest)
		statements.Put(st)
	}()
	st.Type, st.PredicateType, st.Predicate = StatementType, PredicateTypeOf(rec.Kind), *rec
	st.Subject[0].Name = "decision:" + rec.DecisionID
	st.Subject[0].Digest["sha256"] = subject
	return json.Marshal(st)
}

var statements = sync.Pool{New: func() any {
	return &Statement{Subject: []StatementSubject{{Digest: make(map[string]string, 1)}}}
}}

// paeDigest is the SHA-256 of DSSE's pre-authentication encoding of
// payload under PayloadType (securesystemslib's dsse.PAE: "DSSEv1",
// the type's length, the type, the payload's length, the payload, joined
// by spaces), hashed as it is written instead of built first: the signer
// is given the digest (options.WithDigest), as every sigstore signer of
// SHA-256 accepts, and the payload, the record's largest part, is not
// copied once more for a message that is hashed and dropped.
func paeDigest(payload []byte) [sha256.Size]byte {
	var head [64]byte
	b := append(head[:0], "DSSEv1 "...)
	b = strconv.AppendInt(b, int64(len(PayloadType)), 10)
	b = append(b, ' ')
	b = append(b, PayloadType...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(payload)), 10)
	b = append(b, ' ')
	h := sha256.New()
	h.Write(b)
	h.Write(payload)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// signsDigest reports whether the signer is an in-process ECDSA or RSA
// key, which signs a digest handed to it (options.WithDigest) instead of
// hashing the message.
func (s *Signer) signsDigest() bool {
	switch s.signer.(type) {
	case *signature.ECDSASignerVerifier, *signature.ECDSASigner,
		*signature.RSAPKCS1v15SignerVerifier, *signature.RSAPKCS1v15Signer,
		*signature.RSAPSSSignerVerifier, *signature.RSAPSSSigner:
		return true
	}
	return false
}

// InProcess reports whether the signer holds its key in this process
// (a key loaded from a file or generated), where a signature is a few
// tens of microseconds of CPU that cannot hang; a KMS signer calls out
// and may. The Recorder signs in-process keys on the caller's goroutine
// and runs only the others under a deadline of their own.
func (s *Signer) InProcess() bool {
	if s.signsDigest() {
		return true
	}
	switch s.signer.(type) {
	case *signature.ED25519SignerVerifier, *signature.ED25519Signer,
		*signature.ED25519phSignerVerifier, *signature.ED25519phSigner:
		return true
	}
	return false
}

// The bytes of an envelope as the daemon signs it (envelopeJSON) around
// its base64 payload and signature; parseOwnEnvelope reads that form.
const (
	envHead   = `{"payloadType":"` + PayloadType + `","payload":"`
	envMiddle = `","signatures":[{"keyid":"","sig":"`
	envTail   = `"}]}`
)

// envelopeJSON is json.Marshal of the dsse.Envelope of payload with the
// one signature sig, as sigstore's DSSE signer encodes it: the payload
// type and the base64 strings hold no character JSON escapes, so the
// encoding is these bytes. It returns the signature's base64 as well.
func envelopeJSON(payload, sig []byte) ([]byte, string) {
	b := make([]byte, 0, len(envHead)+base64.StdEncoding.EncodedLen(len(payload))+len(envMiddle)+base64.StdEncoding.EncodedLen(len(sig))+len(envTail))
	b = append(b, envHead...)
	b = base64.StdEncoding.AppendEncode(b, payload)
	b = append(b, envMiddle...)
	at := len(b)
	b = base64.StdEncoding.AppendEncode(b, sig)
	sigB64 := string(b[at:])
	return append(b, envTail...), sigB64
}

// Envelope is the DSSE envelope as JSON.
type Envelope struct {
	PayloadType string              `json:"payloadType"`
	Payload     string              `json:"payload"`
	Signatures  []EnvelopeSignature `json:"signatures"`
}

// EnvelopeSignature is one DSSE signature.
type EnvelopeSignature struct {
	KeyID string `json:"keyid,omitempty"`
	Sig   string `json:"sig"`
}

// ParseEnvelope decodes envelope JSON without verifying it.
func ParseEnvelope(envelope []byte) (Envelope, error) {
	if env, ok := parseOwnEnvelope(envelope); ok {
		return env, nil
	}
	var env Envelope
	if err := json.Unmarshal(envelope, &env); err != nil {
		return env, fmt.Errorf("%w: envelope is not DSSE JSON: %w", ErrInvalid, err)
	}
	if env.PayloadType != PayloadType {
		return env, fmt.Errorf("%w: envelope payloadType is %q, want %q", ErrInvalid, env.PayloadType, PayloadType)
	}
	if len(env.Signatures) == 0 {
		return env, fmt.Errorf("%w: envelope has no signatures", ErrInvalid)
	}
	return env, nil
}

// parseOwnEnvelope reads an envelope in exactly the form envelopeJSON
// writes — every one the daemon signs — without a JSON decoder: fixed
// bytes around two strings of base64 characters, which need no
// unescaping. Anything else reports false and is left to encoding/json,
// which decodes such an envelope to the same value.
func parseOwnEnvelope(b []byte) (Envelope, bool) {
	if len(b) < len(envHead)+len(envMiddle)+len(envTail) || !bytes.HasPrefix(b, []byte(envHead)) || !bytes.HasSuffix(b, []byte(envTail)) {
		return Envelope{}, false
	}
	inner := b[len(envHead) : len(b)-len(envTail)]
	at := bytes.Index(inner, []byte(envMiddle))
	if at < 0 {
		return Envelope{}, false
	}
	payload, sig := inner[:at], inner[at+len(envMiddle):]
	if !isBase64Text(payload) || !isBase64Text(sig) {
		return Envelope{}, false
	}
	return Envelope{PayloadType: PayloadType, Payload: string(payload), Signatures: []EnvelopeSignature{{Sig: string(sig)}}}, true
}

// isBase64Text reports whether b holds only characters of standard
// base64 (which JSON strings hold as themselves).
func isBase64Text(b []byte) bool {
	for _, c := range b {
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '+' && c != '/' && c != '=' {
			return false
		}
	}
	return true
}

// Open verifies the envelope's signature with v and returns the statement
// it carries, after checking it is a gatelog decision record whose subject
// digest matches its request.
func Open(envelope []byte, v signature.Verifier) (Statement, error) {
	env, err := ParseEnvelope(envelope)
	if err != nil {
		return Statement{}, err
	}
	if err := sigdsse.WrapVerifier(v).VerifySignature(bytes.NewReader(envelope), nil); err != nil {
		return Statement{}, fmt.Errorf("%w: envelope signature does not verify with the signer key: %w", ErrInvalid, err)
	}
	return env.statement()
}

// ReadStatement returns the statement an envelope carries, checked as
// ParseStatement checks it but without any signature check: for records
// read back from the log, whose envelope was verified when it was made or
// is verified elsewhere.
func ReadStatement(envelope []byte) (Statement, error) {
	env, err := ParseEnvelope(envelope)
	if err != nil {
		return Statement{}, err
	}
	return env.statement()
}

func (env Envelope) statement() (Statement, error) {
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return Statement{}, fmt.Errorf("%w: payload is not base64: %w", ErrInvalid, err)
	}
	return ParseStatement(payload)
}

// ParseStatement decodes and checks a statement without any signature check.
func ParseStatement(payload []byte) (Statement, error) {
	var st Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return st, fmt.Errorf("%w: payload is not an in-toto statement: %w", ErrInvalid, err)
	}
	st.Predicate.Kind = KindOf(st.PredicateType)
	if st.Type != StatementType || st.Predicate.Kind == "" {
		return st, fmt.Errorf("%w: statement type %q / predicate %q is not a gatelog record", ErrInvalid, st.Type, st.PredicateType)
	}
	if err := checkKind(st.Predicate); err != nil {
		return st, err
	}
	if len(st.Subject) != 1 {
		return st, fmt.Errorf("%w: statement has %d subjects, want 1", ErrInvalid, len(st.Subject))
	}
	digest, err := RequestDigest(st.Predicate.Request)
	if err != nil {
		return st, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if st.Subject[0].Digest["sha256"] != digest {
		return st, fmt.Errorf("%w: statement subject digest does not match the recorded request", ErrInvalid)
	}
	return st, nil
}

// checkKind checks that a record carries what its kind says and nothing
// else: only a decision has a decision (and so an allow), an event has
// its event, an administrative record its authority.
func checkKind(rec decision.Record) error {
	hasDecision := rec.Decision.Allow || rec.Decision.Reasons != nil || rec.Decision.Alerts != nil || rec.Decision.Obligations != nil
	switch rec.Kind {
	case decision.KindDecision:
		if rec.Event != nil || rec.Admin != nil {
			return fmt.Errorf("%w: a decision record carries an event or admin part", ErrInvalid)
		}
	case decision.KindEvent:
		if hasDecision || rec.Admin != nil || rec.Event == nil {
			return fmt.Errorf("%w: an event record must carry its event and no decision", ErrInvalid)
		}
	case decision.KindAdmin:
		if hasDecision || rec.Event != nil || rec.Admin == nil {
			return fmt.Errorf("%w: an administrative record must carry its authority and no decision", ErrInvalid)
		}
	default:
		return fmt.Errorf("%w: record kind %q", ErrInvalid, rec.Kind)
	}
	return nil
}
