package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/gatelog/gatelog/engine/alert"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/record"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/index"
)

// OutboxDir is the durable alert outbox inside the data directory.
const OutboxDir = "outbox"

// Codes of the alerts the daemon raises itself.
const (
	AlertFailClosed      = "gatelog.fail_closed"
	AlertAdapterRestart  = "gatelog.adapter_restarted"
	AlertDenyBurst       = "gatelog.deny_burst"
	alertUnnamedByPolicy = "unnamed"
)

// alertService owns the outbox and its delivery loop.
type alertService struct {
	outbox  *alert.Outbox
	stop    context.CancelFunc
	done    chan struct{}
	closers []io.Closer
	// streamsDone ends open alert streams when the daemon shuts down.
	streamsDone chan struct{}
	endStreams  sync.Once
	closeOnce   sync.Once
	bursts      *alert.BurstDetector
}

func (s *Server) openAlerts(ctx context.Context) error {
	out := s.cfg.AlertStdout
	if out == nil {
		out = os.Stdout
	}
	sinks, err := s.cfg.Alerts.Build(out)
	if err != nil {
		return err
	}
	opts := s.cfg.Alerts.Options()
	opts.Logger = s.logger
	ob, err := alert.OpenOutbox(filepath.Join(s.cfg.DataDir, OutboxDir), sinks, opts)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &alertService{outbox: ob, stop: cancel, done: make(chan struct{}), streamsDone: make(chan struct{}),
		bursts: alert.NewBurstDetector(s.cfg.Alerts.Burst())}
	for _, sk := range sinks {
		if c, ok := sk.(io.Closer); ok {
			a.closers = append(a.closers, c)
		}
	}
	go func() {
		defer close(a.done)
		ob.Run(rctx)
	}()
	if n := ob.Depth(); n > 0 {
		s.logger.Info("alert outbox: resuming delivery", "pending", n)
	}
	s.alerts = a
	return nil
}

func (s *Server) closeAlerts() error {
	// s.alerts stays set: handlers and the shutdown hook may still read it
	// concurrently; closing is made idempotent instead.
	a := s.alerts
	if a == nil {
		return nil
	}
	a.closeOnce.Do(func() {
		a.endStreams.Do(func() { close(a.streamsDone) })
		a.stop()
		<-a.done
		for _, c := range a.closers {
			_ = c.Close()
		}
	})
	return nil
}

// queueAlerts puts the policy's alerts for a logged decision in the outbox
// (durably) before the decision is answered.
func (s *Server) queueAlerts(rec decision.Record, e translog.Entry) error {
	if s.alerts == nil {
		return nil
	}
	for i, pa := range rec.Alerts() {
		a := policyAlert(rec.DecisionID, i, pa, rec.Time, e.Index, e.UUID, rec.Request.Subject.ID, rec.Request.Action,
			rec.Request.Resource.Environment, rec.Request.Resource.Repository)
		queued, err := s.alerts.outbox.Enqueue(a)
		if err != nil {
			return fmt.Errorf("queue alert %s: %w", a.Code, err)
		}
		if queued {
			s.metrics.alertRaised(a)
		}
	}
	return nil
}

// policyAlert is the outbox form of the i-th alert of a logged decision;
// its ID depends only on the decision, so every producer agrees on it.
func policyAlert(decisionID string, i int, pa decision.Alert, at string, logIndex int64, uuid, subject, action, env, repo string) alert.Alert {
	a := alert.Alert{
		ID: fmt.Sprintf("%s-%d", decisionID, i), Time: at,
		Severity: pa.Severity, Code: pa.Code, Message: pa.Message, Source: alert.SourcePolicy,
		DecisionID: decisionID, LogIndex: &logIndex, UUID: uuid,
		Subject: subject, Action: action, Environment: env, Repository: repo,
	}
	if a.Code == "" {
		a.Code = alertUnnamedByPolicy
	}
	return a
}

// alertsFromLog looks at newly indexed entries, in log order. It queues
// their alerts that are not in the outbox (those of a decision logged just
// before a crash, whose reply, and so whose Enqueue, never happened), and
// raises a deny-burst alert when one subject is denied too often. Alerts
// the outbox already holds or delivered are refused by ID, so nothing is
// delivered twice, even when the index is rebuilt.
func (s *Server) alertsFromLog(rows []index.Row) {
	a := s.alerts
	if a == nil {
		return
	}
	for _, r := range rows {
		if !a.outbox.Covers(r.Time) {
			continue
		}
		if r.Kind == index.KindDecision && !r.Allow && r.Subject != "" {
			if fire, n := a.bursts.Deny(r.Subject, r.Time); fire {
				s.denyBurst(r, n)
			}
		}
		for i, pa := range r.Alerts {
			al := policyAlert(r.ID, i, pa, r.Time.Format(time.RFC3339Nano), r.LogIndex, r.UUID, r.Subject, r.Action,
				r.Resource.Environment, r.Resource.Repository)
			queued, err := a.outbox.Enqueue(al)
			if err != nil {
				s.logger.Error("cannot queue an alert found in the log", "alert", al.ID, "err", err)
				continue
			}
			if queued {
				s.logger.Info("queued an alert found in the log", "alert", al.ID, "log_index", r.LogIndex)
				s.metrics.alertRaised(al)
			}
		}
	}
}

