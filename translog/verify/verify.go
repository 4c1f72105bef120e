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
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

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

// ErrFailed wraps every verification failure; the message names the check.
var ErrFailed = errors.New("verification failed")

func fail(check, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrFailed, check, fmt.Sprintf(format, args...))
}

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
		return nil, fail("checkpoint", "no origin line")
	}
	v, err := verifierFor(origin)
	if err != nil {
		return nil, fail("checkpoint", "origin %q: %v", origin, err)
	}
	cp, _, _, err := log.ParseCheckpoint(raw, origin, v)
	if err != nil {
		return nil, fail("checkpoint signature", "%v", err)
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
		return fail("inclusion proof", "proof is for tree size %d but the checkpoint is for %d", treeSize, cp.Size)
	}
	if !bytes.Equal(cp.Hash, rootHash) {
		return fail("inclusion proof", "proof root hash does not match the checkpoint root")
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, treeSize, leafHash, hashes, rootHash); err != nil {
		return fail("inclusion proof", "%v", err)
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
		return fail("consistency", "checkpoints are from different logs (%q, %q)", a.Origin, b.Origin)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.Size, b.Size, hashes, a.Hash, b.Hash); err != nil {
		return fail("consistency", "%v", err)
	}
	return nil
}

// SET checks a Signed Entry Timestamp with the log key.
func SET(set, body []byte, integratedTime int64, logID string, logIndex int64, logKey crypto.PublicKey) error {
	v, err := signature.LoadVerifier(logKey, crypto.SHA256)
	if err != nil {
		return fail("signed entry timestamp", "%v", err)
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
// receipts of one log, make a [Verifier] once and use its Receipt.
func Receipt(r decision.Receipt, logKey, signerKey crypto.PublicKey) (Result, error) {
	v, err := New(logKey)
	if err != nil {
		return Result{}, err
	}
	return v.Receipt(r, signerKey)
}

// maxCached bounds each of a Verifier's caches; when one is full it is
// emptied and refilled, so a stream of receipts with ever new checkpoints
// costs what it would without the cache and no more memory.
const maxCached = 256

// Verifier verifies receipts of one log. It derives what the log key
// implies (log ID, tree ID, the SET and checkpoint verifiers) once, and it
// remembers the checkpoints whose signatures it has checked, so receipts
// proven against the same checkpoint — an audit export, a directory of
// receipts fetched together — cost that signature once. It is safe for
// concurrent use.
type Verifier struct {
	logKey crypto.PublicKey
	logID  string
	treeID int64
	set    signature.Verifier

	mu          sync.Mutex
	notes       map[string]note.Verifier  // checkpoint origin → signed-note verifier
	checkpoints map[string]log.Checkpoint // checkpoint text → parsed, signature checked
	signers     map[string]signerKey      // decision-signing key's PEM → its verifier
}

type signerKey struct {
	verifier signature.Verifier
	pem      []byte
}

// New makes a Verifier for the log whose public key is logKey.
func New(logKey crypto.PublicKey) (*Verifier, error) {
	treeID, err := entry.TreeID(logKey)
	if err != nil {
		return nil, fail("log key", "%v", err)
	}
	logID, err := entry.LogID(logKey)
	if err != nil {
		return nil, fail("log key", "%v", err)
	}
	set, err := signature.LoadVerifier(logKey, crypto.SHA256)
	if err != nil {
		return nil, fail("log key", "%v", err)
	}
	return &Verifier{
		logKey: logKey, logID: logID, treeID: treeID, set: set,
		notes:       map[string]note.Verifier{},
		checkpoints: map[string]log.Checkpoint{},
		signers:     map[string]signerKey{},
	}, nil
}

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
		return signerKey{}, fail("signer key", "%v", err)
	}
	v.mu.Lock()
	s, ok := v.signers[string(pem)]
	v.mu.Unlock()
	if ok {
		return s, nil
	}
	sv, err := signature.LoadVerifier(key, crypto.SHA256)
	if err != nil {
		return signerKey{}, fail("signer key", "%v", err)
	}
	s = signerKey{verifier: sv, pem: pem}
	v.mu.Lock()
	remember(v.signers, string(pem), s)
	v.mu.Unlock()
	return s, nil
}

