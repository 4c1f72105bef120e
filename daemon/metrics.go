package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatelog/gatelog/engine/alert"
	"github.com/gatelog/gatelog/plugins/host"
	"github.com/gatelog/gatelog/record"
	"github.com/gatelog/gatelog/record/decision"
)

// DefaultMaxCheckpointAge is how old the published checkpoint may get
// before /readyz fails. Tessera republishes an idle log's checkpoint every
// ten minutes, so an older one means the log has stopped.
const DefaultMaxCheckpointAge = 15 * time.Minute

// appendFailureWindow is how long a failed append keeps /readyz failing
// when no append has succeeded since.
const appendFailureWindow = 30 * time.Second

// maxLabelValues bounds the distinct action and adapter label values, since
// both come from requests; later values are counted as "other".
const maxLabelValues = 200

// maxLabelLen bounds a request-derived label value: a longer one, or one
// with bytes outside printable ASCII, is counted as "other", so a caller
// cannot grow the registry (and every scrape) by a megabyte per value.
const maxLabelLen = 64

// metrics is the daemon's Prometheus registry (one per Server, no globals).
type metrics struct {
	reg       *prometheus.Registry
	decisions *prometheus.CounterVec
	stages    *prometheus.HistogramVec
	decide    prometheus.Histogram
	records   *prometheus.CounterVec
	alerts    *prometheus.CounterVec
	labels    labelLimiter

	// restartsMu guards restarts: adapter restarts reported through
	// AdapterRestarted, by adapter.
	restartsMu sync.Mutex
	restarts   map[string]int

	lastAppendOK, lastAppendFail atomic.Int64 // unix nanos
}

func (s *Server) openMetrics() {
	m := &metrics{reg: prometheus.NewRegistry(), labels: labelLimiter{seen: map[string]map[string]bool{}}, restarts: map[string]int{}}
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatelog_decisions_total", Help: "Decisions answered, by outcome (allow, deny, error), action and adapter.",
	}, []string{"outcome", "action", "adapter"})
	m.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "gatelog_decide_stage_seconds", Help: "Time spent in each stage of a decision: eval (policy), sign, append (log, until durably sequenced).",
		Buckets: buckets,
	}, []string{"stage"})
	m.decide = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "gatelog_decide_seconds", Help: "Time from evaluation to a durably logged decision.", Buckets: buckets,
	})
	m.records = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatelog_records_total", Help: "Records signed and logged, by kind (decision, event, admin) and outcome (logged, or the stage that failed: sign, append, alert outbox).",
	}, []string{"kind", "outcome"})
	m.alerts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatelog_alerts_total", Help: "Alerts queued for delivery, by source (policy, daemon) and severity.",
	}, []string{"source", "severity"})
	m.reg.MustRegister(m.decisions, m.stages, m.decide, m.records, m.alerts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&stateCollector{s: s})
	s.metrics = m
}

func (s *Server) mountMetrics(mux *http.ServeMux) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
}

// decideTimer times the stages of one decision.
type decideTimer struct {
	m     *metrics
	start time.Time
	last  time.Time
}

func (m *metrics) startDecide() *decideTimer {
	now := time.Now()
	return &decideTimer{m: m, start: now, last: now}
}

// stage records the time since the previous stage ended.
func (t *decideTimer) stage(name string) {
	now := time.Now()
	t.m.stages.WithLabelValues(name).Observe(now.Sub(t.last).Seconds())
	t.last = now
}

// done counts the decision; err non-nil means it failed closed.
func (t *decideTimer) done(req decision.Request, d decision.Decision, err error) {
	outcome := "deny"
	switch {
	case err != nil:
		outcome = "error"
	case d.Allow:
		outcome = "allow"
	}
	if err == nil {
		t.m.decide.Observe(time.Since(t.start).Seconds())
	}
	t.m.decisions.WithLabelValues(outcome, t.m.labels.value("action", req.Action), t.m.labels.value("adapter", req.Source.Adapter)).Inc()
}

// recorded counts a record's outcome and keeps readiness: an append that
// failed, or one that worked, says how the log is; nothing else does (a
// signer or outbox fault, or a caller that hung up, is not the log).
func (m *metrics) recorded(out record.Outcome) {
	if m == nil {
		return
	}
	outcome := "logged"
	if out.Stage != "" {
		outcome = out.Stage
	}
	m.records.WithLabelValues(out.Record.Kind, outcome).Inc()
	if out.Record.Kind == decision.KindDecision {
		if out.Sign > 0 {
			m.stages.WithLabelValues("sign").Observe(out.Sign.Seconds())
		}
		if out.Append > 0 {
			m.stages.WithLabelValues("append").Observe(out.Append.Seconds())
		}
	}
	switch {
	case out.LogFailed():
		m.lastAppendFail.Store(time.Now().UnixNano())
	case out.Stage == "" || out.Stage == record.StageAlerts:
		m.lastAppendOK.Store(time.Now().UnixNano())
	}
}

func (m *metrics) alertRaised(a alert.Alert) {
	if m != nil {
		m.alerts.WithLabelValues(a.Source, m.labels.value("severity", a.Severity)).Inc()
	}
}

