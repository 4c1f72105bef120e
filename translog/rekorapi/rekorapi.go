// Package rekorapi serves a gatelog log through the Rekor v1 REST API, so
// that rekor-cli, Rekor's Go client and sigstore tools read and verify it
// unchanged. It is read-only: entries enter the log through decide calls.
//
// An entry is public as its leaf: the canonical dsse body (payload and
// envelope hashes, signature, verifier key), its inclusion proof and its
// Signed Entry Timestamp, which is all a Rekor client verifies. The stored
// envelope, i.e. the signed decision record with who asked for what, is
// served as the entry's attestation only to callers Options.Access lets
// see records.
package rekorapi

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/transparency-dev/formats/log"

	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
)

// Log is what the API needs of a log (translog.Log).
type Log interface {
	Checkpoint(ctx context.Context) ([]byte, *log.Checkpoint, error)
	InclusionProof(ctx context.Context, index int64, wait bool) (translog.Proof, error)
	ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error)
	RootAt(ctx context.Context, size uint64) ([]byte, error)
	ByIndex(ctx context.Context, index int64) (translog.Entry, error)
	ByLeafHash(ctx context.Context, leaf []byte) (translog.Entry, error)
	Search(ctx context.Context, hash string) ([]translog.Entry, error)
	TreeID() int64
	LogID() string
	PublicKey() crypto.PublicKey
}

// RekorV1Checkpointer is implemented by logs (translog.Log) that restate
// their own checkpoints in Rekor v1's origin form "<host> - <tree id>".
type RekorV1Checkpointer interface {
	RekorV1Checkpoint(raw []byte) ([]byte, error)
}

// maxCheckpoint bounds a checkpoint posted for restating.
const maxCheckpoint = 4 << 10

// maxSearchQueries is Rekor's limit on queries in one retrieve call.
const maxSearchQueries = 10

// maxBody bounds a POST body.
const maxBody = 1 << 20

// proofWait bounds how long an entry read waits for a checkpoint that
// covers a just-sequenced entry (one checkpoint interval, normally).
const proofWait = 10 * time.Second

// View is what an entry read shows its caller.
type View int

const (
	// Refused means Access has answered the request itself (401 for a bad
	// credential, 403, 429, 503); nothing more is written. It is the zero
	// View, so an access rule that forgets to decide refuses.
	Refused View = iota
	// Leaf is the public view: body, inclusion proof and SET, no
	// attestation.
	Leaf
	// Full adds each entry's stored DSSE envelope as its attestation.
	Full
)

// Options says who sees what.
type Options struct {
	// Access decides, per request to an entry endpoint (GET
	// /api/v1/log/entries…, POST /api/v1/log/entries/retrieve), which View
	// the caller gets, before any of the request's body is read. Nil
	// serves every caller the Leaf view. The daemon's rule: no credential
	// is the Leaf view, a credential with the read permission Full, any
	// other credential Refused (or Full for all with --public-records).
	Access func(w http.ResponseWriter, r *http.Request) View
}

// PublicRecords is an Access rule that shows every caller full records,
// for logs whose operator chose to publish them.
func PublicRecords(http.ResponseWriter, *http.Request) View { return Full }

type api struct {
	log    Log
	pubPEM []byte
	treeID string
	access func(w http.ResponseWriter, r *http.Request) View
}

// Handler serves the Rekor v1 API under /api/v1/.
func Handler(l Log, opts Options) http.Handler {
	// An ECDSA log key always marshals; a nil PEM is answered with a 500.
	pub, _ := cryptoutils.MarshalPublicKeyToPEM(l.PublicKey())
	a := &api{log: l, pubPEM: pub, treeID: strconv.FormatInt(l.TreeID(), 10), access: opts.Access}
	if a.access == nil {
		a.access = func(http.ResponseWriter, *http.Request) View { return Leaf }
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/log", a.logInfo)
	mux.HandleFunc("GET /api/v1/log/publicKey", a.publicKey)
	mux.HandleFunc("GET /api/v1/log/proof", a.proof)
	mux.HandleFunc("GET /api/v1/log/entries", a.entryByIndex)
	mux.HandleFunc("GET /api/v1/log/entries/{uuid}", a.entryByUUID)
	mux.HandleFunc("POST /api/v1/log/entries/retrieve", a.retrieve)
	mux.HandleFunc("POST /api/v1/index/retrieve", a.searchIndex)
	if c, ok := l.(RekorV1Checkpointer); ok {
		mux.HandleFunc("POST /api/v1/log/checkpoint/rekor-v1", func(w http.ResponseWriter, r *http.Request) {
			rekorV1Checkpoint(w, r, c)
		})
	}
	mux.HandleFunc("POST /api/v1/log/entries", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "this log takes entries only through gatelog's decide API")
	})
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "path %s was not found", r.URL.Path)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, Error{Code: int64(code), Message: fmt.Sprintf(format, args...)})
}

