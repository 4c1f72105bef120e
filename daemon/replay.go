package daemon

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/rekorapi"
	"github.com/gatelog/gatelog/translog/verify"
)

// LoggedRecord is a signed decision record read back from the log.
type LoggedRecord struct {
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

func (o *recordOpener) open(index int64, body, envelope []byte) (LoggedRecord, error) {
	b, err := entry.ParseBody(body)
	if err != nil {
		return LoggedRecord{}, fmt.Errorf("entry %d: %w", index, err)
	}
	if len(b.Spec.Signatures) == 0 {
		return LoggedRecord{}, fmt.Errorf("entry %d: the entry names no signer", index)
	}
	named, err := base64.StdEncoding.DecodeString(b.Spec.Signatures[0].Verifier)
	if err != nil {
		return LoggedRecord{}, fmt.Errorf("entry %d: verifier is not base64: %v", index, err)
	}
	k, ok := o.keys[string(named)]
	if !ok {
		return LoggedRecord{}, fmt.Errorf("entry %d is signed by a key that is not one of the trusted decision keys", index)
	}
	want, err := entry.DSSEBody(envelope, k.pem)
	if err != nil {
		return LoggedRecord{}, fmt.Errorf("entry %d: %w", index, err)
	}
	if !bytes.Equal(entry.LeafHash(want), entry.LeafHash(body)) {
		return LoggedRecord{}, fmt.Errorf("entry %d: the stored envelope is not the one the log entry commits to", index)
	}
	st, err := receipt.Open(envelope, k.verifier)
	if err != nil {
		return LoggedRecord{}, fmt.Errorf("entry %d: %w", index, err)
	}
	return LoggedRecord{Index: index, Record: st.Predicate}, nil
}

// readPublicKey reads a PEM public key file.
func readPublicKey(path string) (crypto.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := cryptoutils.UnmarshalPEMToPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// localSignerKeys are the decision keys a data directory's daemon has
// signed with: keys/decision.pub and every key in keys/signers.json.
func localSignerKeys(dataDir string) ([]crypto.PublicKey, error) {
	first, err := readPublicKey(filepath.Join(dataDir, publicKeyPath(DecisionKeyFile)))
	if err != nil {
		return nil, fmt.Errorf("decision key: %w", err)
	}
	keys := []crypto.PublicKey{first}
	raw, err := os.ReadFile(filepath.Join(dataDir, SignersFile))
	if errors.Is(err, os.ErrNotExist) {
		return keys, nil
	}
	if err != nil {
		return nil, err
	}
	ks, err := ParseSigningKeys(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SignersFile, err)
	}
	for _, k := range ks.Keys {
		pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(k.PublicKey))
		if err != nil {
			return nil, fmt.Errorf("%s: key %s: %w", SignersFile, k.KeyID, err)
		}
		keys = append(keys, pub)
	}
	return keys, nil
}

// LocalRecords reads the decision records with log indexes from up to
// (not including) to from a stopped daemon's data directory (a running one
// holds its envelope store; read it over the API with RemoteRecords);
// to <= 0 means up to the latest checkpoint. The checkpoint must verify
// with the log's public key, and every record is checked against its leaf
// and the daemon's decision keys (all read from dataDir/keys).
func LocalRecords(ctx context.Context, dataDir string, from, to int64) (iter.Seq2[LoggedRecord, error], int64, error) {
	logKey, err := readPublicKey(filepath.Join(dataDir, publicKeyPath(LogKeyFile)))
	if err != nil {
		return nil, 0, fmt.Errorf("log key: %w", err)
	}
	signerKeys, err := localSignerKeys(dataDir)
	if err != nil {
		return nil, 0, err
	}
	op, err := newRecordOpener(signerKeys)
	if err != nil {
		return nil, 0, err
	}
	dir := filepath.Join(dataDir, LogDir)
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
	return func(yield func(LoggedRecord, error) bool) {
		// The reader holds the envelope store open only while iterating.
		r, err := translog.OpenReader(dir, logKey)
		if err != nil {
			yield(LoggedRecord{}, err)
			return
		}
		defer r.Close()
		for e, err := range r.Entries(ctx, uint64(from), uint64(to)) {
			if err != nil {
				yield(LoggedRecord{}, err)
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

// RemoteRecords reads the decision records with log indexes from up to
// (not including) to through a daemon's Rekor v1 API (GET
// /api/v1/log/entries?logIndex=N); to <= 0 means up to the log's size.
// Each entry is checked with v (made with the log key and the daemon's
// signing key set): its SET, that it names a signing key valid when it was
// logged, that the envelope is the one it commits to and is signed by that
// key; a failure wraps verify.ErrFailed. Records are private by default,
// so c needs a read credential; without one the first entry fails with
// rekorapi.ErrRecordsPrivate.
func RemoteRecords(ctx context.Context, c *rekorapi.Client, v *verify.Verifier, from, to int64) (iter.Seq2[LoggedRecord, error], int64, error) {
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
	return func(yield func(LoggedRecord, error) bool) {
		for i := from; i < to; i++ {
			rec, err := remoteRecord(ctx, c, v, i)
			if !yield(rec, err) || err != nil {
				return
			}
		}
	}, to, nil
}

func remoteRecord(ctx context.Context, c *rekorapi.Client, v *verify.Verifier, index int64) (LoggedRecord, error) {
	_, e, err := c.EntryByIndex(ctx, index)
	if err != nil {
		return LoggedRecord{}, fmt.Errorf("entry %d: %w", index, err)
	}
	body, err := base64.StdEncoding.DecodeString(e.Body)
	if err != nil {
		return LoggedRecord{}, fmt.Errorf("entry %d: body is not base64: %w", index, err)
	}
	if e.LogIndex != index || e.Verification == nil {
		return LoggedRecord{}, fmt.Errorf("entry %d: the server answered for index %d, or without SET", index, e.LogIndex)
	}
	// Replay needs the records themselves: with a log that keeps them
	// private, c must carry a read credential (rekorapi.WithBearer).
	env, err := c.Envelope(e)
	if err != nil {
		return LoggedRecord{}, fmt.Errorf("entry %d: %w", index, err)
	}
	res, err := v.Entry(verify.Entry{Body: body, LogIndex: e.LogIndex, IntegratedTime: e.IntegratedTime, LogID: e.LogID, SET: e.Verification.SignedEntryTimestamp, Envelope: env})
	if err != nil {
		return LoggedRecord{}, fmt.Errorf("entry %d: %w", index, err)
	}
	return LoggedRecord{Index: index, Record: res.Statement.Predicate}, nil
}
