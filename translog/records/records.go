// Package records reads a log's signed records back, in index order and
// each one checked: from a log directory on disk (a stopped daemon's) or
// through a daemon's Rekor v1 API. Replaying a policy over its history
// (gatelog policy replay) is what it is for.
package records

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"iter"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/rekorapi"
	"github.com/gatelog/gatelog/translog/verify"
)

// Record is a signed record read back from the log, with its index.
type Record struct {
	Index  int64
	Record decision.Record
}

// recordOpener checks that an envelope is the one a leaf commits to and
// is signed by one of the trusted decision keys, and returns its record.
type recordOpener struct {
	keys map[string]trustedKey // by PEM, as the leaf names its verifier
}

type trustedKey struct {
	verifier signature.Verifier
	pem      []byte
}

func newRecordOpener(signerKeys []crypto.PublicKey) (*recordOpener, error) {
	if len(signerKeys) == 0 {
		return nil, fmt.Errorf("no decision signing key to check records with")
	}
	o := &recordOpener{keys: map[string]trustedKey{}}
	for _, k := range signerKeys {
		v, err := signature.LoadVerifier(k, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("decision signing key: %w", err)
		}
		pemKey, err := entry.PublicKeyPEM(k)
		if err != nil {
			return nil, fmt.Errorf("decision signing key: %w", err)
		}
		o.keys[string(pemKey)] = trustedKey{verifier: v, pem: pemKey}
	}
	return o, nil
}

func (o *recordOpener) open(index int64, body, envelope []byte) (Record, error) {
	b, err := entry.ParseBody(body)
	if err != nil {
		return Record{}, fmt.Errorf("entry %d: %w", index, err)
	}
	if len(b.Spec.Signatures) == 0 {
		return Record{}, fmt.Errorf("entry %d: the entry names no signer", index)
	}
	named, err := base64.StdEncoding.DecodeString(b.Spec.Signatures[0].Verifier)
	if err != nil {
		return Record{}, fmt.Errorf("entry %d: verifier is not base64: %v", index, err)
	}
	k, ok := o.keys[string(named)]
	if !ok {
		return Record{}, fmt.Errorf("entry %d is signed by a key that is not one of the trusted decision keys", index)
	}
	want, err := entry.DSSEBody(envelope, k.pem)
	if err != nil {
		return Record{}, fmt.Errorf("entry %d: %w", index, err)
	}
	if !bytes.Equal(entry.LeafHash(want), entry.LeafHash(body)) {
		return Record{}, fmt.Errorf("entry %d: the stored envelope is not the one the log entry commits to", index)
	}
	st, err := receipt.Open(envelope, k.verifier)
	if err != nil {
		return Record{}, fmt.Errorf("entry %d: %w", index, err)
	}
	return Record{Index: index, Record: st.Predicate}, nil
}

// Local reads the records with log indexes from up to (not including) to
// from the log in dir, read directly (a stopped daemon's DATA/log: a
// running one holds its envelope store; read it with Remote); to <= 0
// means up to the latest checkpoint. The checkpoint must verify with
// logKey, and every record is checked against its leaf and must be signed
// by one of signerKeys.
func Local(ctx context.Context, dir string, logKey crypto.PublicKey, signerKeys []crypto.PublicKey, from, to int64) (iter.Seq2[Record, error], int64, error) {
	op, err := newRecordOpener(signerKeys)
	if err != nil {
		return nil, 0, err
	}
	r, err := translog.OpenReader(dir, logKey)
	if err != nil {
		return nil, 0, err
	}
	_, cp, err := r.Checkpoint(ctx)
	r.Close()
	if err != nil {
		return nil, 0, err
	}
	to, err = clampRange(from, to, int64(cp.Size))
	if err != nil {
		return nil, 0, err
	}
	return func(yield func(Record, error) bool) {
		// The reader holds the envelope store open only while iterating.
		r, err := translog.OpenReader(dir, logKey)
		if err != nil {
			yield(Record{}, err)
			return
		}
		defer r.Close()
		for e, err := range r.Entries(ctx, uint64(from), uint64(to)) {
			if err != nil {
				yield(Record{}, err)
				return
			}
			if !yield(op.open(e.Index, e.Body, e.Envelope)) {
				return
			}
		}
	}, to, nil
}

func clampRange(from, to, size int64) (int64, error) {
	if to <= 0 || to > size {
		to = size
	}
	if from < 0 || from > to {
		return 0, fmt.Errorf("log index range %d..%d is outside the log (size %d)", from, to, size)
	}
	return to, nil
}

// Remote reads the records with log indexes from up to
// (not including) to through a daemon's Rekor v1 API (GET
// /api/v1/log/entries?logIndex=N); to <= 0 means up to the log's size.
// Each entry is checked with v (made with the log key and the daemon's
// signing key set): its SET, that it names a signing key valid when it was
// logged, that the envelope is the one it commits to and is signed by that
// key; a failure wraps verify.ErrFailed. Records are private by default,
// so c needs a read credential; without one the first entry fails with
// rekorapi.ErrRecordsPrivate.
func Remote(ctx context.Context, c *rekorapi.Client, v *verify.Verifier, from, to int64) (iter.Seq2[Record, error], int64, error) {
	if v.SigningKeys() == nil {
		return nil, 0, fmt.Errorf("no decision signing key to check records with")
	}
	info, err := c.LogInfo(ctx)
	if err != nil {
		return nil, 0, err
	}
	to, err = clampRange(from, to, info.TreeSize)
	if err != nil {
		return nil, 0, err
	}
	return func(yield func(Record, error) bool) {
		for i := from; i < to; i++ {
			rec, err := remoteRecord(ctx, c, v, i)
			if !yield(rec, err) || err != nil {
				return
			}
		}
	}, to, nil
}

func remoteRecord(ctx context.Context, c *rekorapi.Client, v *verify.Verifier, index int64) (Record, error) {
	_, e, err := c.EntryByIndex(ctx, index)
	if err != nil {
		return Record{}, fmt.Errorf("entry %d: %w", index, err)
	}
	body, err := base64.StdEncoding.DecodeString(e.Body)
	if err != nil {
		return Record{}, fmt.Errorf("entry %d: body is not base64: %w", index, err)
	}
	if e.LogIndex != index || e.Verification == nil {
		return Record{}, fmt.Errorf("entry %d: the server answered for index %d, or without SET", index, e.LogIndex)
	}
	// Replay needs the records themselves: with a log that keeps them
	// private, c must carry a read credential (rekorapi.WithBearer).
	env, err := c.Envelope(e)
	if err != nil {
		return Record{}, fmt.Errorf("entry %d: %w", index, err)
	}
	res, err := v.Entry(verify.Entry{Body: body, LogIndex: e.LogIndex, IntegratedTime: e.IntegratedTime, LogID: e.LogID, SET: e.Verification.SignedEntryTimestamp, Envelope: env})
	if err != nil {
		return Record{}, fmt.Errorf("entry %d: %w", index, err)
	}
	return Record{Index: index, Record: res.Statement.Predicate}, nil
}
