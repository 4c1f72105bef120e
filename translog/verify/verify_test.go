package verify_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/engine/decision"
	"github.com/gatelog/gatelog/engine/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/verify"
)

// testLog is a real log on disk (Tessera POSIX and the envelope store)
// and a decision signer to fill it.
type testLog struct {
	*translog.Log
	key       *ecdsa.PrivateKey
	sign      *receipt.Signer
	signerPEM []byte
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openLog(t *testing.T) *testLog {
	t.Helper()
	ctx := context.Background()
	key := newKey(t)
	l, err := translog.Open(ctx, translog.Config{Dir: t.TempDir(), Key: key, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(ctx) })
	sv, err := signature.LoadECDSASignerVerifier(newKey(t), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	s, err := receipt.NewSigner(sv)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := sv.PublicKey()
	pem, err := entry.PublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{Log: l, key: key, sign: s, signerPEM: pem}
}

func (l *testLog) append(t *testing.T, id string) translog.Entry {
	t.Helper()
	env, err := l.sign.Sign(decision.Record{
		DecisionID: id,
		Request:    decision.Request{Subject: decision.Subject{ID: "alice"}, Action: "deploy"},
		Decision:   decision.Decision{Allow: true, Reasons: []string{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := l.Append(context.Background(), id, env, l.signerPEM)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func wantFailure(t *testing.T, what string, err error, check string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), check) {
		t.Errorf("%s: got %v, want a failure of the %q check", what, err, check)
	}
}

func TestInclusionAndSETOfRealEntries(t *testing.T) {
	ctx := context.Background()
	l := openLog(t)
	var entries []translog.Entry
	for _, id := range []string{"d-0", "d-1", "d-2", "d-3", "d-4"} {
		entries = append(entries, l.append(t, id))
	}
	for _, e := range entries {
		p, err := l.InclusionProof(ctx, e.Index, true)
		if err != nil {
			t.Fatal(err)
		}
		size, idx := uint64(p.TreeSize), uint64(e.Index)
		cp, err := verify.Inclusion(p.Checkpoint, l.key.Public(), idx, size, p.RootHash, e.LeafHash, p.Hashes)
		if err != nil {
			t.Fatalf("entry %d: %v", e.Index, err)
		}
		if cp.Origin != l.Origin() {
			t.Errorf("checkpoint origin %q, want %q", cp.Origin, l.Origin())
		}
		if err := verify.SET(e.SignedEntryTimestamp, e.Body, e.IntegratedTime, l.LogID(), e.Index, l.key.Public()); err != nil {
			t.Errorf("entry %d: %v", e.Index, err)
		}

		other := entries[(e.Index+1)%int64(len(entries))]
		_, err = verify.Inclusion(p.Checkpoint, l.key.Public(), idx, size, p.RootHash, other.LeafHash, p.Hashes)
		wantFailure(t, "another entry's leaf", err, "inclusion proof")
		_, err = verify.Inclusion(p.Checkpoint, newKey(t).Public(), idx, size, p.RootHash, e.LeafHash, p.Hashes)
		wantFailure(t, "another log key", err, "checkpoint signature")
		_, err = verify.Inclusion(p.Checkpoint, l.key.Public(), idx, size+1, p.RootHash, e.LeafHash, p.Hashes)
		wantFailure(t, "another tree size", err, "inclusion proof")
		err = verify.SET(e.SignedEntryTimestamp, e.Body, e.IntegratedTime, l.LogID(), e.Index+1, l.key.Public())
		wantFailure(t, "SET for another index", err, "signed entry timestamp")
		err = verify.SET(e.SignedEntryTimestamp, e.Body, e.IntegratedTime+1, l.LogID(), e.Index, l.key.Public())
		wantFailure(t, "SET for another time", err, "signed entry timestamp")
	}
}

func TestConsistencyBetweenRealCheckpoints(t *testing.T) {
	ctx := context.Background()
	l := openLog(t)
	first := l.append(t, "d-0")
	older, err := l.InclusionProof(ctx, first.Index, true)
	if err != nil {
		t.Fatal(err)
	}
	var last translog.Entry
	for _, id := range []string{"d-1", "d-2", "d-3", "d-4", "d-5", "d-6"} {
		last = l.append(t, id)
	}
	newer, err := l.InclusionProof(ctx, last.Index, true)
	if err != nil {
		t.Fatal(err)
	}
	hashes, err := l.ConsistencyProof(ctx, uint64(older.TreeSize), uint64(newer.TreeSize))
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Consistency(older.Checkpoint, newer.Checkpoint, l.key.Public(), hashes); err != nil {
		t.Fatal(err)
	}
	if len(hashes) > 0 {
		bad := append([][]byte(nil), hashes...)
		bad[0] = append([]byte{bad[0][0] ^ 1}, bad[0][1:]...)
		wantFailure(t, "a changed proof hash", verify.Consistency(older.Checkpoint, newer.Checkpoint, l.key.Public(), bad), "consistency")
	}
	wantFailure(t, "checkpoints swapped", verify.Consistency(newer.Checkpoint, older.Checkpoint, l.key.Public(), hashes), "consistency")
	wantFailure(t, "another log key", verify.Consistency(older.Checkpoint, newer.Checkpoint, newKey(t).Public(), hashes), "checkpoint signature")
	other := openLog(t)
	o := other.append(t, "d-0")
	op, err := other.InclusionProof(ctx, o.Index, true)
	if err != nil {
		t.Fatal(err)
	}
	wantFailure(t, "another log's checkpoint", verify.Consistency(older.Checkpoint, op.Checkpoint, l.key.Public(), hashes), "checkpoint signature")
}
