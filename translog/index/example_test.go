package index_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/index"
)

// Rows normally come from following the log (CatchUp); here they are
// added by hand to show a search.
func ExampleIndex_Search() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "index-example")
	defer os.RemoveAll(dir)
	ix, err := index.OpenSQLite(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer ix.Close()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	rows := []index.Row{
		{LogIndex: 0, UUID: "uuid-0", Kind: index.KindDecision, Subject: "alice", Action: "deploy", Allow: true, Time: now.Add(-9 * 24 * time.Hour)},
		{LogIndex: 1, UUID: "uuid-1", Kind: index.KindDecision, Subject: "alice", Action: "deploy", Allow: true, Time: now.Add(-time.Hour)},
		{LogIndex: 2, UUID: "uuid-2", Kind: index.KindDecision, Subject: "bob", Action: "deploy", Allow: false, Time: now},
	}
	if err := ix.Add(ctx, 42, rows); err != nil {
		log.Fatal(err)
	}
	q, err := index.ParseQuery(url.Values{"subject": {"alice"}, "action": {"deploy"}, "since": {"7d"}}, now)
	if err != nil {
		log.Fatal(err)
	}
	page, err := ix.Search(ctx, q)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range page.Results {
		fmt.Println(r.LogIndex, r.UUID, r.Subject, r.Action, r.Outcome)
	}
	// Output:
	// 1 uuid-1 alice deploy allow
}

// The daemon indexes the records it logged from the records themselves
// (Index.Sequenced hands them over; RowOf builds their rows), the same
// rows DecodeEntry reads from the log.
func ExampleRowOf() {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sv, err := signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	if err != nil {
		log.Fatal(err)
	}
	signer, err := receipt.NewSigner(sv)
	if err != nil {
		log.Fatal(err)
	}
	pem, err := entry.PublicKeyPEM(k.Public())
	if err != nil {
		log.Fatal(err)
	}
	rec := decision.Record{
		Kind: decision.KindDecision, DecisionID: "d1", Time: "2026-11-25T12:00:00Z",
		Request:  decision.Request{Subject: decision.Subject{ID: "alice"}, Action: "deploy"},
		Decision: decision.Decision{Allow: true, Reasons: []string{"release manager"}},
	}
	envelope, err := signer.Sign(rec)
	if err != nil {
		log.Fatal(err)
	}
	body, err := entry.DSSEBody(envelope, pem)
	if err != nil {
		log.Fatal(err)
	}
	// What the log's Append returns for it.
	e := translog.Entry{Index: 7, UUID: "uuid-7", IntegratedTime: 1764072000, Body: body, Envelope: envelope}
	fast, err := index.RowOf(e, rec)
	if err != nil {
		log.Fatal(err)
	}
	read, err := index.DecodeEntry(e.Index, e.UUID, e.IntegratedTime, e.Body, e.Envelope)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(fast.LogIndex, fast.Subject, fast.Action, fast.Outcome, fast.Reasons)
	fmt.Println(reflect.DeepEqual(fast, read))
	// Output:
	// 7 alice deploy allow [release manager]
	// true
}
