// Package alerts is the daemon's side of alerting: the durable outbox and
// its delivery loop, the alerts of every logged record queued before the
// record is answered, alerts recovered from the log after a crash, the
// deny-burst detector, the daemon's own alarms, and the live stream of
// alerts (server-sent events) for read callers.
package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/gatelog/gatelog/daemon/metrics"
	"github.com/gatelog/gatelog/engine/alert"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/index"
)

// OutboxDir is the durable alert outbox inside the data directory.
const OutboxDir = "outbox"

// Codes of the alerts the daemon raises itself. A caller may not raise a
// code that starts with DaemonPrefix.
const (
	FailClosed           = "gatelog.fail_closed"
	AdapterRestart       = "gatelog.adapter_restarted"
	DenyBurst            = "gatelog.deny_burst"
	DaemonPrefix         = "gatelog."
	alertUnnamedByPolicy = "unnamed"
)

// Config configures a Service.
type Config struct {
	// Alerts configures the sinks (alert.LoadConfig).
	Alerts alert.Config
	// Stdout is where a "stdout" sink writes (default os.Stdout).
	Stdout io.Writer
	// DataDir holds the outbox (OutboxDir).
	DataDir string
	// Metrics counts the alerts raised; required.
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Now is the clock of the daemon's own alerts (default time.Now).
	Now func() time.Time
}

// Service owns the outbox and its delivery loop.
type Service struct {
	cfg     Config
	outbox  *alert.Outbox
	stop    context.CancelFunc
	done    chan struct{}
	closers []io.Closer
	// streamsDone ends open alert streams when the daemon shuts down.
	streamsDone chan struct{}
	endStreams  sync.Once
	closeOnce   sync.Once
	// handing counts the alerts Hand is queueing; once handClosed is set
	// (by Close, under handMu) Hand starts no more.
	handing    sync.WaitGroup
	handMu     sync.RWMutex
	handClosed bool
	bursts     *alert.BurstDetector
	// counted is the last log index whose deny FromLog counted towards a
	// burst: rows FromLog failed on come again, and are counted once.
	// FromLog is called by one catch-up at a time.
	counted int64
}

// Open opens the outbox and starts delivering what it holds.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	out := cfg.Stdout
	if out == nil {
		out = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	sinks, err := cfg.Alerts.Build(out)
	if err != nil {
		return nil, err
	}
	opts := cfg.Alerts.Options()
	opts.Logger = cfg.Logger
	ob, err := alert.OpenOutbox(filepath.Join(cfg.DataDir, OutboxDir), sinks, opts)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &Service{cfg: cfg, outbox: ob, stop: cancel, done: make(chan struct{}), streamsDone: make(chan struct{}),
		bursts: alert.NewBurstDetector(cfg.Alerts.Burst()), counted: -1}
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
		cfg.Logger.Info("alert outbox: resuming delivery", "pending", n)
	}
	return a, nil
}

// Close stops delivery and the streams; it is safe to call more than once
// and concurrently with handlers.
func (a *Service) Close() error {
	a.closeOnce.Do(func() {
		a.StopStreams()
		a.handMu.Lock()
		a.handClosed = true
		a.handMu.Unlock()
		a.handing.Wait()
		a.stop()
		<-a.done
		if err := a.outbox.Close(); err != nil {
			a.cfg.Logger.Warn("alert outbox: closing its files", "err", err)
		}
		for _, c := range a.closers {
			_ = c.Close()
		}
	})
	return nil
}

// Depth is the number of alerts waiting for delivery to some sink.
func (a *Service) Depth() int { return a.outbox.Depth() }

// Recent returns up to n of the latest alerts queued.
func (a *Service) Recent(n int) []alert.Alert {
	recent, _, cancel := a.outbox.Subscribe(n)
	cancel()
	return recent
}

// Hand passes the alerts of a logged record to the outbox without making
// the record's reply wait for the outbox's own disk write
// (record.Config.Queue): the record, alerts included, is durable in the
// log already, and FromLog queues from the log whatever Hand did not
// (a crash before the write, a failed write). A record without alerts
// costs nothing. Close waits for the alerts handed over.
func (a *Service) Hand(rec decision.Record, e translog.Entry) {
	if len(rec.Alerts()) == 0 {
		return
	}
	a.handMu.RLock()
	defer a.handMu.RUnlock()
	if a.handClosed {
		// Closing: the next start's audit follower queues them from the log.
		return
	}
	a.handing.Go(func() {
		if err := a.Queue(rec, e); err != nil {
			a.cfg.Logger.Warn("alert outbox: cannot queue a logged record's alerts now; they are queued from the log at the audit index's next catch-up",
				"decision", rec.DecisionID, "log_index", e.Index, "err", err)
		}
	})
}