// Receipt verifies a decision receipt of this log signed with signerKey;
// see the package-level [Receipt] for what is checked.
func (v *Verifier) Receipt(r decision.Receipt, signerKey crypto.PublicKey) (Result, error) {
	sk, err := v.signer(signerKey)
	if err != nil {
		return Result{}, err
	}
	st, err := receipt.Open(r.Envelope, sk.verifier)
	if err != nil {
		return Result{}, fail("envelope", "%v", err)
	}
	rec := st.Predicate
	switch {
	case r.DecisionID != rec.DecisionID:
		return Result{}, fail("decision_id", "receipt says %q, signed record says %q", r.DecisionID, rec.DecisionID)
	case r.Kind != "" && r.Kind != rec.Kind:
		// (Receipts made before records had kinds carry none; the signed
		// predicate type says what the record is either way.)
		return Result{}, fail("kind", "receipt says %q, signed record is a %s", r.Kind, rec.Kind)
	case r.Allow != rec.Allowed():
		return Result{}, fail("allow", "receipt says %v, signed %s record says %v", r.Allow, rec.Kind, rec.Allowed())
	case !slices.Equal(r.Reasons, rec.Reasons()):
		return Result{}, fail("reasons", "receipt reasons differ from the signed record")
	case !slices.Equal(r.Alerts, rec.Alerts()):
		return Result{}, fail("alerts", "receipt alerts differ from the signed record")
	}
	body, err := entry.DSSEBody(r.Envelope, sk.pem)
	if err != nil {
		return Result{}, fail("log entry", "%v", err)
	}
	leaf := entry.LeafHash(body)
	if want := entry.UUID(v.treeID, leaf); r.UUID != want {
		return Result{}, fail("uuid", "receipt says %q, recomputed from the envelope and log key %q", r.UUID, want)
	}
	if r.LogID != v.logID {
		return Result{}, fail("log_id", "receipt says %q, the log key's ID is %q", r.LogID, v.logID)
	}
	if err := checkSET(v.set, r.SignedEntryTimestamp, body, r.IntegratedTime, r.LogID, r.LogIndex); err != nil {
		return Result{}, err
	}
	p := r.InclusionProof
	if p == nil {
		return Result{}, fail("inclusion proof", "receipt has none (fetch it with gatelog decide --out or GET /v1/decisions/{id})")
	}
	if p.LogIndex != r.LogIndex {
		return Result{}, fail("inclusion proof", "proof is for index %d, receipt for %d", p.LogIndex, r.LogIndex)
	}
	if p.LogIndex < 0 || p.TreeSize <= p.LogIndex {
		return Result{}, fail("inclusion proof", "index %d is outside tree size %d", p.LogIndex, p.TreeSize)
	}
	root, err := hex.DecodeString(p.RootHash)
	if err != nil {
		return Result{}, fail("inclusion proof", "root hash is not hex")
	}
	hashes := make([][]byte, len(p.Hashes))
	for i, h := range p.Hashes {
		if hashes[i], err = hex.DecodeString(h); err != nil {
			return Result{}, fail("inclusion proof", "hash %d is not hex", i)
		}
	}
	cp, err := v.Checkpoint([]byte(p.Checkpoint))
	if err != nil {
		return Result{}, err
	}
	if err := inclusion(cp, uint64(p.LogIndex), uint64(p.TreeSize), root, leaf, hashes); err != nil {
		return Result{}, err
	}
	if want := fmt.Sprintf("/%d", v.treeID); !strings.HasSuffix(cp.Origin, want) {
		return Result{}, fail("checkpoint", "origin %q is not this log's (tree ID %d)", cp.Origin, v.treeID)
	}
	return Result{Statement: st, Checkpoint: cp}, nil
}

func checkSET(v signature.Verifier, set, body []byte, integratedTime int64, logID string, logIndex int64) error {
	payload, err := entry.SETPayload(body, integratedTime, logID, logIndex)
	if err != nil {
		return fail("signed entry timestamp", "%v", err)
	}
	if err := v.VerifySignature(bytes.NewReader(set), bytes.NewReader(payload)); err != nil {
		return fail("signed entry timestamp", "does not verify with the log key (integrated time, log index, log ID or entry changed?)")
	}
	return nil
}
