// Package metrics is the daemon's Prometheus registry, one per daemon and
// no globals: decisions and records by outcome, the time each stage of a
// decision takes, alerts raised, and the daemon's state read at scrape
// time. It also keeps the one fact readiness needs from the record path:
// whether the log's last append failed.
package metrics

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/gatelog/gatelog/engine/alert"
	"github.com/gatelog/gatelog/plugins/host"
	"github.com/gatelog/gatelog/record"
	"github.com/gatelog/gatelog/record/decision"
)

// appendFailureWindow is how long a failed append keeps LogFailing true
// when no append has succeeded since.
const appendFailureWindow = 30 * time.Second

// maxLabelValues bounds the distinct action and adapter label values, since
// both come from requests; later values are counted as "other".
const maxLabelValues = 200

// maxLabelLen bounds a request-derived label value: a longer one, or one
// with bytes outside printable ASCII, is counted as "other", so a caller
// cannot grow the registry (and every scrape) by a megabyte per value.
const maxLabelLen = 64

// State is what the daemon reports at scrape time. A method whose value is
// unknown returns ok false (or an error) and its metric is left out.
type State interface {
	LogSize(ctx context.Context) (uint64, error)
	CheckpointAge() (time.Duration, error)
	OutboxDepth() (int, bool)
	Indexed(ctx context.Context) (int64, bool)
	// AuthCounts are authentication outcomes by "kind/outcome".
	AuthCounts() map[string]uint64
	AdapterStatus() []host.Status
}

// Metrics is the registry and the daemon's collectors.
type Metrics struct {
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

// New builds the registry; state is read at every scrape.
func New(state State) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), labels: labelLimiter{seen: map[string]map[string]bool{}}, restarts: map[string]int{}}
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
		Name: "gatelog_records_total", Help: "Records signed and logged, by kind (decision, event, admin) and outcome (logged, or the stage that failed: sign, append).",
	}, []string{"kind", "outcome"})
	m.alerts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatelog_alerts_total", Help: "Alerts queued for delivery, by source (policy, daemon) and severity.",
	}, []string{"source", "severity"})
	m.reg.MustRegister(m.decisions, m.stages, m.decide, m.records, m.alerts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&stateCollector{state: state, m: m})
	return m
}

// Handler serves the registry (GET /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Register adds a collector (a webhook's review queue, say).
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// RecordCount is gatelog_records_total for a kind and outcome.
func (m *Metrics) RecordCount(kind, outcome string) float64 {
	var out dto.Metric
	_ = m.records.WithLabelValues(kind, outcome).Write(&out)
	return out.GetCounter().GetValue()
}

// DecideTimer times the stages of one decision.
type DecideTimer struct {
	m     *Metrics
	start time.Time
	last  time.Time
}

// StartDecide starts timing a decision.
func (m *Metrics) StartDecide() *DecideTimer {
	now := time.Now()
	return &DecideTimer{m: m, start: now, last: now}
}

// Stage records the time since the previous stage ended.
func (t *DecideTimer) Stage(name string) {
	now := time.Now()
	t.m.stages.WithLabelValues(name).Observe(now.Sub(t.last).Seconds())
	t.last = now
}

// Done counts the decision; err non-nil means it failed closed.
func (t *DecideTimer) Done(req decision.Request, d decision.Decision, err error) {
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

// Recorded counts a record's outcome (record.Config.Observe) and keeps
// the log's health: an append that failed, or one that worked, says how
// the log is; nothing else does (a signer or outbox fault, or a caller
// that hung up, is not the log).
func (m *Metrics) Recorded(out record.Outcome) {
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
	case out.Stage == "":
		m.lastAppendOK.Store(time.Now().UnixNano())
	}
}

// AlertRaised counts an alert queued for delivery.
func (m *Metrics) AlertRaised(a alert.Alert) {
	if m != nil {
		m.alerts.WithLabelValues(a.Source, m.labels.value("severity", a.Severity)).Inc()
	}
}

// AdapterRestarted counts a restart of adapter.
func (m *Metrics) AdapterRestarted(adapter string) {
	m.restartsMu.Lock()
	m.restarts[m.labels.value("adapter", adapter)]++
	m.restartsMu.Unlock()
}

// LogFailing reports whether the log's last append failed, recently, and
// none has succeeded since.
func (m *Metrics) LogFailing() bool {
	fail, ok := m.lastAppendFail.Load(), m.lastAppendOK.Load()
	return fail > ok && time.Since(time.Unix(0, fail)) < appendFailureWindow
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
	if !LabelSafe(v) {
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

// LabelSafe reports whether v may be a label value as it is: at most
// maxLabelLen bytes of printable ASCII.
func LabelSafe(v string) bool {
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
type stateCollector struct {
	state State
	m     *Metrics
}

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
	st, m := c.state, c.m
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if size, err := st.LogSize(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(descLogSize, prometheus.GaugeValue, float64(size))
	}
	if age, err := st.CheckpointAge(); err == nil {
		ch <- prometheus.MustNewConstMetric(descCheckpointAge, prometheus.GaugeValue, age.Seconds())
	}
	if n, ok := st.OutboxDepth(); ok {
		ch <- prometheus.MustNewConstMetric(descOutboxDepth, prometheus.GaugeValue, float64(n))
	}
	if n, ok := st.Indexed(ctx); ok {
		ch <- prometheus.MustNewConstMetric(descIndexed, prometheus.GaugeValue, float64(n))
	}
	for k, n := range st.AuthCounts() {
		kind, outcome, _ := strings.Cut(k, "/")
		ch <- prometheus.MustNewConstMetric(descAuth, prometheus.CounterValue, float64(n), kind, outcome)
	}
	m.restartsMu.Lock()
	restarts := maps.Clone(m.restarts)
	m.restartsMu.Unlock()
	for _, s := range st.AdapterStatus() {
		name := m.labels.value("adapter", s.Name)
		restarts[name] = max(restarts[name], s.Restarts)
		up := 0.0
		if s.State == host.Ready {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descAdapterUp, prometheus.GaugeValue, up, name)
	}
	for name, n := range restarts {
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(n), name)
	}
}