// Queue puts the alerts of a logged record in the outbox, durably, and
// returns once they are there.
func (a *Service) Queue(rec decision.Record, e translog.Entry) error {
	for i, pa := range rec.Alerts() {
		al := policyAlert(rec.DecisionID, i, pa, rec.Time, e.Index, e.UUID, rec.Request.Subject.ID, rec.Request.Action,
			rec.Request.Resource.Environment, rec.Request.Resource.Repository)
		queued, err := a.outbox.Enqueue(al)
		if err != nil {
			return fmt.Errorf("queue alert %s: %w", al.Code, err)
		}
		if queued {
			a.cfg.Metrics.AlertRaised(al)
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

// FromLog looks at newly indexed entries, in log order. It queues
// their alerts that are not in the outbox (those Hand did not queue: a
// decision logged just before a crash, or an outbox that failed for a
// while), and raises a deny-burst alert when one subject is denied too
// often. Alerts the outbox already holds or delivered are refused by ID,
// so nothing is delivered twice, even when the index is rebuilt. An alert
// it cannot queue makes it fail, so that the index keeps those rows
// unindexed and shows them again at its next catch-up: the log is the
// alerts' durable copy, and the outbox takes every one of them from it.
func (a *Service) FromLog(rows []index.Row) error {
	var errs []error
	for _, r := range rows {
		if !a.outbox.Covers(r.Time) {
			continue
		}
		if r.Kind == index.KindDecision && !r.Allow && r.Subject != "" && r.LogIndex > a.counted {
			a.counted = r.LogIndex
			if fire, n := a.bursts.Deny(r.Subject, r.Time); fire {
				a.denyBurst(r, n)
			}
		}
		for i, pa := range r.Alerts {
			al := policyAlert(r.ID, i, pa, r.Time.Format(time.RFC3339Nano), r.LogIndex, r.UUID, r.Subject, r.Action,
				r.Resource.Environment, r.Resource.Repository)
			queued, err := a.outbox.Enqueue(al)
			if err != nil {
				a.cfg.Logger.Error("cannot queue an alert found in the log; retried at the next catch-up", "alert", al.ID, "err", err)
				errs = append(errs, fmt.Errorf("queue alert %s: %w", al.ID, err))
				continue
			}
			if queued {
				a.cfg.Logger.Info("queued an alert found in the log", "alert", al.ID, "log_index", r.LogIndex)
				a.cfg.Metrics.AlertRaised(al)
			}
		}
	}
	return errors.Join(errs...)
}

// denyBurst raises the deny-burst alert at the entry that completed it; the
// ID names that entry, so a replay of the log raises the same alert.
func (a *Service) denyBurst(r index.Row, n int) {
	_, window := a.cfg.Alerts.Burst()
	idx := r.LogIndex
	al := alert.Alert{
		ID: fmt.Sprintf("deny-burst-%d", r.LogIndex), Time: r.Time.Format(time.RFC3339Nano),
		Severity: "high", Code: DenyBurst, Source: alert.SourceDaemon,
		Message:    fmt.Sprintf("%s was denied %d times within %s", r.Subject, n, window),
		DecisionID: r.ID, LogIndex: &idx, UUID: r.UUID, Subject: r.Subject, Action: r.Action,
		Environment: r.Resource.Environment, Repository: r.Resource.Repository,
	}
	queued, err := a.outbox.Enqueue(al)
	if err != nil {
		a.cfg.Logger.Error("cannot queue a deny-burst alert", "subject", r.Subject, "err", err)
		return
	}
	if queued {
		a.cfg.Metrics.AlertRaised(al)
	}
}

// Raise queues an alert from the daemon itself (a fail-closed event, an
// adapter crash, a monitor's report). subject and action may be empty.
func (a *Service) Raise(severity, code, message, subject, action string) error {
	al := alert.Alert{
		ID: "daemon-" + uuid.NewString(), Time: a.cfg.Now().UTC().Format(time.RFC3339Nano),
		Severity: severity, Code: code, Message: message, Source: alert.SourceDaemon,
		Subject: subject, Action: action,
	}
	if _, err := a.outbox.Enqueue(al); err != nil {
		a.cfg.Logger.Error("cannot queue a daemon alert", "code", code, "err", err)
		return err
	}
	a.cfg.Metrics.AlertRaised(al)
	return nil
}

// StopStreams ends the open alert streams, so that a graceful shutdown
// does not wait for clients that never hang up.
func (a *Service) StopStreams() {
	a.endStreams.Do(func() { close(a.streamsDone) })
}

// Stream sends alerts as server-sent events (event "alert",
// id = alert ID, data = the alert as JSON): first up to ?recent=N recent
// ones, then each new one as it is queued, with a comment line every 15s
// to keep the connection alive.
// The caller is authenticated and authorised already; a bad ?recent is
// refused through fail.
func (a *Service) Stream(w http.ResponseWriter, r *http.Request, fail func(code int, format string, args ...any)) {
	n := 0
	if v := r.URL.Query().Get("recent"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 || n > 100 {
			fail(http.StatusBadRequest, "recent %q must be a number from 0 to 100", v)
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
