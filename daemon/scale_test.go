package daemon_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/daemon/api"
	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/internal/poll"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/index"
	"github.com/gatelog/gatelog/translog/verify"
)

// scalePolicy allows deploys only to staging for users, everything for
// the deploy service, and denies the build service's deploys.
const scalePolicy = `package gatelog

default decision := {"allow": false, "reasons": ["no rule allows this action"]}

decision := {"allow": true, "reasons": ["staging is open"]} if {
	input.resource.environment == "staging"
}

decision := {"allow": true, "reasons": ["release automation"]} if {
	input.subject.id == "svc-deploy"
}
`

// stepClock hands out a time that advances by step on every call until
// frozen, so generated decisions spread over days.
type stepClock struct {
	start  time.Time
	step   time.Duration
	n      atomic.Int64
	frozen atomic.Bool
}

func (c *stepClock) Now() time.Time {
	if c.frozen.Load() {
		return c.start.Add(time.Duration(c.n.Load()) * c.step)
	}
	return c.start.Add(time.Duration(c.n.Add(1)) * c.step)
}

// truth is what a receipt's signed record says, read without the index.
type truth struct {
	index   int64
	id      string
	subject string
	action  string
	env     string
	allow   bool
	policy  string
	at      time.Time
}

// TestScaleTenThousandDecisions logs 10,000 decisions through Decide,
// answers the audit questions from the index over HTTP, checks the
// answers against the signed records, verifies every returned row offline,
// then deletes the index, rebuilds it from the log alone and gets the same
// answers. Timings are logged, never asserted.
func TestScaleTenThousandDecisions(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	// The figures of interest here are the index's, not the disk's: on a
	// memory file system the log's fsyncs cost nothing (gatelog-bench
	// measures the log on disk).
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() && os.Getenv("GATELOG_SCALE_ON_DISK") == "" {
		t.Setenv("TMPDIR", "/dev/shm")
	}
	ctx := context.Background()
	dir := t.TempDir()
	clock := &stepClock{start: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), step: 10 * 24 * time.Hour / time.Duration(n)}
	withClock := func(c *daemon.Config) {
		c.Now = clock.Now
		c.Policies = fstest.MapFS{"decision.rego": {Data: []byte(scalePolicy)}}
	}
	d := startOps(t, dir, withClock)

	subjects := []string{"alice", "bob", "carol", "dave", "svc-build", "svc-deploy"}
	actions := []string{"deploy", "deploy", "pipeline.trigger", "secret.read"}
	envs := []string{"production", "staging"}
	caller := decision.Caller{ID: "ci", Kind: "api_key"}

	start := time.Now()
	receipts := make([]decision.Receipt, n)
	generate := func(from, to int) {
		var wg sync.WaitGroup
		next := atomic.Int64{}
		next.Store(int64(from))
		for range 128 {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= to {
						return
					}
					h := uint32(i) * 2654435761 // spread the fields independently
					req := decision.Request{
						Subject:  decision.Subject{ID: subjects[int(h>>8)%len(subjects)], Kind: "user", Verified: true},
						Action:   actions[int(h>>16)%len(actions)],
						Resource: decision.Resource{System: "github", Environment: envs[int(h>>24)%len(envs)], Repository: fmt.Sprintf("acme/repo%d", i%13)},
						Source:   decision.Source{Adapter: "github"},
					}
					rc, err := d.Server.Decide(ctx, req, caller, false)
					if err != nil {
						t.Errorf("decide %d: %v", i, err)
						return
					}
					receipts[i] = rc
				}
			})
		}
		wg.Wait()
	}
	generate(0, n/2)
	policyA := d.Server.Policy().SHA256
	// Half-way, a new policy: "every decision made under policy X" then
	// has a real answer.
	ch, err := d.Server.ReloadPolicy(ctx, engine.Source{FS: fstest.MapFS{"decision.rego": {Data: []byte(scalePolicy + "\n# v2\n")}}, Origin: "test"}, "test")
	if err != nil || !ch.Changed {
		t.Fatalf("reload: %+v %v", ch, err)
	}
	generate(n/2, n)
	if t.Failed() {
		t.FailNow()
	}
	clock.frozen.Store(true)
	t.Logf("logged %d decisions in %s (128 concurrent callers of Decide)", n, time.Since(start).Round(time.Millisecond))
	m := scrape(t, d)
	for _, stage := range []string{"eval", "sign", "append"} {
		h := m["gatelog_decide_stage_seconds"].find(map[string]string{"stage": stage}).GetHistogram()
		t.Logf("  stage %-6s mean %s", stage, (time.Duration(h.GetSampleSum() / float64(h.GetSampleCount()) * 1e9)).Round(time.Microsecond))
	}

	// Ground truth, from the signed records in the receipts.
	truths := make([]truth, n)
	for i, rc := range receipts {
		env, err := receipt.ParseEnvelope(rc.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := base64.StdEncoding.DecodeString(env.Payload)
		st, err := receipt.ParseStatement(payload)
		if err != nil {
			t.Fatal(err)
		}
		rec := st.Predicate
		at, _ := time.Parse(time.RFC3339Nano, rec.Time)
		truths[i] = truth{rc.LogIndex, rc.DecisionID, rec.Request.Subject.ID, rec.Request.Action,
			rec.Request.Resource.Environment, rec.Decision.Allow, rec.Policy.SHA256, at}
	}
	now := clock.Now()
	questions := []struct {
		name, params string
		want         func(truth) bool
	}{
		{"who deployed to production last week outside working hours",
			"action=deploy&environment=production&outcome=allow&since=7d&outside_hours=9-17",
			func(x truth) bool {
				h, wd := x.at.Hour(), x.at.Weekday()
				return x.action == "deploy" && x.env == "production" && x.allow && !x.at.Before(now.Add(-7*24*time.Hour)) &&
					(wd == time.Saturday || wd == time.Sunday || h < 9 || h >= 17)
			}},
		{"every decision made under policy X", "kind=decision&policy=" + policyA, func(x truth) bool { return x.policy == policyA }},
		{"all denies for this service account", "subject=svc-build&outcome=deny", func(x truth) bool { return x.subject == "svc-build" && !x.allow }},
	}

	// Wait until the index covers every decision (a checkpoint must).
	last := slices.MaxFunc(receipts, func(a, b decision.Receipt) int { return int(a.LogIndex - b.LogIndex) })
	poll.Until(t, "the index covers the log", func() bool { return d.search("limit=1").Indexed > last.LogIndex })

	answers := map[string][]index.Row{}
	for _, q := range questions {
		var want []int64
		for _, x := range truths {
			if q.want(x) {
				want = append(want, x.index)
			}
		}
		slices.Sort(want)
		slices.Reverse(want)
		qs := time.Now()
		rows := d.searchAll(q.params)
		took := time.Since(qs)
		var got []int64
		for _, r := range rows {
			got = append(got, r.LogIndex)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: index answered %d entries, the signed records say %d", q.name, len(got), len(want))
		}
		vs := time.Now()
		n := d.verifyPages(t, q.params)
		t.Logf("%s: %d entries, searched in %s; all %d fetched with their proofs and verified against the log in %s",
			q.name, len(rows), took.Round(time.Millisecond), n, time.Since(vs).Round(time.Millisecond))
		if q.params == questions[0].params {
			// One answer is also verified the long way, receipt by receipt.
			d.verifyAll(t, rows)
		}
		answers[q.name] = rows
	}

	// Delete the index and rebuild it from the log alone: same answers.
	d.Stop()
	for _, f := range []string{api.IndexFile, api.IndexFile + "-wal", api.IndexFile + "-shm"} {
		_ = os.Remove(filepath.Join(dir, f))
	}
	rd, err := translog.OpenReader(filepath.Join(dir, api.LogDir), d.LogKey)
	if err != nil {
		t.Fatal(err)
	}
	rs := time.Now()
	count, err := index.Rebuild(ctx, filepath.Join(dir, api.IndexFile), rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rd.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("rebuilt the index from the log: %d entries in %s", count, time.Since(rs).Round(time.Millisecond))
	d = startOps(t, dir, withClock)
	for _, q := range questions {
		if got := d.searchAll(q.params); !sameRows(got, answers[q.name]) {
			t.Errorf("%s: the rebuilt index answers differently", q.name)
		}
	}
}

// verifyPages searches with ?receipts=1 and verifies every row's receipt
// offline, as gatelog audit search --verify does; it returns the count.
func (d *opsDaemon) verifyPages(t *testing.T, params string) int {
	t.Helper()
	n := 0
	for cursor := ""; ; {
		p := params + "&limit=1000&receipts=1"
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		sr := d.search(p)
		if len(sr.Receipts) != len(sr.Results) {
			t.Fatalf("%d receipts for %d results", len(sr.Receipts), len(sr.Results))
		}
		var wg sync.WaitGroup
		next := atomic.Int64{}
		for range 2 {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= len(sr.Results) {
						return
					}
					r, rc := sr.Results[i], sr.Receipts[i]
					if rc == nil {
						t.Errorf("row %d has no receipt", r.LogIndex)
						continue
					}
					res, err := verify.Receipt(*rc, d.LogKey, d.SignerKey)
					if err != nil {
						t.Errorf("row %d: %v", r.LogIndex, err)
						continue
					}
					rec := res.Statement.Predicate
					if rc.LogIndex != r.LogIndex || rc.UUID != r.UUID || rec.Request.Subject.ID != r.Subject || rec.Decision.Allow != r.Allow || rec.Policy.SHA256 != r.PolicySHA256 {
						t.Errorf("row %d differs from its signed record", r.LogIndex)
					}
				}
			})
		}
		wg.Wait()
		n += len(sr.Results)
		if sr.NextCursor == "" {
			return n
		}
		cursor = sr.NextCursor
	}
}

