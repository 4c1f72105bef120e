// Package verify checks, offline, what a gatelog log says: that a
// checkpoint is signed by the log key, that an entry is included in the
// tree a checkpoint commits to, that its Signed Entry Timestamp is the
// log's, and that the decision record inside is signed by the daemon.
//
// It needs nothing but the receipt and the two public keys; proofs are
// checked with transparency-dev/merkle, checkpoints with the C2SP
// signed-note code, envelopes with sigstore's DSSE verifier. A [Verifier]
// verifies many receipts of one log, checking each checkpoint's signature
// once.
package verify

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog/entry"
)

// CheckpointVerifier returns a signed-note verifier for checkpoints signed
// Rekor-style (ECDSA P-256 over SHA-256, key hint = first 4 bytes of the
// SHA-256 of the PKIX DER) under the signer name origin.
func CheckpointVerifier(origin string, pub crypto.PublicKey) (note.Verifier, error) {
	if _, ok := pub.(*ecdsa.PublicKey); !ok {
		return nil, fmt.Errorf("log key must be ECDSA, got %T", pub)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	vkey := fmt.Sprintf("%s+%08x+%s", origin, binary.BigEndian.Uint32(sum[:4]), base64.StdEncoding.EncodeToString(append([]byte{0x02}, der...)))
	return fnote.NewECDSAVerifier(vkey)
}

// Checkpoint verifies a signed checkpoint against the log key and returns
// it parsed. The origin is taken from the checkpoint's first line; callers
// that know the expected origin should compare it.
func Checkpoint(raw []byte, logKey crypto.PublicKey) (*log.Checkpoint, error) {
	return checkpoint(raw, func(origin string) (note.Verifier, error) { return CheckpointVerifier(origin, logKey) })
}

// checkpoint parses raw and checks its signature with the verifier
// verifierFor returns for the checkpoint's origin.
func checkpoint(raw []byte, verifierFor func(origin string) (note.Verifier, error)) (*log.Checkpoint, error) {
	origin, _, ok := strings.Cut(string(raw), "\n")
	if !ok || origin == "" {
		return nil, fail(CheckCheckpoint, "no origin line")
	}
	v, err := verifierFor(origin)
	if err != nil {
		return nil, &CheckError{Check: CheckCheckpoint, Detail: fmt.Sprintf("origin %q", origin), Err: err}
	}
	cp, _, _, err := log.ParseCheckpoint(raw, origin, v)
	if err != nil {
		return nil, failWith(CheckCheckpointSignature, err)
	}
	return cp, nil
}

// Inclusion checks that leafHash is at index in the tree whose root the
// signed checkpoint commits to.
func Inclusion(checkpoint []byte, logKey crypto.PublicKey, index, treeSize uint64, rootHash, leafHash []byte, hashes [][]byte) (*log.Checkpoint, error) {
	cp, err := Checkpoint(checkpoint, logKey)
	if err != nil {
		return nil, err
	}
	if err := inclusion(cp, index, treeSize, rootHash, leafHash, hashes); err != nil {
		return nil, err
	}
	return cp, nil
}

func inclusion(cp *log.Checkpoint, index, treeSize uint64, rootHash, leafHash []byte, hashes [][]byte) error {
	if cp.Size != treeSize {
		return fail(CheckInclusion, "proof is for tree size %d but the checkpoint is for %d", treeSize, cp.Size)
	}
	if !bytes.Equal(cp.Hash, rootHash) {
		return fail(CheckInclusion, "proof root hash does not match the checkpoint root")
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, treeSize, leafHash, hashes, rootHash); err != nil {
		return failWith(CheckInclusion, err)
	}
	return nil
}

// Consistency checks that the tree of the older checkpoint is a prefix of
// the tree of the newer one, both signed by the log key.
func Consistency(older, newer []byte, logKey crypto.PublicKey, hashes [][]byte) error {
	a, err := Checkpoint(older, logKey)
	if err != nil {
		return err
	}
	b, err := Checkpoint(newer, logKey)
	if err != nil {
		return err
	}
	if a.Origin != b.Origin {
		return fail(CheckConsistency, "checkpoints are from different logs (%q, %q)", a.Origin, b.Origin)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.Size, b.Size, hashes, a.Hash, b.Hash); err != nil {
		return failWith(CheckConsistency, err)
	}
	return nil
}

// SET checks a Signed Entry Timestamp with the log key.
func SET(set, body []byte, integratedTime int64, logID string, logIndex int64, logKey crypto.PublicKey) error {
	v, err := signature.LoadVerifier(logKey, crypto.SHA256)
	if err != nil {
		return failWith(CheckSET, err)
	}
	return checkSET(v, set, body, integratedTime, logID, logIndex)
}

// Result is what a verified receipt proves.
type Result struct {
	Statement  receipt.Statement
	Checkpoint *log.Checkpoint
}

// Receipt verifies a decision receipt offline: the envelope signature with
// signerKey, every summary field against the signed record, the leaf and
// UUID recomputed from the envelope, the log ID, the SET, and the
// inclusion proof up to a checkpoint signed by logKey. To verify many
// receipts of one log, or receipts of a daemon that rotated its key, make
// a [Verifier] once with the key set and use its Receipt.
func Receipt(r decision.Receipt, logKey, signerKey crypto.PublicKey) (Result, error) {
	v, err := New(logKey, WithSignerKey(signerKey))
	if err != nil {
		return Result{}, err
	}
	return v.Receipt(r)
}

// maxCached bounds each of a Verifier's caches; when one is full it is
// emptied and refilled, so a stream of receipts with ever new checkpoints
// costs what it would without the cache and no more memory.
const maxCached = 256

// Verifier verifies receipts and entries of one log, signed by the keys of
// one signing key set. It derives what the log key implies (log ID, tree
// ID, the SET and checkpoint verifiers) once, and it remembers the
// checkpoints whose signatures it has checked, so receipts proven against
// the same checkpoint — an audit export, a directory of receipts fetched
// together — cost that signature once. It is safe for concurrent use.
type Verifier struct {
	logKey crypto.PublicKey
	logID  string
	treeID int64
	set    signature.Verifier
	keys   *SigningKeys // nil: only the log's own checks (checkpoints, SETs, proofs)
	single bool         // keys is one key trusted at all times (WithSignerKey)

	mu          sync.Mutex
	notes       map[string]note.Verifier  // checkpoint origin → signed-note verifier
	checkpoints map[string]log.Checkpoint // checkpoint text → parsed, signature checked
	signers     map[string]signerKey      // decision-signing key's PEM → its verifier
}

type signerKey struct {
	verifier signature.Verifier
	pem      []byte
	pub      crypto.PublicKey
}

func (s signerKey) verifierKey() crypto.PublicKey { return s.pub }

// Option configures a Verifier.
type Option func(*options) error

type options struct {
	keys   *SigningKeys
	single bool
}

// WithSigningKeys makes the Verifier check records with the daemon's key
// set: each record with the key it names, valid when the log integrated
// the entry.
func WithSigningKeys(ks SigningKeys) Option {
	return func(o *options) error {
		if len(ks.Keys) == 0 {
			return fail(CheckSignerKey, "the signing key set has no keys")
		}
		for _, k := range ks.Keys {
			if _, err := k.publicKey(); err != nil {
				return failWith(CheckSignerKey, err)
			}
		}
		o.keys, o.single = &ks, false
		return nil
	}
}

// WithSignerKey makes the Verifier check records with one key, valid at
// all times: a record is checked with it whatever key it names, so a
// record of another key fails the envelope check.
func WithSignerKey(pub crypto.PublicKey) Option {
	return func(o *options) error {
		ks, err := KeySet(pub)
		if err != nil {
			return failWith(CheckSignerKey, err)
		}
		o.keys, o.single = &ks, true
		return nil
	}
}

// New makes a Verifier for the log whose public key is logKey. Records
// (receipts, envelopes) need a signing key: [WithSigningKeys] or
// [WithSignerKey]; without one only the log's own proofs are checked.
func New(logKey crypto.PublicKey, opts ...Option) (*Verifier, error) {
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	treeID, err := entry.TreeID(logKey)
	if err != nil {
		return nil, failWith(CheckLogKey, err)
	}
	logID, err := entry.LogID(logKey)
	if err != nil {
		return nil, failWith(CheckLogKey, err)
	}
	set, err := signature.LoadVerifier(logKey, crypto.SHA256)
	if err != nil {
		return nil, failWith(CheckLogKey, err)
	}
	return &Verifier{
		logKey: logKey, logID: logID, treeID: treeID, set: set, keys: o.keys, single: o.single,
		notes:       map[string]note.Verifier{},
		checkpoints: map[string]log.Checkpoint{},
		signers:     map[string]signerKey{},
	}, nil
}

// LogKey is the log's public key.
func (v *Verifier) LogKey() crypto.PublicKey { return v.logKey }

// LogID is the log's ID (hex SHA-256 of the log key's PKIX DER).
func (v *Verifier) LogID() string { return v.logID }

// TreeID is the log's tree ID, the suffix of its checkpoints' origin.
func (v *Verifier) TreeID() int64 { return v.treeID }

// SigningKeys is the key set records are checked with (nil without one).
func (v *Verifier) SigningKeys() *SigningKeys { return v.keys }

// Checkpoint verifies a signed checkpoint against the log key, as the
// package-level [Checkpoint] does, answering from the cache for a
// checkpoint it has verified before.
func (v *Verifier) Checkpoint(raw []byte) (*log.Checkpoint, error) {
	v.mu.Lock()
	cp, ok := v.checkpoints[string(raw)]
	v.mu.Unlock()
	if ok {
		cp.Hash = bytes.Clone(cp.Hash)
		return &cp, nil
	}
	parsed, err := checkpoint(raw, v.noteVerifier)
	if err != nil {
		return nil, err
	}
	cached := *parsed
	cached.Hash = bytes.Clone(parsed.Hash)
	v.mu.Lock()
	remember(v.checkpoints, string(raw), cached)
	v.mu.Unlock()
	return parsed, nil
}

func (v *Verifier) noteVerifier(origin string) (note.Verifier, error) {
	v.mu.Lock()
	nv, ok := v.notes[origin]
	v.mu.Unlock()
	if ok {
		return nv, nil
	}
	nv, err := CheckpointVerifier(origin, v.logKey)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	remember(v.notes, origin, nv)
	v.mu.Unlock()
	return nv, nil
}

func remember[K comparable, V any](m map[K]V, k K, val V) {
	if len(m) >= maxCached {
		clear(m)
	}
	m[k] = val
}

func (v *Verifier) signer(key crypto.PublicKey) (signerKey, error) {
	pem, err := entry.PublicKeyPEM(key)
	if err != nil {
		return signerKey{}, failWith(CheckSignerKey, err)
	}
	v.mu.Lock()
	s, ok := v.signers[string(pem)]
	v.mu.Unlock()
	if ok {
		return s, nil
	}
	sv, err := signature.LoadVerifier(key, crypto.SHA256)
	if err != nil {
		return signerKey{}, failWith(CheckSignerKey, err)
	}
	s = signerKey{verifier: sv, pem: pem, pub: key}
	v.mu.Lock()
	remember(v.signers, string(pem), s)
	v.mu.Unlock()
	return s, nil
}

// selectKey picks from the key set the key that should have signed an
// entry integrated at unix time integrated; byPEM names it by its PEM (a
// log entry's body), else keyID names it (a record's daemon.key_id).
func (v *Verifier) selectKey(keyID string, byPEM []byte, integrated int64) (signerKey, error) {
	if v.keys == nil {
		return signerKey{}, fail(CheckSignerKey, "no signing key to check records with")
	}
	at := time.Unix(integrated, 0)
	var (
		pub crypto.PublicKey
		err error
	)
	if v.single && byPEM == nil {
		// One trusted key: the signature check says whether it signed.
		pub, err = v.keys.Keys[0].publicKey()
		if err != nil {
			return signerKey{}, failWith(CheckSignerKey, err)
		}
		return v.signer(pub)
	}
	if byPEM != nil {
		pub, err = v.keys.SelectPEM(byPEM, at)
	} else {
		pub, err = v.keys.Select(keyID, at)
	}
	if err != nil {
		return signerKey{}, failWith(CheckSignerKey, err)
	}
	return v.signer(pub)
}

// Receipt verifies a decision receipt of this log, signed by the key of
// the set that the record names and that was valid when the log
// integrated it; see the package-level [Receipt] for what is checked.
// Failures are *CheckError.
func (v *Verifier) Receipt(r decision.Receipt) (Result, error) {
	unverified, err := receipt.ReadStatement(r.Envelope)
	if err != nil {
		return Result{}, failWith(CheckEnvelope, err)
	}
	sk, err := v.selectKey(unverified.Predicate.Daemon.KeyID, nil, r.IntegratedTime)
	if err != nil {
		return Result{}, err
	}
	st, err := receipt.Open(r.Envelope, sk.verifier)
	if err != nil {
		return Result{}, failWith(CheckEnvelope, err)
	}
	rec := st.Predicate
	switch {
	case r.DecisionID != rec.DecisionID:
		return Result{}, fail(CheckDecisionID, "receipt says %q, signed record says %q", r.DecisionID, rec.DecisionID)
	case r.Kind != "" && r.Kind != rec.Kind:
		// (Receipts made before records had kinds carry none; the signed
		// predicate type says what the record is either way.)
		return Result{}, fail(CheckKind, "receipt says %q, signed record is a %s", r.Kind, rec.Kind)
	case r.Allow != rec.Allowed():
		return Result{}, fail(CheckAllow, "receipt says %v, signed %s record says %v", r.Allow, rec.Kind, rec.Allowed())
	case !slices.Equal(r.Reasons, rec.Reasons()):
		return Result{}, fail(CheckReasons, "receipt reasons differ from the signed record")
	case !slices.Equal(r.Alerts, rec.Alerts()):
		return Result{}, fail(CheckAlerts, "receipt alerts differ from the signed record")
	}
	body, err := entry.DSSEBody(r.Envelope, sk.pem)
	if err != nil {
		return Result{}, failWith(CheckEntry, err)
	}
	leaf := entry.LeafHash(body)
	if want := entry.UUID(v.treeID, leaf); r.UUID != want {
		return Result{}, fail(CheckUUID, "receipt says %q, recomputed from the envelope and log key %q", r.UUID, want)
	}
	if r.LogID != v.logID {
		return Result{}, fail(CheckLogID, "receipt says %q, the log key's ID is %q", r.LogID, v.logID)
	}
	if err := checkSET(v.set, r.SignedEntryTimestamp, body, r.IntegratedTime, r.LogID, r.LogIndex); err != nil {
		return Result{}, err
	}
	p := r.InclusionProof
	if p == nil {
		return Result{}, fail(CheckInclusion, "receipt has none (fetch it with gatelog decide --out or GET /v1/decisions/{id})")
	}
	if p.LogIndex != r.LogIndex {
		return Result{}, fail(CheckInclusion, "proof is for index %d, receipt for %d", p.LogIndex, r.LogIndex)
	}
	if p.LogIndex < 0 || p.TreeSize <= p.LogIndex {
		return Result{}, fail(CheckInclusion, "index %d is outside tree size %d", p.LogIndex, p.TreeSize)
	}
	root, err := hex.DecodeString(p.RootHash)
	if err != nil {
		return Result{}, fail(CheckInclusion, "root hash is not hex")
	}
	hashes := make([][]byte, len(p.Hashes))
	for i, h := range p.Hashes {
		if hashes[i], err = hex.DecodeString(h); err != nil {
			return Result{}, fail(CheckInclusion, "hash %d is not hex", i)
		}
	}
	cp, err := v.Checkpoint([]byte(p.Checkpoint))
	if err != nil {
		return Result{}, err
	}
	if err := inclusion(cp, uint64(p.LogIndex), uint64(p.TreeSize), root, leaf, hashes); err != nil {
		return Result{}, err
	}
	if err := v.checkOrigin(cp); err != nil {
		return Result{}, err
	}
	return Result{Statement: st, Checkpoint: cp}, nil
}

func (v *Verifier) checkOrigin(cp *log.Checkpoint) error {
	if want := fmt.Sprintf("/%d", v.treeID); !strings.HasSuffix(cp.Origin, want) {
		return fail(CheckCheckpoint, "origin %q is not this log's (tree ID %d)", cp.Origin, v.treeID)
	}
	return nil
}

// Entry is a log entry as a log's Rekor API serves it.
type Entry struct {
	Body           []byte
	LogIndex       int64
	IntegratedTime int64
	LogID          string
	SET            []byte
	// Envelope is the record the body commits to; nil when the log keeps
	// records private and the reader has no read credential.
	Envelope []byte
}

// EntryResult is what a verified entry proves.
type EntryResult struct {
	// KeyID is the signing key the entry names, valid at its time.
	KeyID string
	// Statement is the signed record; nil without the envelope.
	Statement *receipt.Statement
}

// Entry verifies a log entry without its inclusion proof (check that
// with [Verifier.Inclusion] or a monitor's re-hashing): the log ID and the
// SET, so the integrated time is the log's; that the body names a key of
// the set valid at that time; and, with the envelope, that it is the one
// the body commits to and that its signature verifies with that key.
// Without a key set only what the log key proves is checked, and the
// envelope is matched to the entry but its signature is not checked.
// Failures are *CheckError.
func (v *Verifier) Entry(e Entry) (EntryResult, error) {
	if e.LogID != v.logID {
		return EntryResult{}, fail(CheckLogID, "entry says %q, the log key's ID is %q", e.LogID, v.logID)
	}
	if err := checkSET(v.set, e.SET, e.Body, e.IntegratedTime, e.LogID, e.LogIndex); err != nil {
		return EntryResult{}, err
	}
	b, err := entry.ParseBody(e.Body)
	if err != nil {
		return EntryResult{}, failWith(CheckEntry, err)
	}
	if len(b.Spec.Signatures) != 1 {
		return EntryResult{}, fail(CheckEntry, "the entry names %d signers, want 1", len(b.Spec.Signatures))
	}
	named, err := base64.StdEncoding.DecodeString(b.Spec.Signatures[0].Verifier)
	if err != nil {
		return EntryResult{}, fail(CheckEntry, "the signer's key is not base64")
	}
	if v.keys == nil {
		// No key set: the envelope can only be matched to the entry.
		if e.Envelope == nil {
			return EntryResult{}, nil
		}
		want, err := entry.DSSEBody(e.Envelope, named)
		if err != nil {
			return EntryResult{}, failWith(CheckEnvelope, err)
		}
		if !bytes.Equal(want, e.Body) {
			return EntryResult{}, fail(CheckEnvelope, "the envelope is not the one the logged entry commits to")
		}
		return EntryResult{}, nil
	}
	sk, err := v.selectKey("", named, e.IntegratedTime)
	if err != nil {
		return EntryResult{}, err
	}
	id, _ := receipt.KeyID(sk.verifierKey())
	res := EntryResult{KeyID: id}
	if e.Envelope == nil {
		return res, nil
	}
	want, err := entry.DSSEBody(e.Envelope, sk.pem)
	if err != nil {
		return EntryResult{}, failWith(CheckEnvelope, err)
	}
	if !bytes.Equal(want, e.Body) {
		return EntryResult{}, fail(CheckEnvelope, "the envelope is not the one the logged entry commits to")
	}
	st, err := receipt.Open(e.Envelope, sk.verifier)
	if err != nil {
		return EntryResult{}, failWith(CheckEnvelope, err)
	}
	if st.Predicate.Daemon.KeyID != "" && st.Predicate.Daemon.KeyID != id {
		return EntryResult{}, fail(CheckEnvelope, "the record names signing key %s, it is signed by %s", st.Predicate.Daemon.KeyID, id)
	}
	res.Statement = &st
	return res, nil
}

// Inclusion checks an inclusion proof of this log: the checkpoint is
// signed by the log key and is this log's, and leafHash is at index in it.
func (v *Verifier) Inclusion(checkpoint []byte, index, treeSize uint64, rootHash, leafHash []byte, hashes [][]byte) (*log.Checkpoint, error) {
	cp, err := v.Checkpoint(checkpoint)
	if err != nil {
		return nil, err
	}
	if err := v.checkOrigin(cp); err != nil {
		return nil, err
	}
	if err := inclusion(cp, index, treeSize, rootHash, leafHash, hashes); err != nil {
		return nil, err
	}
	return cp, nil
}

func checkSET(v signature.Verifier, set, body []byte, integratedTime int64, logID string, logIndex int64) error {
	payload, err := entry.SETPayload(body, integratedTime, logID, logIndex)
	if err != nil {
		return failWith(CheckSET, err)
	}
	if err := v.VerifySignature(bytes.NewReader(set), bytes.NewReader(payload)); err != nil {
		return fail(CheckSET, "does not verify with the log key (integrated time, log index, log ID or entry changed?)")
	}
	return nil
}