// writeLogError maps the log's sentinel errors onto Rekor's status codes.
func writeLogError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, translog.ErrNotFound):
		writeError(w, http.StatusNotFound, "%v", err)
	case errors.Is(err, translog.ErrCorrupt):
		writeError(w, http.StatusInternalServerError, "%v", err)
	default:
		writeError(w, http.StatusServiceUnavailable, "%v", err)
	}
}

// checkTreeID rejects a treeID parameter naming another tree.
func (a *api) checkTreeID(w http.ResponseWriter, r *http.Request) bool {
	if t := r.URL.Query().Get("treeID"); t != "" && t != a.treeID {
		writeError(w, http.StatusBadRequest, "invalid tree ID specified: %s (this log is %s)", t, a.treeID)
		return false
	}
	return true
}

func (a *api) logInfo(w http.ResponseWriter, r *http.Request) {
	raw, cp, err := a.log.Checkpoint(r.Context())
	if err != nil {
		writeLogError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, LogInfo{
		InactiveShards: []any{},
		RootHash:       hex.EncodeToString(cp.Hash),
		SignedTreeHead: string(raw),
		TreeID:         a.treeID,
		TreeSize:       int64(cp.Size),
	})
}

func (a *api) publicKey(w http.ResponseWriter, r *http.Request) {
	if !a.checkTreeID(w, r) {
		return
	}
	if a.pubPEM == nil {
		writeError(w, http.StatusInternalServerError, "the log key cannot be encoded as PEM")
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(a.pubPEM)
}

func (a *api) proof(w http.ResponseWriter, r *http.Request) {
	if !a.checkTreeID(w, r) {
		return
	}
	q := r.URL.Query()
	first := int64(1)
	if s := q.Get("firstSize"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 1 {
			writeError(w, http.StatusBadRequest, "firstSize %q: want an integer >= 1", s)
			return
		}
		first = v
	}
	last, err := strconv.ParseInt(q.Get("lastSize"), 10, 64)
	if err != nil || last < 1 {
		writeError(w, http.StatusBadRequest, "lastSize %q: want an integer >= 1", q.Get("lastSize"))
		return
	}
	if first > last {
		writeError(w, http.StatusBadRequest, "firstSize(%d) must be less than or equal to lastSize(%d)", first, last)
		return
	}
	_, cp, err := a.log.Checkpoint(r.Context())
	if err != nil {
		writeLogError(w, err)
		return
	}
	if uint64(last) > cp.Size {
		writeError(w, http.StatusBadRequest, "lastSize(%d) is beyond the current tree size %d", last, cp.Size)
		return
	}
	hashes, err := a.log.ConsistencyProof(r.Context(), uint64(first), uint64(last))
	if err != nil {
		writeLogError(w, err)
		return
	}
	root, err := a.log.RootAt(r.Context(), uint64(last))
	if err != nil {
		writeLogError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ConsistencyProof{Hashes: hexAll(hashes), RootHash: hex.EncodeToString(root)})
}

func hexAll(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h)
	}
	return out
}

// view asks the access rule what this caller sees. Answers to entry reads
// differ by credential, so caches must key them by it.
func (a *api) view(w http.ResponseWriter, r *http.Request) View {
	w.Header().Add("Vary", "Authorization")
	return a.access(w, r)
}