func sameRows(a, b []index.Row) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// searchAll pages through every result of a search.
func (d *opsDaemon) searchAll(params string) []index.Row {
	var out []index.Row
	for cursor := ""; ; {
		p := params + "&limit=1000"
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		sr := d.search(p)
		out = append(out, sr.Results...)
		if sr.NextCursor == "" {
			return out
		}
		cursor = sr.NextCursor
	}
}

// verifyAll fetches each row's receipt with a fresh inclusion proof and
// verifies it offline, as gatelog audit search --verify does.
func (d *opsDaemon) verifyAll(t *testing.T, rows []index.Row) {
	t.Helper()
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(rows) {
					return
				}
				r := rows[i]
				code, raw := d.GetAs("/v1/decisions/"+r.ID, d.readKey)
				if code != 200 {
					t.Errorf("row %d: %d %s", r.LogIndex, code, raw)
					return
				}
				var rc decision.Receipt
				if err := json.Unmarshal(raw, &rc); err != nil {
					t.Error(err)
					return
				}
				res, err := verify.Receipt(rc, d.LogKey, d.SignerKey)
				if err != nil {
					t.Errorf("row %d: %v", r.LogIndex, err)
					return
				}
				rec := res.Statement.Predicate
				if rc.LogIndex != r.LogIndex || rc.UUID != r.UUID || rec.Request.Subject.ID != r.Subject || rec.Decision.Allow != r.Allow || rec.Policy.SHA256 != r.PolicySHA256 {
					t.Errorf("row %d differs from its signed record", r.LogIndex)
				}
			}
		})
	}
	wg.Wait()
}
