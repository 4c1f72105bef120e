// Package alert delivers gatelog's alerts to sinks (stdout, webhooks,
// Slack-style incoming webhooks, syslog) through a durable outbox on disk:
// an alert is fsync'd before Enqueue returns and retried until every sink
// took it, across restarts and outages (at least once; dedup by alert ID).
package alert

import (
	"context"
	"errors"
	"fmt"
	"regexp"
)

// Alert is one alert on its way to the sinks. It carries what a responder
// needs and where to find the signed record; never a credential.
type Alert struct {
	// ID is unique per alert and stable across redeliveries: receivers
	// deduplicate on it. Policy alerts use "<decision id>-<n>".
	ID       string `json:"id"`
	Time     string `json:"time"`
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	// Source is "policy" for alerts raised by the policy (logged inside
	// the signed decision record) or "daemon" for the daemon's own.
	Source      string `json:"source"`
	DecisionID  string `json:"decision_id,omitempty"`
	LogIndex    *int64 `json:"log_index,omitempty"`
	UUID        string `json:"uuid,omitempty"`
	Subject     string `json:"subject,omitempty"`
	Action      string `json:"action,omitempty"`
	Environment string `json:"environment,omitempty"`
	Repository  string `json:"repository,omitempty"`
}

// Sources of alerts.
const (
	SourcePolicy = "policy"
	SourceDaemon = "daemon"
)

// Sink delivers alerts somewhere. Deliver must be safe to call again with
// the same alert after an error (the outbox retries).
type Sink interface {
	Name() string
	Deliver(ctx context.Context, a Alert) error
}

// ErrInvalid marks an alert or a configuration that cannot be used.
var ErrInvalid = errors.New("invalid alert")

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks the fields every alert needs; the ID names a file, so
// it is restricted to letters, digits, '.', '_' and '-'.
func (a Alert) Validate() error {
	if !idRE.MatchString(a.ID) {
		return fmt.Errorf("%w: id %q must be 1-128 letters, digits, '.', '_' or '-'", ErrInvalid, a.ID)
	}
	if a.Code == "" {
		return fmt.Errorf("%w: field \"code\" is required", ErrInvalid)
	}
	return nil
}
