package daemon

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gatelog/gatelog/daemon/alerts"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/record"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog"
)

// Codes of the alerts the daemon raises itself.
const (
	AlertFailClosed     = alerts.FailClosed
	AlertAdapterRestart = alerts.AdapterRestart
	AlertDenyBurst      = alerts.DenyBurst
)

// OutboxDir is the durable alert outbox inside the data directory.
const OutboxDir = alerts.OutboxDir

func (s *Server) openAlerts(ctx context.Context) error {
	a, err := alerts.Open(ctx, alerts.Config{
		Alerts: s.cfg.Alerts, Stdout: s.cfg.AlertStdout, DataDir: s.cfg.DataDir,
		Metrics: s.metrics, Logger: s.logger, Now: s.cfg.Now,
	})
	if err != nil {
		return err
	}
	s.alerts = a
	return nil
}

func (s *Server) closeAlerts() error {
	// s.alerts stays set: handlers and the shutdown hook may still read it
	// concurrently; closing is idempotent instead.
	if s.alerts == nil {
		return nil
	}
	return s.alerts.Close()
}

// queueAlerts is record.Config.Queue: a logged record's alerts are handed
// to the outbox, which the reply does not wait for (alerts.Service.Hand).
func (s *Server) queueAlerts(rec decision.Record, e translog.Entry) {
	if s.alerts != nil {
		s.alerts.Hand(rec, e)
	}
}

// RaiseAlert queues an alert from the daemon itself (a fail-closed event,
// an adapter crash, a monitor's report). subject and action may be empty.
func (s *Server) RaiseAlert(severity, code, message, subject, action string) error {
	if s.alerts == nil {
		return nil
	}
	return s.alerts.Raise(severity, code, message, subject, action)
}

// observeRecord is told the outcome of every record (record.Config.Observe):
// it keeps the metrics and readiness, hands logged records to the audit
// index, and raises the fail-closed alarm when a record could not be
// logged — whichever entry point made it.
func (s *Server) observeRecord(out record.Outcome) {
	s.metrics.Recorded(out)
	if s.audit != nil {
		s.audit.Recorded(out)
	}
	if out.Stage == "" {
		return
	}
	rec := out.Record
	s.logger.Error(out.Stage+" failed; the record is not logged, so it is denied", "kind", rec.Kind, "record", rec.DecisionID, "action", rec.Request.Action, "err", out.Err)
	_ = s.RaiseAlert("critical", AlertFailClosed,
		fmt.Sprintf("%s %s (%s) denied: %s failed: %v", rec.Kind, rec.DecisionID, rec.Request.Action, out.Stage, out.Err), rec.Request.Subject.ID, rec.Request.Action)
}

// stopAlertStreams ends the open alert streams at shutdown.
func (s *Server) stopAlertStreams() {
	if s.alerts != nil {
		s.alerts.StopStreams()
	}
}

func (s *Server) mountAlerts(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/alerts/stream", s.handleAlertStream)
}

// handleAlertStream streams alerts to read callers (alerts.Service.Stream).
func (s *Server) handleAlertStream(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authorize(w, r, identity.PermRead); !ok {
		return
	}
	if s.alerts == nil {
		writeError(w, http.StatusServiceUnavailable, "alerts are not available on this daemon")
		return
	}
	s.alerts.Stream(w, r, func(code int, format string, args ...any) { writeError(w, code, format, args...) })
}
