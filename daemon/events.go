package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gatelog/gatelog/daemon/alerts"
	"github.com/gatelog/gatelog/daemon/metrics"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/record/decision"
)

// EventRequest is the body of POST /v1/events: something a CI system or an
// operator reports that was not a decision (a login, a configuration
// change). It is signed and logged like a decision, so the log stays the
// one record; only who reported it is verified, the rest is their word.
type EventRequest struct {
	// Type names the event, e.g. "login" or "config.change"; the logged
	// action is "event.<type>".
	Type string `json:"type"`
	// Subject is who the event is about; naming someone other than the
	// caller needs the vouch permission, as for decisions.
	Subject  decision.Subject  `json:"subject"`
	Resource decision.Resource `json:"resource"`
	Source   decision.Source   `json:"source"`
	Message  string            `json:"message"`
	// Details and Time are recorded as unverified context.
	Details map[string]any `json:"details,omitempty"`
	Time    string         `json:"time,omitempty"`
	// Alerts are queued for delivery like a policy's.
	Alerts []decision.Alert `json:"alerts,omitempty"`
}

// ParseEventRequest decodes an event strictly (unknown fields are errors)
// and checks it; errors wrap decision.ErrBadRequest and name the field.
func ParseEventRequest(data []byte) (EventRequest, error) {
	var er EventRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&er); err != nil {
		return EventRequest{}, fmt.Errorf("%w: malformed JSON: %w", decision.ErrBadRequest, err)
	}
	if dec.More() {
		return EventRequest{}, fmt.Errorf("%w: unexpected data after the JSON object", decision.ErrBadRequest)
	}
	return er, er.validate()
}

func (er EventRequest) validate() error {
	if er.Type == "" || len(er.Type) > 64 || strings.ContainsAny(er.Type, " \t\n") {
		return fmt.Errorf("%w: field \"type\" is required: up to 64 characters without spaces", decision.ErrBadRequest)
	}
	if len(er.Message) > 4096 {
		return fmt.Errorf("%w: field \"message\" is longer than 4096 characters", decision.ErrBadRequest)
	}
	if er.Time != "" {
		if _, err := time.Parse(time.RFC3339, er.Time); err != nil {
			return fmt.Errorf("%w: field \"time\" is not an RFC 3339 time: %q", decision.ErrBadRequest, er.Time)
		}
	}
	if len(er.Alerts) > maxEventAlerts {
		return fmt.Errorf("%w: field \"alerts\" has %d alerts; an event raises at most %d", decision.ErrBadRequest, len(er.Alerts), maxEventAlerts)
	}
	for i, a := range er.Alerts {
		switch {
		case a.Code == "":
			return fmt.Errorf("%w: field \"alerts[%d].code\" is required", decision.ErrBadRequest, i)
		case len(a.Code) > 64 || !metrics.LabelSafe(a.Code) || strings.ContainsAny(a.Code, " \t"):
			return fmt.Errorf("%w: field \"alerts[%d].code\": up to 64 printable ASCII characters without spaces", decision.ErrBadRequest, i)
		case strings.HasPrefix(strings.ToLower(a.Code), alerts.DaemonPrefix):
			return fmt.Errorf("%w: field \"alerts[%d].code\" %q: codes starting %q are the daemon's own", decision.ErrBadRequest, i, a.Code, alerts.DaemonPrefix)
		case !eventSeverities[a.Severity]:
			return fmt.Errorf("%w: field \"alerts[%d].severity\" %q: want one of info, low, medium, warning, high, critical", decision.ErrBadRequest, i, a.Severity)
		case len(a.Message) > 4096:
			return fmt.Errorf("%w: field \"alerts[%d].message\" is longer than 4096 characters", decision.ErrBadRequest, i)
		}
	}
	return nil
}

// maxEventAlerts bounds the alerts one event raises: each is a durable
// outbox file and a delivery to every sink.
const maxEventAlerts = 8

// eventSeverities are the severities a reported event's alerts may carry.
var eventSeverities = map[string]bool{"info": true, "low": true, "medium": true, "warning": true, "high": true, "critical": true}

func (s *Server) handleEvent(w http.ResponseWriter, r *http.Request) {
	caller, ok := s.authorize(w, r, identity.PermDecide, identity.PermVouch)
	if !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading body: %v", err)
		return
	}
	er, err := ParseEventRequest(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	rc, err := s.LogEvent(r.Context(), er, caller, r.URL.Query().Get("wait") == "checkpoint")
	switch {
	case errors.Is(err, identity.ErrForbidden):
		writeError(w, http.StatusForbidden, "%v", err)
	case errors.Is(err, decision.ErrBadRequest):
		writeError(w, http.StatusBadRequest, "%v", err)
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "%v", err)
	default:
		writeJSON(w, http.StatusOK, rc)
	}
}

// LogEvent records an event a caller reported (decision.KindEvent): who
// reported it is verified, the rest is their word; it carries no allow.
// Its alerts are queued like a policy's, and the receipt verifies like any
// other.
func (s *Server) LogEvent(ctx context.Context, er EventRequest, caller identity.Caller, wait bool) (decision.Receipt, error) {
	now := s.recorder.Now()
	req := decision.Request{Subject: er.Subject, Action: "event." + er.Type, Resource: er.Resource, Source: er.Source}
	if err := identity.Bind(&req, caller, now); err != nil {
		return decision.Receipt{}, err
	}
	unverified := map[string]any{}
	for k, v := range er.Details {
		unverified[k] = v
	}
	if er.Time != "" {
		unverified["reported_time"] = er.Time
	}
	if len(unverified) > 0 {
		req.Context.Unverified = unverified
	}
	req.Context.Time = now.UTC().Format(time.RFC3339)
	if err := req.Validate(); err != nil {
		return decision.Receipt{}, err
	}
	return s.recorder.Record(ctx, decision.Record{
		Kind: decision.KindEvent, Request: req, Caller: caller.Caller,
		Event: &decision.Event{Type: er.Type, Message: er.Message, Alerts: er.Alerts},
	}, wait)
}
