package verify_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/internal/logtest"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
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

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openLog(t testing.TB) *testLog {
	t.Helper()
	ctx := context.Background()
	key := newKey(t)
	l, err := translog.Open(ctx, logtest.Files(t, translog.Config{Dir: t.TempDir(), Key: key, CheckpointInterval: 100 * time.Millisecond}))
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

func (l *testLog) append(t testing.TB, id string) translog.Entry {
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

// wantFailure asserts err is a *verify.CheckError of check, and that the
// sentinels ErrFailed and check match it.
func wantFailure(t *testing.T, what string, err error, check verify.Check) {
	t.Helper()
	var ce *verify.CheckError
	if !errors.As(err, &ce) || ce.Check != check || !errors.Is(err, verify.ErrFailed) || !errors.Is(err, check) {
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
		wantFailure(t, "another entry's leaf", err, verify.CheckInclusion)
		_, err = verify.Inclusion(p.Checkpoint, newKey(t).Public(), idx, size, p.RootHash, e.LeafHash, p.Hashes)
		wantFailure(t, "another log key", err, verify.CheckCheckpointSignature)
		_, err = verify.Inclusion(p.Checkpoint, l.key.Public(), idx, size+1, p.RootHash, e.LeafHash, p.Hashes)
		wantFailure(t, "another tree size", err, verify.CheckInclusion)
		err = verify.SET(e.SignedEntryTimestamp, e.Body, e.IntegratedTime, l.LogID(), e.Index+1, l.key.Public())
		wantFailure(t, "SET for another index", err, verify.CheckSET)
		err = verify.SET(e.SignedEntryTimestamp, e.Body, e.IntegratedTime+1, l.LogID(), e.Index, l.key.Public())
		wantFailure(t, "SET for another time", err, verify.CheckSET)
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
		wantFailure(t, "a changed proof hash", verify.Consistency(older.Checkpoint, newer.Checkpoint, l.key.Public(), bad), verify.CheckConsistency)
	}
	wantFailure(t, "checkpoints swapped", verify.Consistency(newer.Checkpoint, older.Checkpoint, l.key.Public(), hashes), verify.CheckConsistency)
	wantFailure(t, "another log key", verify.Consistency(older.Checkpoint, newer.Checkpoint, newKey(t).Public(), hashes), verify.CheckCheckpointSignature)
	other := openLog(t)
	o := other.append(t, "d-0")
	op, err := other.InclusionProof(ctx, o.Index, true)
	if err != nil {
		t.Fatal(err)
	}
	wantFailure(t, "another log's checkpoint", verify.Consistency(older.Checkpoint, op.Checkpoint, l.key.Public(), hashes), verify.CheckCheckpointSignature)
}

// receipts appends n decisions and returns their receipts, all proven
// against the checkpoint the log has after the last one, as an export of
// receipts fetched together would be.
func (l *testLog) receipts(t testing.TB, n int) []decision.Receipt {
	t.Helper()
	var entries []translog.Entry
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("d-%d", i))
		entries = append(entries, l.append(t, ids[i]))
	}
	return l.prove(t, entries, ids)
}

// prove returns the receipts of entries (decision IDs ids), proven
// against the log's latest checkpoint.
func (l *testLog) prove(t testing.TB, entries []translog.Entry, ids []string) []decision.Receipt {
	t.Helper()
	ctx := context.Background()
	n := len(entries)
	last, err := l.InclusionProof(ctx, entries[n-1].Index, true)
	if err != nil {
		t.Fatal(err)
	}
	var out []decision.Receipt
	for i, e := range entries {
		p, err := l.InclusionProof(ctx, e.Index, false)
		if err != nil {
			t.Fatal(err)
		}
		if p.TreeSize != last.TreeSize {
			t.Fatalf("the checkpoint moved from size %d to %d while the proofs were fetched", last.TreeSize, p.TreeSize)
		}
		hashes := make([]string, len(p.Hashes))
		for i, h := range p.Hashes {
			hashes[i] = hex.EncodeToString(h)
		}
		out = append(out, decision.Receipt{
			DecisionID: ids[i], Allow: true, Reasons: []string{},
			LogIndex: e.Index, UUID: e.UUID, IntegratedTime: e.IntegratedTime, LogID: l.LogID(),
			SignedEntryTimestamp: e.SignedEntryTimestamp, Envelope: e.Envelope,
			InclusionProof: &decision.InclusionProof{
				LogIndex: p.Index, TreeSize: p.TreeSize, RootHash: hex.EncodeToString(p.RootHash),
				Hashes: hashes, Checkpoint: string(p.Checkpoint),
			},
		})
	}
	return out
}