// denyBurst raises the deny-burst alert at the entry that completed it; the
// ID names that entry, so a replay of the log raises the same alert.
func (s *Server) denyBurst(r index.Row, n int) {
	_, window := s.cfg.Alerts.Burst()
	idx := r.LogIndex
	a := alert.Alert{
		ID: fmt.Sprintf("deny-burst-%d", r.LogIndex), Time: r.Time.Format(time.RFC3339Nano),
		Severity: "high", Code: AlertDenyBurst, Source: alert.SourceDaemon,
		Message:    fmt.Sprintf("%s was denied %d times within %s", r.Subject, n, window),
		DecisionID: r.ID, LogIndex: &idx, UUID: r.UUID, Subject: r.Subject, Action: r.Action,
		Environment: r.Resource.Environment, Repository: r.Resource.Repository,
	}
	queued, err := s.alerts.outbox.Enqueue(a)
	if err != nil {
		s.logger.Error("cannot queue a deny-burst alert", "subject", r.Subject, "err", err)
		return
	}
	if queued {
		s.metrics.alertRaised(a)
	}
}

// RaiseAlert queues an alert from the daemon itself (a fail-closed event,
// an adapter crash, a monitor's report). subject and action may be empty.
func (s *Server) RaiseAlert(severity, code, message, subject, action string) error {
	if s.alerts == nil {
		return nil
	}
	a := alert.Alert{
		ID: "daemon-" + uuid.NewString(), Time: s.cfg.Now().UTC().Format(time.RFC3339Nano),
		Severity: severity, Code: code, Message: message, Source: alert.SourceDaemon,
		Subject: subject, Action: action,
	}
	if _, err := s.alerts.outbox.Enqueue(a); err != nil {
		s.logger.Error("cannot queue a daemon alert", "code", code, "err", err)
		return err
	}
	s.metrics.alertRaised(a)
	return nil
}

// observeRecord is told the outcome of every record (record.Config.Observe):
// it keeps the metrics and readiness, and raises the fail-closed alarm
// when a record could not be logged — whichever entry point made it.
func (s *Server) observeRecord(out record.Outcome) {
	s.metrics.recorded(out)
	if out.Stage == "" {
		return
	}
	rec := out.Record
	s.logger.Error(out.Stage+" failed; the record is not logged, so it is denied", "kind", rec.Kind, "record", rec.DecisionID, "action", rec.Request.Action, "err", out.Err)
	_ = s.RaiseAlert("critical", AlertFailClosed,
		fmt.Sprintf("%s %s (%s) denied: %s failed: %v", rec.Kind, rec.DecisionID, rec.Request.Action, out.Stage, out.Err), rec.Request.Subject.ID, rec.Request.Action)
}

// stopAlertStreams ends the open alert streams, so that a graceful
// shutdown does not wait for clients that never hang up.
func (s *Server) stopAlertStreams() {
	if a := s.alerts; a != nil {
		a.endStreams.Do(func() { close(a.streamsDone) })
	}
}

func (s *Server) mountAlerts(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/alerts/stream", s.handleAlertStream)
}

// handleAlertStream sends alerts as server-sent events (event "alert",
// id = alert ID, data = the alert as JSON): first up to ?recent=N recent
// ones, then each new one as it is queued, with a comment line every 15s
// to keep the connection alive.
func (s *Server) handleAlertStream(w http.ResponseWriter, r *http.Request) {
	caller, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if !caller.Has(identity.PermRead) {
		writeError(w, http.StatusForbidden, "caller %s lacks the read permission", caller.ID)
		return
	}
	a := s.alerts
	if a == nil {
		writeError(w, http.StatusServiceUnavailable, "alerts are not available on this daemon")
		return
	}
	n := 0
	if v := r.URL.Query().Get("recent"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 || n > 100 {
			writeError(w, http.StatusBadRequest, "recent %q must be a number from 0 to 100", v)
			return
		}
	}
	recent, live, cancel := a.outbox.Subscribe(n)
	defer cancel()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	send := func(al alert.Alert) error {
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		data, err := json.Marshal(al)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "id: %s\nevent: alert\ndata: %s\n\n", al.ID, data); err != nil {
			return err
		}
		return rc.Flush()
	}
	for _, al := range recent {
		if send(al) != nil {
			return
		}
	}
	_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprint(w, ": gatelog alert stream\n\n"); err != nil || rc.Flush() != nil {
		return
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-a.streamsDone:
			return
		case al := <-live:
			if send(al) != nil {
				return
			}
		case <-keepalive.C:
			_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