// AdapterRestarted is the hook for whoever restarts an adapter that went
// down: it is counted and raised as an alert. (The daemon's own adapter
// host is also read at every scrape, so its restarts are counted even
// where nobody calls this.)
func (s *Server) AdapterRestarted(adapter string, cause error) {
	s.metrics.restartsMu.Lock()
	s.metrics.restarts[s.metrics.labels.value("adapter", adapter)]++
	s.metrics.restartsMu.Unlock()
	msg := fmt.Sprintf("adapter %s went down and was restarted", adapter)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	_ = s.RaiseAlert("medium", AlertAdapterRestart, msg, "", "")
}

// labelLimiter caps the distinct values of request-derived labels.
type labelLimiter struct {
	mu   sync.Mutex
	seen map[string]map[string]bool
}

func (l *labelLimiter) value(label, v string) string {
	if v == "" {
		return "none"
	}
	if !labelSafe(v) {
		return "other"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	vs := l.seen[label]
	if vs == nil {
		vs = map[string]bool{}
		l.seen[label] = vs
	}
	if vs[v] {
		return v
	}
	if len(vs) >= maxLabelValues {
		return "other"
	}
	vs[v] = true
	return v
}

// labelSafe reports whether v may be a label value as it is: at most
// maxLabelLen bytes of printable ASCII.
func labelSafe(v string) bool {
	if len(v) > maxLabelLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// stateCollector reads the daemon's state at scrape time.
type stateCollector struct{ s *Server }

var (
	descLogSize       = prometheus.NewDesc("gatelog_log_size", "Entries in the log's latest published checkpoint.", nil, nil)
	descCheckpointAge = prometheus.NewDesc("gatelog_checkpoint_age_seconds", "Seconds since the published checkpoint was last written.", nil, nil)
	descOutboxDepth   = prometheus.NewDesc("gatelog_outbox_depth", "Alerts waiting for delivery to at least one sink.", nil, nil)
	descIndexed       = prometheus.NewDesc("gatelog_audit_index_entries", "Log entries the audit index covers.", nil, nil)
	descAuth          = prometheus.NewDesc("gatelog_auth_total", "Authentication attempts by credential kind and outcome (ok, or why it failed).", []string{"kind", "outcome"}, nil)
	descRestarts      = prometheus.NewDesc("gatelog_adapter_restarts_total", "Adapter processes restarted after they went down.", []string{"adapter"}, nil)
	descAdapterUp     = prometheus.NewDesc("gatelog_adapter_up", "1 when the adapter is running and answering, else 0.", []string{"adapter"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLogSize, descCheckpointAge, descOutboxDepth, descIndexed, descAuth, descRestarts, descAdapterUp} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, cp, err := s.log.Checkpoint(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(descLogSize, prometheus.GaugeValue, float64(cp.Size))
	}
	if age, err := s.checkpointAge(); err == nil {
		ch <- prometheus.MustNewConstMetric(descCheckpointAge, prometheus.GaugeValue, age.Seconds())
	}
	if a := s.alerts; a != nil {
		ch <- prometheus.MustNewConstMetric(descOutboxDepth, prometheus.GaugeValue, float64(a.outbox.Depth()))
	}
	if a := s.audit; a != nil {
		if n, err := a.ix.Next(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(descIndexed, prometheus.GaugeValue, float64(n))
		}
	}
	for k, n := range s.AuthCounts() {
		kind, outcome, _ := strings.Cut(k, "/")
		ch <- prometheus.MustNewConstMetric(descAuth, prometheus.CounterValue, float64(n), kind, outcome)
	}
	m := s.metrics
	m.restartsMu.Lock()
	restarts := maps.Clone(m.restarts)
	m.restartsMu.Unlock()
	for _, st := range s.AdapterStatus() {
		name := m.labels.value("adapter", st.Name)
		restarts[name] = max(restarts[name], st.Restarts)
		up := 0.0
		if st.State == host.Ready {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descAdapterUp, prometheus.GaugeValue, up, name)
	}
	for name, n := range restarts {
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(n), name)
	}
}

func (s *Server) checkpointAge() (time.Duration, error) {
	rl, ok := s.log.(readerLog)
	if !ok {
		return 0, errors.New("the log's checkpoint time is not readable")
	}
	t, err := rl.Reader().CheckpointTime()
	if err != nil {
		return 0, err
	}
	return time.Since(t), nil
}

// readiness reports why the daemon should not get traffic: its last append
// failed (and none succeeded since), or the log stopped publishing
// checkpoints.
func (s *Server) readiness() error {
	if m := s.metrics; m != nil {
		fail, ok := m.lastAppendFail.Load(), m.lastAppendOK.Load()
		if fail > ok && time.Since(time.Unix(0, fail)) < appendFailureWindow {
			return errors.New("the last append to the log failed")
		}
	}
	maxAge := s.cfg.MaxCheckpointAge
	if maxAge == 0 {
		maxAge = DefaultMaxCheckpointAge
	}
	if age, err := s.checkpointAge(); err == nil && age > maxAge {
		return fmt.Errorf("the published checkpoint is %s old (more than %s)", age.Round(time.Second), maxAge)
	}
	return nil
}

// openOperations starts what runs beside the decide path: metrics, the
// alert outbox and the audit index.
func (s *Server) openOperations(ctx context.Context) error {
	s.openMetrics()
	if err := s.openAlerts(ctx); err != nil {
		return err
	}
	return s.openAudit(ctx)
}

// closeOperations stops them; it is safe to call more than once.
func (s *Server) closeOperations() error {
	return errors.Join(s.closeAlerts(), s.closeAudit())
}
