package index_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"iter"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/formats/log"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/index"
)

// exampleRecords are records of every kind around the example requests
// of examples/requests and examples/policies/requests, with the decisions
// examples/policies/expected.json gives them.
func exampleRecords(t *testing.T) []decision.Record {
	t.Helper()
	var expected map[string]struct {
		Allow  bool     `json:"allow"`
		Reason string   `json:"reason"`
		Alerts []string `json:"alerts"`
	}
	raw, err := os.ReadFile("../../examples/policies/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob("../../examples/requests/*.json")
	if err != nil {
		t.Fatal(err)
	}
	more, err := filepath.Glob("../../examples/policies/requests/*.json")
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, more...)
	if len(paths) < 10 {
		t.Fatalf("found only %d example requests", len(paths))
	}
	at := time.Date(2026, 3, 4, 10, 0, 0, 123456789, time.UTC)
	var recs []decision.Record
	for i, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		req, err := decision.ParseRequest(raw)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		d := decision.Decision{Allow: i%2 == 0, Reasons: []string{"example " + filepath.Base(p)}}
		if exp, ok := expected[filepath.Base(p)]; ok {
			d = decision.Decision{Allow: exp.Allow, Reasons: []string{exp.Reason}}
			for _, code := range exp.Alerts {
				d.Alerts = append(d.Alerts, decision.Alert{Severity: "high", Code: code, Message: "example alert " + code})
			}
		}
		recs = append(recs, decision.Record{
			Kind: decision.KindDecision, DecisionID: "example-" + filepath.Base(p), Request: req,
			Caller: decision.Caller{ID: "ci-bot", Kind: "api_key"}, Decision: d,
			Policy: decision.Policy{Revision: "r1", SHA256: "aa11", Entrypoint: "gatelog/decision", OPAVersion: "1.22.2"},
			Time:   at.Add(time.Duration(i) * time.Minute).Format(time.RFC3339Nano),
		})
	}
	req := recs[0].Request
	return append(recs,
		// Alerts, none (spelt nil and empty), no reasons at all.
		decision.Record{Kind: decision.KindDecision, DecisionID: "alerts", Request: req, Time: at.Format(time.RFC3339Nano),
			Decision: decision.Decision{Allow: true, Reasons: []string{"a", "b"}, Alerts: []decision.Alert{
				{Severity: "high", Code: "first_privileged_use", Message: "first use <of> & \u2028"}, {Code: "off_hours"}}}},
		decision.Record{Kind: decision.KindDecision, DecisionID: "no-alerts", Request: req, Time: at.Format(time.RFC3339),
			Decision: decision.Decision{Reasons: []string{}, Alerts: []decision.Alert{}}},
		decision.Record{Kind: decision.KindDecision, DecisionID: "no-reasons", Request: req, Time: "2026-03-04T11:00:00+02:00"},
		// An event, with and without a message, and an administrative record.
		decision.Record{Kind: decision.KindEvent, DecisionID: "event", Request: req, Time: at.Format(time.RFC3339Nano),
			Event: &decision.Event{Type: "deploy.finished", Message: "done", Alerts: []decision.Alert{{Severity: "low", Code: "late"}}}},
		decision.Record{Kind: decision.KindEvent, DecisionID: "event-quiet", Request: req, Time: at.Format(time.RFC3339Nano),
			Event: &decision.Event{Type: "deploy.started", Alerts: []decision.Alert{}}},
		decision.Record{Kind: decision.KindAdmin, DecisionID: "admin", Request: decision.Request{Action: "policy.load"},
			Caller: decision.Caller{ID: "gatelog", Kind: "daemon"}, Time: at.Format(time.RFC3339Nano), Admin: &decision.Admin{Reason: "start"}},
		// An event of a log written before events had their own kind.
		decision.Record{Kind: decision.KindDecision, DecisionID: "legacy-event", Request: req, Time: at.Format(time.RFC3339Nano),
			Decision: decision.Decision{Allow: true, Reasons: []string{"reported"}}, Policy: decision.Policy{Entrypoint: "gatelog/event"}},
		// Strings JSON cannot carry, and a time that does not parse.
		decision.Record{Kind: decision.KindDecision, DecisionID: "bad-\xffutf8", Request: decision.Request{
			Subject: decision.Subject{ID: "al\xc3ice"}, Action: "deploy\xfe", Resource: decision.Resource{Repository: "a\x80b"}},
			Time: at.Format(time.RFC3339Nano), Decision: decision.Decision{Reasons: []string{"\xff\xfe"}, Alerts: []decision.Alert{{Code: "x\xff"}}}},
		decision.Record{Kind: decision.KindDecision, DecisionID: "bad-time", Request: req, Time: "yesterday"},
		decision.Record{Kind: decision.KindDecision, DecisionID: "bad-time-utf8", Request: req, Time: "2026\xff"},
	)
}

// TestRowOfIsDecodeEntryOfTheStoredLeaf: for every example record,
// appended to a real log, the Row built from the record at hand is exactly
// the Row DecodeEntry gives for the leaf and envelope the log holds.
func TestRowOfIsDecodeEntryOfTheStoredLeaf(t *testing.T) {
	ctx := context.Background()
	tl := newTestLog(t)
	recs := exampleRecords(t)
	appended := make([]translog.Entry, len(recs))
	for i, rec := range recs {
		env, err := tl.signer.Sign(rec)
		if err != nil {
			t.Fatalf("sign %s: %v", rec.DecisionID, err)
		}
		if appended[i], err = tl.log.Append(ctx, rec.DecisionID, env, tl.signerPEM); err != nil {
			t.Fatal(err)
		}
	}
	tl.waitCovered(int64(len(recs)))
	i := 0
	for stored, err := range tl.log.Reader().Entries(ctx, 0, uint64(len(recs))) {
		if err != nil {
			t.Fatal(err)
		}
		rec := recs[i]
		want, werr := index.DecodeEntry(stored.Index, stored.UUID, stored.IntegratedTime, stored.Body, stored.Envelope)
		got, gerr := index.RowOf(appended[i], rec)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: RowOf =\n%+v\nDecodeEntry =\n%+v", rec.DecisionID, got, want)
		}
		if (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
			t.Errorf("%s: RowOf error %v, DecodeEntry error %v", rec.DecisionID, gerr, werr)
		}
		i++
	}
	if i != len(recs) {
		t.Fatalf("read %d entries back, want %d", i, len(recs))
	}
	// The table covers what it says: readable rows of every kind, alerts,
	// and the rows that fail.
	for _, c := range []struct {
		id   string
		kind string
		ok   bool
	}{
		{"alerts", index.KindDecision, true}, {"event", index.KindEvent, true}, {"admin", index.KindAdmin, true},
		{"legacy-event", index.KindEvent, true}, {"bad-time", index.KindUnreadable, false},
	} {
		for j, rec := range recs {
			if rec.DecisionID != c.id {
				continue
			}
			r, err := index.RowOf(appended[j], rec)
			if r.Kind != c.kind || (err == nil) != c.ok {
				t.Errorf("%s: kind %q, err %v; want kind %q", c.id, r.Kind, err, c.kind)
			}
		}
	}
}

// fuzzSigner is one decision signer for every fuzz input.
var fuzzSigner = sync.OnceValues(func() (*receipt.Signer, []byte) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sv, err := signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	if err != nil {
		panic(err)
	}
	s, err := receipt.NewSigner(sv)
	if err != nil {
		panic(err)
	}
	pem, err := entry.PublicKeyPEM(k.Public())
	if err != nil {
		panic(err)
	}
	return s, pem
})

// FuzzRowOf: whatever a record holds, if it can be signed, the Row built
// from it is the Row DecodeEntry gives for its envelope and leaf.
func FuzzRowOf(f *testing.F) {
	f.Add(uint8(0), "alice", "deploy", "production", "acme/shop", "because", "high", "off_hours", "2026-03-04T10:00:00Z", true, 2)
	f.Add(uint8(1), "svc", "", "", "", "", "", "", "2026-03-04T10:00:00.5+01:00", false, 0)
	f.Add(uint8(2), "gatelog", "policy.load", "", "", "start", "", "", "2026-03-04T10:00:00Z", false, 0)
	f.Add(uint8(0), "al\xffice", "dep\xc3loy", "\x80", "a\u2028b<&>", "\xff", "\xfe", "c", "2026-03-04T10:00:00Z", true, 1)
	f.Add(uint8(0), "bob", "deploy", "", "", "x", "", "", "not a time", false, 0)
	f.Fuzz(func(t *testing.T, kind uint8, subject, action, env, repo, reason, severity, code, at string, allow bool, nalerts int) {
		alerts := make([]decision.Alert, max(0, min(nalerts, 3)))
		for i := range alerts {
			alerts[i] = decision.Alert{Severity: severity, Code: code, Message: reason}
		}
		req := decision.Request{
			Subject: decision.Subject{ID: subject, Kind: "user", Claims: map[string]any{"n": int64(1)<<60 + 1}},
			Action:  action, Resource: decision.Resource{Environment: env, Repository: repo, Ref: reason},
			Source: decision.Source{Adapter: code},
		}
		rec := decision.Record{DecisionID: "d-" + subject, Request: req, Caller: decision.Caller{ID: severity}, Time: at,
			Policy: decision.Policy{SHA256: code, Revision: env, Entrypoint: repo}}
		switch kind % 3 {
		case 0:
			rec.Kind, rec.Decision = decision.KindDecision, decision.Decision{Allow: allow, Reasons: []string{reason}, Alerts: alerts}
		case 1:
			rec.Kind, rec.Event = decision.KindEvent, &decision.Event{Type: action, Message: reason, Alerts: alerts}
		case 2:
			rec.Kind, rec.Admin = decision.KindAdmin, &decision.Admin{Reason: reason}
		}
		signer, pem := fuzzSigner()
		env2, err := signer.Sign(rec)
		if err != nil {
			return // never logged
		}
		body, err := entry.DSSEBody(env2, pem)
		if err != nil {
			t.Fatal(err)
		}
		e := translog.Entry{Index: 3, UUID: "u", IntegratedTime: 42, Body: body, Envelope: env2}
		want, werr := index.DecodeEntry(e.Index, e.UUID, e.IntegratedTime, body, env2)
		got, gerr := index.RowOf(e, rec)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("RowOf =\n%+v\nDecodeEntry =\n%+v", got, want)
		}
		if (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
			t.Fatalf("RowOf error %v, DecodeEntry error %v", gerr, werr)
		}
	})
}

// countingSource is the log's Reader, recording which ranges CatchUp
// reads from it, and optionally holding back its checkpoint.
type countingSource struct {
	*translog.Reader
	mu    sync.Mutex
	read  [][2]uint64
	fixed *log.Checkpoint
}

func (s *countingSource) Checkpoint(ctx context.Context) ([]byte, *log.Checkpoint, error) {
	raw, cp, err := s.Reader.Checkpoint(ctx)
	if s.fixed != nil {
		cp = s.fixed
	}
	return raw, cp, err
}

func (s *countingSource) Entries(ctx context.Context, from, to uint64) iter.Seq2[translog.Entry, error] {
	s.mu.Lock()
	s.read = append(s.read, [2]uint64{from, to})
	s.mu.Unlock()
	return s.Reader.Entries(ctx, from, to)
}

// TestCatchUpIndexesSequencedEntriesWithoutReadingThem: entries handed
// over with Sequenced are indexed from their records; only the gaps
// between them are read from the log; nothing beyond the checkpoint is
// indexed; and the index is the one a rebuild from the log makes.
func TestCatchUpIndexesSequencedEntriesWithoutReadingThem(t *testing.T) {
	forBackends(t, testCatchUpIndexesSequencedEntriesWithoutReadingThem)
}

func testCatchUpIndexesSequencedEntriesWithoutReadingThem(t *testing.T, b backend) {
	ctx := context.Background()
	tl := newTestLog(t)
	ix := openIndex(t, b.fresh(t))
	// More entries than one INSERT writes, alerts on some, so that Add
	// splits rows and alerts into several statements.
	const n = 150
	recs := make([]decision.Record, n)
	entries := make([]translog.Entry, n)
	for i := range n {
		var alerts []decision.Alert
		for k := range i % 3 {
			alerts = append(alerts, decision.Alert{Severity: "high", Code: []string{"off_hours", "first_use"}[k], Message: "m"})
		}
		recs[i] = decision.Record{
			Kind: decision.KindDecision, DecisionID: "seq-" + time.Duration(i).String(),
			Request: decision.Request{Subject: decision.Subject{ID: []string{"alice", "bob"}[i%2]}, Action: "deploy",
				Resource: decision.Resource{Environment: "production", Repository: "acme/shop"}},
			Caller:   decision.Caller{ID: "ci-bot", Kind: "api_key"},
			Decision: decision.Decision{Allow: i%4 != 0, Reasons: []string{"r"}, Alerts: alerts},
			Time:     now.Add(-time.Duration(i) * time.Minute).Format(time.RFC3339Nano),
		}
		if i == 7 {
			// A string JSON cannot carry: this row comes from the
			// envelope, which Sequenced must keep for it.
			recs[i].Request.Resource.Name = "bad\xffname"
		}
		env, err := tl.signer.Sign(recs[i])
		if err != nil {
			t.Fatal(err)
		}
		if entries[i], err = tl.log.Append(ctx, recs[i].DecisionID, env, tl.signerPEM); err != nil {
			t.Fatal(err)
		}
	}
	tl.waitCovered(n)
	// Hand over all but 10..19 and 100: those are read from the log. The
	// checkpoint CatchUp first sees covers 120 entries only.
	for i := range n {
		if (i >= 10 && i < 20) || i == 100 {
			continue
		}
		ix.Sequenced(entries[i], recs[i])
	}
	_, cp, err := tl.log.Reader().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held := *cp
	held.Size = 120
	src := &countingSource{Reader: tl.log.Reader(), fixed: &held}
	if got, err := ix.CatchUp(ctx, src, nil); err != nil || got != 120 {
		t.Fatalf("CatchUp = %d, %v; want the 120 entries the checkpoint covers", got, err)
	}
	if next, _ := ix.Next(ctx); next != 120 {
		t.Fatalf("Next = %d after a checkpoint of 120", next)
	}
	if want := [][2]uint64{{10, 20}, {100, 101}}; !reflect.DeepEqual(src.read, want) {
		t.Errorf("read %v from the log, want only the gaps %v", src.read, want)
	}
	src.fixed, src.read = nil, nil
	if got, err := ix.CatchUp(ctx, src, nil); err != nil || got != n-120 {
		t.Fatalf("second CatchUp = %d, %v; want %d", got, err, n-120)
	}
	if len(src.read) != 0 {
		t.Errorf("read %v from the log, want nothing", src.read)
	}

	// The same index as a rebuild from the log, row for row.
	rebuilt := filepath.Join(t.TempDir(), "rebuilt.db")
	if got, err := index.Rebuild(ctx, rebuilt, tl.log.Reader(), nil); err != nil || got != n {
		t.Fatalf("Rebuild = %d, %v", got, err)
	}
	rb := openIndex(t, rebuilt)
	for _, q := range []string{"limit=1000", "alert=first_use&limit=1000", "alert=off_hours&limit=1000", "outcome=deny&limit=1000"} {
		got, want := search(t, ix, q), search(t, rb, q)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: sequenced index\n%+v\nrebuilt\n%+v", q, got, want)
		}
	}
	all := search(t, ix, "limit=1000").Results
	if len(all) != n {
		t.Fatalf("%d rows, want %d", len(all), n)
	}
	// Entry i carries i%3 alerts: 100 entries have off_hours, 50 first_use.
	if got := len(search(t, ix, "alert=off_hours&limit=1000").Results); got != 100 {
		t.Errorf("%d entries with alert off_hours, want 100", got)
	}
	if got := len(search(t, ix, "alert=first_use&limit=1000").Results); got != 50 {
		t.Errorf("%d entries with alert first_use, want 50", got)
	}
	r := all[n-1-5] // newest first: entry 5
	if r.LogIndex != 5 || r.UUID != entries[5].UUID || r.Subject != "bob" || len(r.Alerts) != 2 || r.Alerts[1].Code != "first_use" {
		t.Errorf("entry 5 = %+v", r)
	}

	// Entries handed over again once indexed are dropped, not indexed twice.
	ix.Sequenced(entries[3], recs[3])
	if got, err := ix.CatchUp(ctx, src, nil); err != nil || got != 0 {
		t.Errorf("CatchUp with nothing new = %d, %v", got, err)
	}
}
