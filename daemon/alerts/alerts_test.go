package alerts_test

import (
	"context"
	"testing"

	"github.com/gatelog/gatelog/daemon/alerts"
	"github.com/gatelog/gatelog/daemon/metrics"
	"github.com/gatelog/gatelog/engine/alert"
	"github.com/gatelog/gatelog/internal/poll"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog"
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
