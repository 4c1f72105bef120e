package audit_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/daemon/audit"
	"github.com/gatelog/gatelog/internal/logtest"
	"github.com/gatelog/gatelog/record"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/index"
)

// TestRecordedRecordsAreIndexedAsTheLogHoldsThem: records made through a
// Recorder whose outcomes go to Recorded are indexed, once a checkpoint
// covers them, exactly as a rebuild from the log indexes them; searches
// and counts answer from them, and receipts prove them.
func TestRecordedRecordsAreIndexedAsTheLogHoldsThem(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lg := logtest.Open(t, translog.Config{Dir: dir, Key: logKey, CheckpointInterval: 100 * time.Millisecond})
	ix, err := index.OpenSQLite(ctx, filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	a := audit.Open(ctx, audit.Config{Index: ix, Log: lg, Every: 20 * time.Millisecond})
	defer a.Close()

	decKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sv, err := signature.LoadECDSASignerVerifier(decKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := receipt.NewSigner(sv)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := entry.PublicKeyPEM(decKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	var outcomes int
	rc, err := record.New(record.Config{Log: lg, Signer: signer, SignerPEM: pem, Observe: func(out record.Outcome) {
		outcomes++
		a.Recorded(out)
	}})
	if err != nil {
		t.Fatal(err)
	}
	// An outcome whose append failed carries no entry: it is ignored.
	a.Recorded(record.Outcome{Stage: record.StageAppend, Err: translog.ErrUnavailable})

	const n = 40
	for i := range n {
		rec := decision.Record{
			Request: decision.Request{Subject: decision.Subject{ID: []string{"alice", "bob"}[i%2], Kind: "user"}, Action: "deploy",
				Resource: decision.Resource{System: "github", Environment: "production", Repository: "acme/shop"}},
			Caller:   decision.Caller{ID: "ci-bot", Kind: "api_key"},
			Decision: decision.Decision{Allow: i%3 != 0, Reasons: []string{"r"}},
			Policy:   decision.Policy{SHA256: "aa11", Entrypoint: "gatelog/decision"},
		}
		if i%5 == 0 {
			rec.Decision.Alerts = []decision.Alert{{Severity: "high", Code: "off_hours", Message: "late"}}
		}
		if i == n-1 {
			rec.Kind, rec.Decision, rec.Event = decision.KindEvent, decision.Decision{}, &decision.Event{Type: "deploy.done", Message: "ok"}
		}
		if _, err := rc.Record(ctx, rec, false); err != nil {
			t.Fatal(err)
		}
	}
	if outcomes != n {
		t.Fatalf("%d outcomes, want %d", outcomes, n)
	}
	if _, err := lg.InclusionProof(ctx, n-1, true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := a.Indexed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("indexed %d of %d entries", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	all, err := a.Search(ctx, index.Query{Limit: 1000}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Results) != n || all.Indexed != n {
		t.Fatalf("%d results, indexed %d; want %d", len(all.Results), all.Indexed, n)
	}
	for i, r := range all.Results {
		if all.Receipts[i] == nil || all.Receipts[i].InclusionProof == nil || all.Receipts[i].LogIndex != r.LogIndex {
			t.Fatalf("result %d (entry %d) has no proved receipt", i, r.LogIndex)
		}
	}
	if r := all.Results[0]; r.Kind != index.KindEvent || r.Outcome != index.KindEvent || r.Reasons[0] != "ok" {
		t.Errorf("newest row = %+v, want the event", r)
	}
	counts, err := a.Counts(ctx, index.Query{Action: "deploy"}, "subject")
	if err != nil {
		t.Fatal(err)
	}
	want := []index.Count{{Key: "alice", Total: 20, Allowed: 13, Denied: 7}, {Key: "bob", Total: 20, Allowed: 13, Denied: 6}}
	if !reflect.DeepEqual(counts.Counts, want) {
		t.Errorf("counts by subject = %+v, want %+v", counts.Counts, want)
	}

	// A rebuild from the log alone holds the same rows.
	rebuilt := filepath.Join(t.TempDir(), "rebuilt.db")
	if got, err := index.Rebuild(ctx, rebuilt, lg.Reader(), nil); err != nil || got != n {
		t.Fatalf("Rebuild = %d, %v", got, err)
	}
	rb, err := index.OpenSQLite(ctx, rebuilt)
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	for _, q := range []index.Query{{Limit: 1000}, {AlertCode: "off_hours", Limit: 1000}} {
		p, err := rb.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Search(ctx, q, false)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Page, p) {
			t.Errorf("%+v: followed index\n%+v\nrebuilt\n%+v", q, got.Page, p)
		}
	}
}
