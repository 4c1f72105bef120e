package index_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/internal/logtest"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/index"
)

// testLog is a real Tessera log on disk plus a decision signer.
type testLog struct {
	t         *testing.T
	dir       string
	log       *translog.Log
	logKey    *ecdsa.PrivateKey
	signer    *receipt.Signer
	signerPEM []byte
	n         int
}

func newTestLog(t *testing.T) *testLog {
	t.Helper()
	dir := t.TempDir()
	logKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	decKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	l, err := translog.Open(context.Background(), logtest.Files(t, translog.Config{Dir: dir, Key: logKey, CheckpointInterval: 100 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	tl := &testLog{t: t, dir: dir, log: l, logKey: logKey}
	t.Cleanup(func() { _ = tl.log.Close(context.Background()) })
	sv, err := signature.LoadECDSASignerVerifier(decKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	s, err := receipt.NewSigner(sv)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := entry.PublicKeyPEM(decKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	tl.signer, tl.signerPEM = s, pem
	return tl
}

type rec struct {
	subject, action, env, repo string
	allow                      bool
	at                         time.Time
	alerts                     []decision.Alert
	policy                     string
}

func (tl *testLog) add(r rec) translog.Entry {
	tl.t.Helper()
	tl.n++
	if r.policy == "" {
		r.policy = "aa11000000000000000000000000000000000000000000000000000000000000"
	}
	d := decision.Record{
		DecisionID: "dec-" + time.Duration(tl.n).String(),
		Request: decision.Request{
			Subject:  decision.Subject{ID: r.subject, Kind: "user", Verified: true},
			Action:   r.action,
			Resource: decision.Resource{System: "github", Environment: r.env, Repository: r.repo},
			Source:   decision.Source{Adapter: "github"},
		},
		Caller:   decision.Caller{ID: "ci-bot", Kind: "api_key"},
		Decision: decision.Decision{Allow: r.allow, Reasons: []string{"because"}, Alerts: r.alerts},
		Policy:   decision.Policy{SHA256: r.policy},
		Time:     r.at.UTC().Format(time.RFC3339Nano),
	}
	env, err := tl.signer.Sign(d)
	if err != nil {
		tl.t.Fatal(err)
	}
	e, err := tl.log.Append(context.Background(), d.DecisionID, env, tl.signerPEM)
	if err != nil {
		tl.t.Fatal(err)
	}
	return e
}

// waitCovered waits until a checkpoint covers n entries.
func (tl *testLog) waitCovered(n int64) {
	tl.t.Helper()
	if _, err := tl.log.InclusionProof(context.Background(), n-1, true); err != nil {
		tl.t.Fatal(err)
	}
}

func openIndex(t *testing.T, path string) *index.Index {
	t.Helper()
	ix, err := index.OpenAt(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

func search(t *testing.T, ix *index.Index, params string) index.Page {
	t.Helper()
	v, err := url.ParseQuery(params)
	if err != nil {
		t.Fatal(err)
	}
	q, err := index.ParseQuery(v, now)
	if err != nil {
		t.Fatalf("ParseQuery(%s): %v", params, err)
	}
	p, err := ix.Search(context.Background(), q)
	if err != nil {
		t.Fatalf("Search(%s): %v", params, err)
	}
	return p
}

func indexes(p index.Page) []int64 {
	out := []int64{}
	for _, r := range p.Results {
		out = append(out, r.LogIndex)
	}
	return out
}

// now is a Wednesday noon; the fixture spreads decisions around it.
var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func fixture(t *testing.T) (*testLog, []translog.Entry) {
	tl := newTestLog(t)
	var es []translog.Entry
	for _, r := range []rec{
		{subject: "alice", action: "deploy", env: "production", repo: "acme/shop", allow: true, at: now.Add(-2 * time.Hour)},     // 0 Wed 10:00
		{subject: "alice", action: "deploy", env: "production", repo: "acme/shop", allow: true, at: now.Add(-36 * time.Hour)},    // 1 Tue 00:00 (night)
		{subject: "bob", action: "deploy", env: "production", repo: "acme/shop", allow: false, at: now.Add(-3 * time.Hour)},      // 2
		{subject: "svc-build", action: "pipeline.trigger", env: "", repo: "acme/api", allow: false, at: now.Add(-1 * time.Hour)}, // 3
		{subject: "svc-build", action: "pipeline.trigger", env: "", repo: "acme/api", allow: true, at: now.Add(-30 * time.Minute),
			alerts: []decision.Alert{{Severity: "high", Code: "first_privileged_use", Message: "first use"}}}, // 4
		{subject: "alice", action: "deploy", env: "staging", repo: "acme/shop", allow: true, at: now.Add(-10 * 24 * time.Hour)}, // 5 old
		{subject: "alice", action: "deploy", env: "production", repo: "acme/shop", allow: true, at: now.Add(-4 * 24 * time.Hour),
			policy: "bb22000000000000000000000000000000000000000000000000000000000000"}, // 6 Sat
	} {
		es = append(es, tl.add(r))
	}
	tl.waitCovered(int64(len(es)))
	return tl, es
}

func TestSearchAnswersAuditQuestions(t *testing.T) { forBackends(t, testSearchAnswersAuditQuestions) }

func testSearchAnswersAuditQuestions(t *testing.T, b backend) {
	ctx := context.Background()
	tl, es := fixture(t)
	ix := openIndex(t, b.fresh(t))
	n, err := ix.CatchUp(ctx, tl.log.Reader(), nil)
	if err != nil || n != len(es) {
		t.Fatalf("CatchUp = %d, %v; want %d", n, err, len(es))
	}
	for _, tc := range []struct {
		params string
		want   []int64
	}{
		{"subject=alice&action=deploy&since=7d", []int64{6, 1, 0}},
		{"subject=alice&action=deploy", []int64{6, 5, 1, 0}},
		{"action=deploy&environment=production&since=7d&outside_hours=9-17", []int64{6, 1}},
		{"subject=svc-build&outcome=deny", []int64{3}},
		{"outcome=deny", []int64{3, 2}},
		{"alert=first_privileged_use", []int64{4}},
		{"policy=bb22", []int64{6}},
		{"policy=aa11&repository=acme/api", []int64{4, 3}},
		{"caller=ci-bot&since=" + url.QueryEscape(now.Add(-150*time.Minute).Format(time.RFC3339)), []int64{4, 3, 0}},
		{"until=5d", []int64{5}},
		{"subject=nobody", []int64{}},
		{"kind=decision&system=github&adapter=github&limit=2", []int64{6, 5}},
	} {
		t.Run(tc.params, func(t *testing.T) {
			if got := indexes(search(t, ix, tc.params)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got log indexes %v, want %v", got, tc.want)
			}
		})
	}
	// Every result names its entry exactly as the log does.
	p := search(t, ix, "alert=first_privileged_use")
	r := p.Results[0]
	if r.UUID != es[4].UUID || r.Outcome != "allow" || r.ID != "dec-5ns" || len(r.Alerts) != 1 || r.Alerts[0].Severity != "high" {
		t.Errorf("row = %+v", r)
	}
	if r.Time != now.Add(-30*time.Minute) || r.Resource.Repository != "acme/api" || r.Caller != "ci-bot" {
		t.Errorf("row fields = %+v", r)
	}
}

func TestCursorPagesAreStable(t *testing.T) { forBackends(t, testCursorPagesAreStable) }

func testCursorPagesAreStable(t *testing.T, b backend) {
	ctx := context.Background()
	tl, _ := fixture(t)
	ix := openIndex(t, b.fresh(t))
	if _, err := ix.CatchUp(ctx, tl.log.Reader(), nil); err != nil {
		t.Fatal(err)
	}
	var got []int64
	cursor := ""
	for page := 0; ; page++ {
		params := "limit=3"
		if cursor != "" {
			params += "&cursor=" + cursor
		}
		p := search(t, ix, params)
		got = append(got, indexes(p)...)
		if page == 0 {
			// New entries arriving between pages do not shift later pages.
			tl.add(rec{subject: "carol", action: "deploy", allow: true, at: now})
			tl.waitCovered(8)
			if _, err := ix.CatchUp(ctx, tl.log.Reader(), nil); err != nil {
				t.Fatal(err)
			}
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if want := []int64{6, 5, 4, 3, 2, 1, 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("paged through %v, want %v", got, want)
	}
}

func TestCounts(t *testing.T) { forBackends(t, testCounts) }

func testCounts(t *testing.T, b backend) {
	ctx := context.Background()
	tl, _ := fixture(t)
	ix := openIndex(t, b.fresh(t))
	if _, err := ix.CatchUp(ctx, tl.log.Reader(), nil); err != nil {
		t.Fatal(err)
	}
	bySubject, err := ix.Counts(ctx, index.Query{Action: "deploy"}, "subject")
	if err != nil {
		t.Fatal(err)
	}
	want := []index.Count{{Key: "alice", Total: 4, Allowed: 4}, {Key: "bob", Total: 1, Denied: 1}}
	if !reflect.DeepEqual(bySubject, want) {
		t.Errorf("by subject = %+v, want %+v", bySubject, want)
	}
	byDay, err := ix.Counts(ctx, index.Query{Since: now.Add(-48 * time.Hour)}, "day")
	if err != nil {
		t.Fatal(err)
	}
	want = []index.Count{{Key: "2026-11-24", Total: 1, Allowed: 1}, {Key: "2026-11-25", Total: 4, Allowed: 2, Denied: 2}}
	if !reflect.DeepEqual(byDay, want) {
		t.Errorf("by day = %+v, want %+v", byDay, want)
	}
	if _, err := ix.Counts(ctx, index.Query{}, "password"); !errors.Is(err, index.ErrBadQuery) {
		t.Errorf("Counts by an unknown key: %v", err)
	}
}

func TestResumesAfterRestartAndRebuildIsIdentical(t *testing.T) {
	forBackends(t, testResumesAfterRestartAndRebuildIsIdentical)
}

func testResumesAfterRestartAndRebuildIsIdentical(t *testing.T, b backend) {
	ctx := context.Background()
	tl, _ := fixture(t)
	path := b.fresh(t)
	ix, err := index.OpenAt(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.CatchUp(ctx, tl.log.Reader(), nil); err != nil {
		t.Fatal(err)
	}
	ix.Close()

	tl.add(rec{subject: "carol", action: "deploy", env: "production", allow: false, at: now})
	tl.waitCovered(8)
	ix = openIndex(t, path)
	n, err := ix.CatchUp(ctx, tl.log.Reader(), nil)
	if err != nil || n != 1 {
		t.Fatalf("CatchUp after restart = %d, %v; want only the 1 new entry", n, err)
	}
	if next, _ := ix.Next(ctx); next != 8 {
		t.Errorf("Next = %d, want 8", next)
	}
	before := search(t, ix, "limit=1000")

	// Adding entries twice changes nothing.
	var rows []index.Row
	for e, err := range tl.log.Reader().Entries(ctx, 0, 8) {
		if err != nil {
			t.Fatal(err)
		}
		r, err := index.DecodeEntry(e.Index, e.UUID, e.IntegratedTime, e.Body, e.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	if err := ix.Add(ctx, tl.log.TreeID(), rows); err != nil {
		t.Fatal(err)
	}
	if again := search(t, ix, "limit=1000"); !reflect.DeepEqual(again, before) {
		t.Errorf("re-adding entries changed the index")
	}

	// Rebuilt from the log alone, the index answers identically.
	rebuilt := filepath.Join(t.TempDir(), "rebuilt.db")
	if n, err := index.Rebuild(ctx, rebuilt, tl.log.Reader(), nil); err != nil || n != 8 {
		t.Fatalf("Rebuild = %d, %v", n, err)
	}
	if after := search(t, openIndex(t, rebuilt), "limit=1000"); !reflect.DeepEqual(after, before) {
		t.Errorf("rebuilt index differs:\n%+v\n%+v", after, before)
	}
}

func TestRefusesAnotherLog(t *testing.T) { forBackends(t, testRefusesAnotherLog) }

func testRefusesAnotherLog(t *testing.T, be backend) {
	ctx := context.Background()
	a, _ := fixture(t)
	b := newTestLog(t)
	b.add(rec{subject: "x", action: "deploy", at: now})
	b.waitCovered(1)
	ix := openIndex(t, be.fresh(t))
	if _, err := ix.CatchUp(ctx, a.log.Reader(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.CatchUp(ctx, b.log.Reader(), nil); !errors.Is(err, index.ErrOtherLog) {
		t.Errorf("following another log: %v, want ErrOtherLog", err)
	}
}

func TestUnreadableEntryIsIndexedNotSkipped(t *testing.T) {
	forBackends(t, testUnreadableEntryIsIndexedNotSkipped)
}

func testUnreadableEntryIsIndexedNotSkipped(t *testing.T, b backend) {
	ctx := context.Background()
	tl := newTestLog(t)
	tl.add(rec{subject: "alice", action: "deploy", allow: true, at: now})
	e := tl.add(rec{subject: "mallory", action: "deploy", allow: true, at: now})
	tl.add(rec{subject: "bob", action: "deploy", allow: true, at: now})
	tl.waitCovered(3)
	// Tamper with the stored envelope of entry 1: it no longer matches its
	// leaf. The store is one database the log holds open: close, change, reopen.
	if err := tl.log.Close(ctx); err != nil {
		t.Fatal(err)
	}
	leaf, _ := hex.DecodeString(e.UUID[16:])
	err := logtest.RewriteStoredEnvelope(tl.dir, leaf, func([]byte) []byte {
		return []byte(`{"payload":"e30=","signatures":[{"sig":"AA=="}]}`)
	})
	if err != nil {
		t.Fatal(err)
	}
	if tl.log, err = translog.Open(ctx, logtest.Files(t, translog.Config{Dir: tl.dir, Key: tl.logKey, CheckpointInterval: 100 * time.Millisecond})); err != nil {
		t.Fatal(err)
	}
	ix := openIndex(t, b.fresh(t))
	if n, err := ix.CatchUp(ctx, tl.log.Reader(), nil); err != nil || n != 3 {
		t.Fatalf("CatchUp = %d, %v", n, err)
	}
	got := search(t, ix, "kind=unreadable")
	if len(got.Results) != 1 || got.Results[0].LogIndex != 1 || got.Results[0].UUID != e.UUID {
		t.Errorf("unreadable rows = %+v", got.Results)
	}
	if got := indexes(search(t, ix, "subject=mallory")); len(got) != 0 {
		t.Errorf("the tampered record was indexed as readable: %v", got)
	}
}

func TestParseQueryRejectsBadInput(t *testing.T) {
	for _, params := range []string{
		"subjekt=alice", "outcome=maybe", "since=yesterday", "since=-3h", "limit=0", "limit=5000",
		"policy=xyz", "policy=ab", "outside_hours=17-9", "cursor=12", "subject=a&subject=b", "kind=secret",
	} {
		v, _ := url.ParseQuery(params)
		if _, err := index.ParseQuery(v, now); !errors.Is(err, index.ErrBadQuery) {
			t.Errorf("ParseQuery(%s) = %v, want ErrBadQuery", params, err)
		}
	}
	q, err := index.ParseQuery(url.Values{"since": {"7d"}, "outside_hours": {"9-17"}, "limit": {"5"}, "subject": {"alice"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	back, err := index.ParseQuery(q.Values(), now)
	if err != nil || !reflect.DeepEqual(back, q) {
		t.Errorf("Values round trip: %+v, %v; want %+v", back, err, q)
	}
}

// TestOnIndexedSeesRowsBeforeTheirCommit: the daemon queues alerts from
// the rows OnIndexed shows; it must see them before the index records them
// as done, or a crash in between would skip their alerts for good. Each
// row is shown once by one Index.
func TestOnIndexedSeesRowsBeforeTheirCommit(t *testing.T) {
	ctx := context.Background()
	tl, es := fixture(t)
	ix := openIndex(t, filepath.Join(t.TempDir(), "index.db"))
	var shown []int64
	ix.OnIndexed(func(rows []index.Row) error {
		next, err := ix.Next(ctx)
		if err != nil {
			t.Error(err)
		}
		if next != rows[0].LogIndex {
			t.Errorf("rows from %d shown with the index already at %d: they were committed first", rows[0].LogIndex, next)
		}
		for _, r := range rows {
			shown = append(shown, r.LogIndex)
		}
		return nil
	})
	for range 2 {
		if _, err := ix.CatchUp(ctx, tl.log.Reader(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if want := indexesOf(es); !reflect.DeepEqual(shown, want) {
		t.Errorf("shown %v, want %v once each", shown, want)
	}
}

// TestOnIndexedFailureKeepsRowsUnindexed: when OnIndexed cannot take a
// batch (the daemon's alert outbox failed), the batch is not committed and
// the next CatchUp shows the same rows again, so none of their alerts is
// skipped.
func TestOnIndexedFailureKeepsRowsUnindexed(t *testing.T) {
	ctx := context.Background()
	tl, es := fixture(t)
	ix := openIndex(t, filepath.Join(t.TempDir(), "index.db"))
	refuse := errors.New("outbox is full")
	failing := true
	var shown [][]int64
	ix.OnIndexed(func(rows []index.Row) error {
		var got []int64
		for _, r := range rows {
			got = append(got, r.LogIndex)
		}
		shown = append(shown, got)
		if failing {
			return refuse
		}
		return nil
	})
	if _, err := ix.CatchUp(ctx, tl.log.Reader(), nil); !errors.Is(err, refuse) {
		t.Fatalf("CatchUp with OnIndexed failing: %v, want %v", err, refuse)
	}
	if next, err := ix.Next(ctx); err != nil || next != 0 {
		t.Fatalf("index after a refused batch holds %d entries (%v), want 0", next, err)
	}
	failing = false
	added, err := ix.CatchUp(ctx, tl.log.Reader(), nil)
	if err != nil || added != len(es) {
		t.Fatalf("CatchUp after the failure: %d, %v; want %d", added, err, len(es))
	}
	want := indexesOf(es)
	if len(shown) != 2 || !reflect.DeepEqual(shown[0], want) || !reflect.DeepEqual(shown[1], want) {
		t.Errorf("OnIndexed was shown %v; want %v twice (refused, then taken)", shown, want)
	}
}

func indexesOf(es []translog.Entry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.Index
	}
	return out
}