func (l *testLog) signerKey(t testing.TB) crypto.PublicKey {
	t.Helper()
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(l.signerPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestVerifierChecksEveryReceiptAgainstACachedCheckpoint(t *testing.T) {
	l := openLog(t)
	rcs := l.receipts(t, 12)
	signer := l.signerKey(t)
	v, err := verify.New(l.key.Public(), verify.WithSignerKey(signer))
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range rcs {
		res, err := v.Receipt(rc)
		if err != nil {
			t.Fatalf("receipt %d: %v", rc.LogIndex, err)
		}
		if res.Statement.Predicate.DecisionID != rc.DecisionID || res.Checkpoint.Size != uint64(rc.InclusionProof.TreeSize) {
			t.Errorf("receipt %d: verified %s at tree size %d", rc.LogIndex, res.Statement.Predicate.DecisionID, res.Checkpoint.Size)
		}
		res.Checkpoint.Hash[0] ^= 1 // a caller changing its copy must not change the cached one
	}

	// The checkpoint is now cached: everything else is still checked.
	tamper := func(rc decision.Receipt, f func(p *decision.InclusionProof)) decision.Receipt {
		p := *rc.InclusionProof
		p.Hashes = slices.Clone(p.Hashes)
		f(&p)
		rc.InclusionProof = &p
		return rc
	}
	rc := rcs[3]
	_, err = v.Receipt(tamper(rc, func(p *decision.InclusionProof) { p.Hashes[0] = strings.Repeat("0", 64) }))
	wantFailure(t, "a changed proof hash", err, verify.CheckInclusion)
	_, err = v.Receipt(tamper(rc, func(p *decision.InclusionProof) { p.Hashes = rcs[4].InclusionProof.Hashes }))
	wantFailure(t, "another receipt's proof", err, verify.CheckInclusion)
	_, err = v.Receipt(tamper(rc, func(p *decision.InclusionProof) {
		p.Checkpoint = strings.Replace(p.Checkpoint, fmt.Sprintf("\n%d\n", p.TreeSize), fmt.Sprintf("\n%d\n", p.TreeSize+1), 1)
		p.TreeSize++
	}))
	wantFailure(t, "a checkpoint whose size was changed", err, verify.CheckCheckpointSignature)
	other := rcs[5]
	other.SignedEntryTimestamp = rc.SignedEntryTimestamp
	_, err = v.Receipt(other)
	wantFailure(t, "another receipt's SET", err, verify.CheckSET)
	sv, err := verify.New(l.key.Public(), verify.WithSignerKey(newKey(t).Public()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = sv.Receipt(rc)
	wantFailure(t, "another signer key", err, verify.CheckEnvelope)

	ov, err := verify.New(newKey(t).Public(), verify.WithSignerKey(signer))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ov.Receipt(rc)
	wantFailure(t, "another log's key", err, verify.CheckUUID)
}

func TestVerifierIsSafeForConcurrentUse(t *testing.T) {
	l := openLog(t)
	rcs := l.receipts(t, 8)
	signer := l.signerKey(t)
	v, err := verify.New(l.key.Public(), verify.WithSignerKey(signer))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 3 * len(rcs) {
				rc := rcs[(g+i)%len(rcs)]
				if _, err := v.Receipt(rc); err != nil {
					t.Errorf("goroutine %d, receipt %d: %v", g, rc.LogIndex, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkReceipt is offline verification of one receipt among receipts
// proven against the same checkpoint: with the package-level Receipt
// (everything derived anew each time), with one Verifier (the checkpoint
// signature checked once), and the floor: one ECDSA P-256 verification, of
// which a receipt needs three alone and two with a Verifier.
func BenchmarkReceipt(b *testing.B) {
	l := openLog(b)
	rcs := l.receipts(b, 64)
	signer := l.signerKey(b)
	logKey := l.key.Public()
	b.Run("Receipt", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := verify.Receipt(rcs[i%len(rcs)], logKey, signer); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Verifier", func(b *testing.B) {
		v, err := verify.New(logKey, verify.WithSignerKey(signer))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := v.Receipt(rcs[i%len(rcs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("one-P256-verify", func(b *testing.B) {
		k := newKey(b)
		digest := sha256.Sum256(rcs[0].Envelope)
		sig, err := ecdsa.SignASN1(rand.Reader, k, digest[:])
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if !ecdsa.VerifyASN1(&k.PublicKey, digest[:], sig) {
				b.Fatal("does not verify")
			}
		}
	})
}
