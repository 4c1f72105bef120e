package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatelog/gatelog/daemon/metrics"
	"github.com/gatelog/gatelog/plugins/host"
)

// DefaultMaxCheckpointAge is how old the published checkpoint may get
// before /readyz fails. Tessera republishes an idle log's checkpoint every
// ten minutes, so an older one means the log has stopped.
const DefaultMaxCheckpointAge = 15 * time.Minute

func (s *Server) openMetrics() { s.metrics = metrics.New(daemonState{s}) }

func (s *Server) mountMetrics(mux *http.ServeMux) {
	mux.Handle("GET /metrics", s.metrics.Handler())
}

// AdapterRestarted is the hook for whoever restarts an adapter that went
// down: it is counted and raised as an alert. (The daemon's own adapter
// host is also read at every scrape, so its restarts are counted even
// where nobody calls this.)
func (s *Server) AdapterRestarted(adapter string, cause error) {
	s.metrics.AdapterRestarted(adapter)
	msg := fmt.Sprintf("adapter %s went down and was restarted", adapter)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	_ = s.RaiseAlert("medium", AlertAdapterRestart, msg, "", "")
}

// daemonState is the daemon as metrics.State reads it at scrape time.
type daemonState struct{ s *Server }

func (d daemonState) LogSize(ctx context.Context) (uint64, error) {
	_, cp, err := d.s.log.Checkpoint(ctx)
	if err != nil {
		return 0, err
	}
	return cp.Size, nil
}

func (d daemonState) CheckpointAge() (time.Duration, error) { return d.s.checkpointAge() }

func (d daemonState) OutboxDepth() (int, bool) {
	if a := d.s.alerts; a != nil {
		return a.Depth(), true
	}
	return 0, false
}

func (d daemonState) Indexed(ctx context.Context) (int64, bool) {
	if a := d.s.audit; a != nil {
		if n, err := a.Indexed(ctx); err == nil {
			return n, true
		}
	}
	return 0, false
}

func (d daemonState) AuthCounts() map[string]uint64 { return d.s.AuthCounts() }

func (d daemonState) AdapterStatus() []host.Status { return d.s.AdapterStatus() }

func (s *Server) checkpointAge() (time.Duration, error) {
	t, err := s.log.Reader().CheckpointTime()
	if err != nil {
		return 0, err
	}
	return time.Since(t), nil
}

// readiness reports why the daemon should not get traffic: its last append
// failed (and none succeeded since), or the log stopped publishing
// checkpoints.
func (s *Server) readiness() error {
	if s.metrics != nil && s.metrics.LogFailing() {
		return errors.New("the last append to the log failed")
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