// anon renders an entry with an inclusion proof up to the latest
// checkpoint, waiting briefly for one that covers a fresh entry; the
// stored envelope only in the Full view.
func (a *api) anon(ctx context.Context, e translog.Entry, v View) (LogEntryAnon, error) {
	ctx, cancel := context.WithTimeout(ctx, proofWait)
	defer cancel()
	p, err := a.log.InclusionProof(ctx, e.Index, true)
	if err != nil {
		return LogEntryAnon{}, err
	}
	var att *Attestation
	if v == Full {
		att = &Attestation{Data: e.Envelope}
	}
	return LogEntryAnon{
		Attestation:    att,
		Body:           base64.StdEncoding.EncodeToString(e.Body),
		IntegratedTime: e.IntegratedTime,
		LogID:          a.log.LogID(),
		LogIndex:       e.Index,
		Verification: &Verification{
			InclusionProof: &InclusionProof{
				Checkpoint: string(p.Checkpoint),
				Hashes:     hexAll(p.Hashes),
				LogIndex:   p.Index,
				RootHash:   hex.EncodeToString(p.RootHash),
				TreeSize:   p.TreeSize,
			},
			SignedEntryTimestamp: e.SignedEntryTimestamp,
		},
	}, nil
}

func (a *api) entryByIndex(w http.ResponseWriter, r *http.Request) {
	v := a.view(w, r)
	if v == Refused {
		return
	}
	s := r.URL.Query().Get("logIndex")
	idx, err := strconv.ParseInt(s, 10, 64)
	if err != nil || idx < 0 {
		writeError(w, http.StatusBadRequest, "logIndex %q: want an integer >= 0", s)
		return
	}
	e, err := a.log.ByIndex(r.Context(), idx)
	if err != nil {
		writeLogError(w, err)
		return
	}
	a.writeEntry(w, r, e, v)
}

func (a *api) writeEntry(w http.ResponseWriter, r *http.Request, e translog.Entry, v View) {
	anon, err := a.anon(r.Context(), e, v)
	if err != nil {
		writeLogError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, LogEntry{e.UUID: anon})
}

// leafFromID parses an entry UUID (80 hex) or a bare leaf hash (64 hex),
// rejecting a tree ID that is not this log's.
func (a *api) leafFromID(id string) ([]byte, error) {
	treeID, leaf, err := entry.ParseUUID(id)
	if err != nil {
		return nil, err
	}
	if len(id) == 80 && treeID != a.log.TreeID() {
		return nil, fmt.Errorf("%w: entry %s names tree %d, this log is tree %s", translog.ErrNotFound, id, treeID, a.treeID)
	}
	return leaf, nil
}

func (a *api) entryByUUID(w http.ResponseWriter, r *http.Request) {
	v := a.view(w, r)
	if v == Refused {
		return
	}
	leaf, err := a.leafFromID(r.PathValue("uuid"))
	if errors.Is(err, translog.ErrNotFound) {
		writeError(w, http.StatusNotFound, "%v", err)
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	e, err := a.log.ByLeafHash(r.Context(), leaf)
	if err != nil {
		writeLogError(w, err)
		return
	}
	a.writeEntry(w, r, e, v)
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading body: %v", err)
		return false
	}
	if err := json.Unmarshal(raw, v); err != nil {
		writeError(w, http.StatusBadRequest, "body: %v", err)
		return false
	}
	return true
}

