package alerts_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatelog/gatelog/daemon/alerts"
	"github.com/gatelog/gatelog/daemon/metrics"
	"github.com/gatelog/gatelog/engine/alert"
	"github.com/gatelog/gatelog/internal/poll"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/index"
)

func openService(t *testing.T) *alerts.Service {
	t.Helper()
	cfg, err := alert.ParseConfig([]byte(`{"sinks": []}`))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := alerts.Open(context.Background(), alerts.Config{Alerts: cfg, DataDir: t.TempDir(), Metrics: metrics.New(noState{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	return svc
}

func alerting(id string) decision.Record {
	return decision.Record{
		Kind: decision.KindDecision, DecisionID: id, Time: "2026-12-07T23:00:00Z",
		Request:  decision.Request{Action: "deploy", Subject: decision.Subject{ID: "alice"}},
		Decision: decision.Decision{Allow: true, Reasons: []string{"ok"}, Alerts: []decision.Alert{{Severity: "high", Code: "off_hours", Message: "at night"}}},
	}
}

// TestHandQueuesAfterTheCall: Hand returns at once and the alert reaches
// the outbox just after; after Close it starts nothing (the log keeps the
// alert, and the next start's audit follower queues it).
func TestHandQueuesAfterTheCall(t *testing.T) {
	svc := openService(t)
	rec := alerting("01a2b3c4-0000-7000-8000-000000000001")
	svc.Hand(rec, translog.Entry{Index: 3, UUID: "u3"})
	poll.Until(t, "the handed alert is in the outbox", func() bool {
		r := svc.Recent(10)
		return len(r) == 1 && r[0].ID == rec.DecisionID+"-0" && *r[0].LogIndex == 3
	})
	svc.Hand(decision.Record{Kind: decision.KindDecision, DecisionID: "01a2b3c4-0000-7000-8000-000000000002"}, translog.Entry{Index: 4})
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	svc.Hand(alerting("01a2b3c4-0000-7000-8000-000000000003"), translog.Entry{Index: 5, UUID: "u5"})
	if r := svc.Recent(10); len(r) != 1 {
		t.Errorf("outbox after Close and a late Hand holds %d alerts, want the first one only: %+v", len(r), r)
	}
}

// TestFromLogCountsAFailedBatchOnce: rows FromLog could not queue come
// again at the next catch-up; their denies count towards a burst once.
func TestFromLogCountsAFailedBatchOnce(t *testing.T) {
	cfg, err := alert.ParseConfig([]byte(`{"sinks": [], "deny_burst": {"count": 3, "window": "5m"}}`))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := alerts.Open(context.Background(), alerts.Config{Alerts: cfg, DataDir: t.TempDir(), Metrics: metrics.New(noState{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	now := time.Now()
	deny := func(i int64) index.Row {
		return index.Row{LogIndex: i, Kind: index.KindDecision, ID: fmt.Sprintf("d%d", i), Time: now, Subject: "mallory"}
	}
	// The third row's alert cannot be queued (its ID is not a valid alert ID).
	bad := index.Row{LogIndex: 2, Kind: index.KindDecision, Allow: true, ID: "not an id", Time: now, Subject: "alice",
		Alerts: []decision.Alert{{Severity: "high", Code: "off_hours", Message: "at night"}}}
	rows := []index.Row{deny(0), deny(1), bad}
	for range 2 {
		if err := svc.FromLog(rows); err == nil {
			t.Fatal("FromLog queued an alert with an invalid ID")
		}
	}
	for _, a := range svc.Recent(10) {
		if a.Code == alerts.DenyBurst {
			t.Errorf("two denies shown twice raised %s: %+v", alerts.DenyBurst, a)
		}
	}
	if err := svc.FromLog([]index.Row{deny(3)}); err != nil {
		t.Fatal(err)
	}
	if r := svc.Recent(10); len(r) != 1 || r[0].Code != alerts.DenyBurst {
		t.Errorf("the third deny raised %+v, want one %s", r, alerts.DenyBurst)
	}
}
