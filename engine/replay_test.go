package engine_test

import (
	"context"
	"testing"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/record/decision"
)

func TestReplayNamesTheChange(t *testing.T) {
	ctx := context.Background()
	e, err := engine.New(ctx, policyFS(basePolicy))
	if err != nil {
		t.Fatal(err)
	}
	trigger := decision.Request{Action: "pipeline.trigger", Subject: decision.Subject{ID: "a", Verified: true}}
	deploy := decision.Request{Action: "deploy"}
	logged := func(req decision.Request, allow bool, reasons []string, alerts ...decision.Alert) decision.Record {
		return decision.Record{Request: req, Decision: decision.Decision{Allow: allow, Reasons: reasons, Alerts: alerts}}
	}
	tests := []struct {
		name   string
		rec    decision.Record
		change string
	}{
		{"same", logged(trigger, true, []string{"triggers are open to all"}), ""},
		{"now denied", logged(deploy, true, []string{"ok"}), "allow -> deny"},
		{"now allowed", logged(trigger, false, []string{"no"}), "deny -> allow"},
		{"other reason", logged(deploy, false, []string{"frozen: summer"}), "reasons"},
		{"alert gone", logged(trigger, true, []string{"triggers are open to all"}, decision.Alert{Severity: "high", Code: "odd_hours"}), "alerts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.Replay(ctx, 7, tt.rec)
			if got := r.Change(); got != tt.change || r.LogIndex != 7 || r.Policy != e.Policy() {
				t.Errorf("change %q, want %q (%+v)", got, tt.change, r)
			}
		})
	}
}