func (a *api) retrieve(w http.ResponseWriter, r *http.Request) {
	v := a.view(w, r)
	if v == Refused {
		return
	}
	var q SearchLogQuery
	if !decodeBody(w, r, &q) {
		return
	}
	if n := len(q.EntryUUIDs) + len(q.LogIndexes) + len(q.Entries); n > maxSearchQueries {
		writeError(w, http.StatusUnprocessableEntity, "more than max allowed %d entries in request", maxSearchQueries)
		return
	}
	var leaves [][]byte
	for _, id := range q.EntryUUIDs {
		leaf, err := a.leafFromID(id)
		if errors.Is(err, translog.ErrNotFound) {
			continue
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid entryID %s: %v", id, err)
			return
		}
		leaves = append(leaves, leaf)
	}
	for i, pe := range q.Entries {
		ls, err := proposedLeaves(pe)
		if err != nil {
			writeError(w, http.StatusBadRequest, "entries[%d]: %v", i, err)
			return
		}
		leaves = append(leaves, ls...)
	}
	out := []LogEntry{}
	add := func(e translog.Entry, err error) bool {
		if errors.Is(err, translog.ErrNotFound) {
			return true
		}
		if err == nil {
			var anon LogEntryAnon
			if anon, err = a.anon(r.Context(), e, v); err == nil {
				out = append(out, LogEntry{e.UUID: anon})
				return true
			}
		}
		writeLogError(w, err)
		return false
	}
	for _, leaf := range leaves {
		if !add(a.log.ByLeafHash(r.Context(), leaf)) {
			return
		}
	}
	for _, idx := range q.LogIndexes {
		if idx == nil || *idx < 0 {
			writeError(w, http.StatusBadRequest, "logIndexes: want integers >= 0")
			return
		}
		if !add(a.log.ByIndex(r.Context(), *idx)) {
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// proposedLeaves canonicalizes a proposed dsse entry into the leaf hashes
// it would have in the log: one per verifier key, since a gatelog entry
// attributes its signatures to a single key.
func proposedLeaves(pe ProposedEntry) ([][]byte, error) {
	if pe.Kind != entry.Kind || pe.APIVersion != entry.APIVersion {
		return nil, fmt.Errorf("kind %q version %q: this log holds only %s %s entries", pe.Kind, pe.APIVersion, entry.Kind, entry.APIVersion)
	}
	s := pe.Spec
	if pc := s.ProposedContent; pc != nil {
		if len(pc.Verifiers) == 0 {
			return nil, errors.New("proposedContent.verifiers: at least one public key is required")
		}
		var leaves [][]byte
		for i, v := range pc.Verifiers {
			pub, err := cryptoutils.UnmarshalPEMToPublicKey(v)
			if err != nil {
				return nil, fmt.Errorf("proposedContent.verifiers[%d]: %v", i, err)
			}
			pem, err := entry.PublicKeyPEM(pub)
			if err != nil {
				return nil, fmt.Errorf("proposedContent.verifiers[%d]: %v", i, err)
			}
			body, err := entry.DSSEBody([]byte(pc.Envelope), pem)
			if err != nil {
				return nil, fmt.Errorf("proposedContent.envelope: %v", err)
			}
			leaves = append(leaves, entry.LeafHash(body))
		}
		return leaves, nil
	}
	if s.EnvelopeHash == nil || s.PayloadHash == nil || len(s.Signatures) == 0 {
		return nil, errors.New("either proposedContent or envelopeHash, payloadHash, and signatures must be present")
	}
	b := entry.Body{APIVersion: entry.APIVersion, Kind: entry.Kind, Spec: entry.BodySpec{
		EnvelopeHash: entry.Hash{Algorithm: s.EnvelopeHash.Algorithm, Value: s.EnvelopeHash.Value},
		PayloadHash:  entry.Hash{Algorithm: s.PayloadHash.Algorithm, Value: s.PayloadHash.Value},
	}}
	for _, sig := range s.Signatures {
		b.Spec.Signatures = append(b.Spec.Signatures, entry.Signature{Signature: sig.Signature, Verifier: base64.StdEncoding.EncodeToString(sig.Verifier)})
	}
	body, err := entry.Canonical(b)
	if err != nil {
		return nil, err
	}
	return [][]byte{entry.LeafHash(body)}, nil
}

func (a *api) searchIndex(w http.ResponseWriter, r *http.Request) {
	var q SearchIndex
	if !decodeBody(w, r, &q) {
		return
	}
	if q.Hash == "" {
		writeError(w, http.StatusBadRequest, "this log is searched by hash only (the sha256 of a decision's request, its DSSE payload or its envelope)")
		return
	}
	if _, err := translog.ParseSearchHash(q.Hash); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	es, err := a.log.Search(r.Context(), q.Hash)
	if err != nil {
		writeLogError(w, err)
		return
	}
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.UUID)
	}
	writeJSON(w, http.StatusOK, out)
}

// rekorV1Checkpoint is POST /api/v1/log/checkpoint/rekor-v1, a gatelog
// extension: the body is one of this log's checkpoints (as served in an
// inclusion proof), the reply the same tree head signed in Rekor v1's form,
// for Sigstore bundles (gatelog log bundle).
func rekorV1Checkpoint(w http.ResponseWriter, r *http.Request, c RekorV1Checkpointer) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCheckpoint))
	if err != nil {
		writeError(w, http.StatusBadRequest, "checkpoint: %v", err)
		return
	}
	out, err := c.RekorV1Checkpoint(raw)
	switch {
	case errors.Is(err, translog.ErrNotOurCheckpoint):
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	case err != nil:
		writeLogError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(out)
}
