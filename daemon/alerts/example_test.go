package alerts_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/gatelog/gatelog/daemon/alerts"
	"github.com/gatelog/gatelog/daemon/metrics"
	"github.com/gatelog/gatelog/engine/alert"
	"github.com/gatelog/gatelog/plugins/host"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog"
)

type noState struct{}

func (noState) LogSize(context.Context) (uint64, error) { return 0, errors.New("none") }
func (noState) CheckpointAge() (time.Duration, error)   { return 0, errors.New("none") }
func (noState) OutboxDepth() (int, bool)                { return 0, false }
func (noState) Indexed(context.Context) (int64, bool)   { return 0, false }
func (noState) AuthCounts() map[string]uint64           { return nil }
func (noState) AdapterStatus() []host.Status            { return nil }

// A logged event's alerts are queued durably before the event is
// answered; queueing them again (a replay of the log after a crash) is a
// no-op, since an alert's ID names its record.
func Example() {
	dir, _ := os.MkdirTemp("", "alerts-example")
	defer os.RemoveAll(dir)
	cfg, _ := alert.ParseConfig([]byte(`{"sinks": []}`))
	svc, err := alerts.Open(context.Background(), alerts.Config{Alerts: cfg, DataDir: dir, Metrics: metrics.New(noState{})})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer svc.Close()
	rec := decision.Record{
		Kind: decision.KindEvent, DecisionID: "01a2b3c4-0000-7000-8000-000000000000", Time: "2026-12-07T10:00:00Z",
		Request: decision.Request{Action: "event.login", Subject: decision.Subject{ID: "alice"}},
		Event:   &decision.Event{Type: "login", Alerts: []decision.Alert{{Severity: "low", Code: "login.new_device", Message: "first login from a new device"}}},
	}
	entry := translog.Entry{Index: 7, UUID: "u7"}
	for range 2 {
		if err := svc.Queue(rec, entry); err != nil {
			fmt.Println(err)
		}
	}
	for _, a := range svc.Recent(10) {
		fmt.Println(a.ID, a.Code, a.Subject, *a.LogIndex)
	}
	// Output:
	// 01a2b3c4-0000-7000-8000-000000000000-0 login.new_device alice 7
}
