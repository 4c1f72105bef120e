package verify_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/tessera/storage/posix"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/verify"
)

// A receipt is verified with the two public keys alone: the log's and the
// daemon's decision-signing key. Here a log on disk takes one signed
// decision, and its receipt is checked as an auditor would.
func ExampleVerifier_Receipt() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "verify-example")
	defer os.RemoveAll(dir)
	logKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// The caller builds Tessera's driver: POSIX, on the log's tiles.
	driver, err := posix.New(ctx, posix.Config{Path: translog.TilesDir(dir)})
	if err != nil {
		fmt.Println(err)
		return
	}
	l, err := translog.Open(ctx, translog.Config{Driver: driver, Dir: dir, Key: logKey, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close(ctx)

	// The daemon's side: sign the record, append it, fetch the proof.
	signKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sv, _ := signature.LoadECDSASignerVerifier(signKey, crypto.SHA256)
	signer, _ := receipt.NewSigner(sv)
	signerPEM, _ := entry.PublicKeyPEM(signKey.Public())
	d := decision.Decision{Allow: true, Reasons: []string{"alice holds deployer"}}
	env, _ := signer.Sign(decision.Record{
		DecisionID: "d-1",
		Request:    decision.Request{Subject: decision.Subject{ID: "alice"}, Action: "deploy"},
		Decision:   d,
	})
	e, err := l.Append(ctx, "d-1", env, signerPEM)
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := l.InclusionProof(ctx, e.Index, true)
	if err != nil {
		fmt.Println(err)
		return
	}
	var hashes []string
	for _, h := range p.Hashes {
		hashes = append(hashes, hex.EncodeToString(h))
	}
	rc := decision.Receipt{
		DecisionID: "d-1", Allow: d.Allow, Reasons: d.Reasons,
		LogIndex: e.Index, UUID: e.UUID, IntegratedTime: e.IntegratedTime, LogID: l.LogID(),
		SignedEntryTimestamp: e.SignedEntryTimestamp, Envelope: e.Envelope,
		InclusionProof: &decision.InclusionProof{
			LogIndex: p.Index, TreeSize: p.TreeSize, RootHash: hex.EncodeToString(p.RootHash),
			Hashes: hashes, Checkpoint: string(p.Checkpoint),
		},
	}

	// The auditor's side: the public keys and the receipt, nothing else.
	v, err := verify.New(logKey.Public(), verify.WithSignerKey(signKey.Public()))
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := v.Receipt(rc)
	if err != nil {
		fmt.Println(err)
		return
	}
	rec := res.Statement.Predicate
	fmt.Printf("verified: %s %s by %s, allow=%v, index %d of %d\n",
		rec.DecisionID, rec.Request.Action, rec.Request.Subject.ID, rec.Decision.Allow, rc.LogIndex, res.Checkpoint.Size)

	rc.Allow = false // the summary no longer matches the signed record
	_, err = v.Receipt(rc)
	fmt.Println(err)
	// Output:
	// verified: d-1 deploy by alice, allow=true, index 0 of 1
	// verification failed: allow: receipt says false, signed decision record says true
}

// A daemon's signing key set (GET /v1/keys) names each key with its
// validity window: a record is checked with the key valid when the log
// integrated it, so a rotated-out key still verifies its old entries and
// never a later one.
func ExampleSigningKeys_Select() {
	old, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ks, _ := verify.KeySet(old.Public())
	rotated := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	ks.Keys[0].ValidFrom = rotated.AddDate(-1, 0, 0)
	ks.Keys[0].ValidUntil = rotated
	id := ks.Keys[0].KeyID

	_, err := ks.Select(id, rotated.Add(-time.Hour))
	fmt.Println("an hour before the rotation:", err)
	_, err = ks.Select(id, rotated.Add(time.Hour))
	fmt.Println("an hour after it:", errors.Is(err, verify.ErrKeyNotValid))
	_, err = ks.Select("another key", rotated)
	fmt.Println("a key not in the set:", errors.Is(err, verify.ErrUnknownKey))
	// Output:
	// an hour before the rotation: <nil>
	// an hour after it: true
	// a key not in the set: true
}
