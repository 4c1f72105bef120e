package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gatelog/gatelog/daemon/metrics"
	"github.com/gatelog/gatelog/plugins/host"
	"github.com/gatelog/gatelog/record"
	"github.com/gatelog/gatelog/record/decision"
)

// idle is a daemon with nothing to report at scrape time.
type idle struct{}

func (idle) LogSize(context.Context) (uint64, error) { return 0, errors.New("no log") }
func (idle) CheckpointAge() (time.Duration, error)   { return 0, errors.New("no log") }
func (idle) OutboxDepth() (int, bool)                { return 0, false }
func (idle) Indexed(context.Context) (int64, bool)   { return 0, false }
func (idle) AuthCounts() map[string]uint64           { return nil }
func (idle) AdapterStatus() []host.Status            { return nil }

// The record path reports every outcome; a failed append makes the log
// "failing" until an append succeeds again, and both are counted.
func Example() {
	m := metrics.New(idle{})
	rec := decision.Record{Kind: decision.KindEvent, Request: decision.Request{Action: "event.login"}}
	m.Recorded(record.Outcome{Record: rec, Stage: record.StageAppend, Err: errors.New("disk full")})
	fmt.Println("failing:", m.LogFailing())
	m.Recorded(record.Outcome{Record: rec})
	fmt.Println("failing:", m.LogFailing())

	rr := httptest.NewRecorder()
	m.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rr.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "gatelog_records_total") {
			fmt.Println(line)
		}
	}
	// Output:
	// failing: true
	// failing: false
	// gatelog_records_total{kind="event",outcome="append"} 1
	// gatelog_records_total{kind="event",outcome="logged"} 1
}
