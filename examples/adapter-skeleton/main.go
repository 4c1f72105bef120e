// Command adapter-skeleton is a complete third-party gatelog adapter: copy
// it, change the payload and answer types, build it, and list the executable
// with its sha256 in the daemon config. It handles a made-up CI system that
// posts {"actor", "action", "target", "environment"} and reads back
// {"allowed", "reasons", "decision_id"}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/record/decision"
)

// event is the CI system's native payload.
type event struct {
	Actor       string `json:"actor"`
	Action      string `json:"action"`
	Target      string `json:"target"`
	Environment string `json:"environment"`
}

// verdict is the CI system's native answer.
type verdict struct {
	Allowed    bool     `json:"allowed"`
	Reasons    []string `json:"reasons"`
	DecisionID string   `json:"decision_id,omitempty"`
}

type skeleton struct{}

func (skeleton) Info(context.Context) (adapter.Info, error) {
	return adapter.Info{
		Name:    "skeleton",
		Version: "0.1.0",
		Kinds:   []string{"skeleton event JSON"},
		// What the daemon answers while this adapter is down.
		Unavailable: &adapter.Response{
			Status:  http.StatusServiceUnavailable,
			Headers: http.Header{"Content-Type": {"application/json"}},
			Body:    []byte(`{"allowed":false,"reasons":["gatelog skeleton adapter is unavailable"]}`),
		},
	}, nil
}

func (skeleton) Configure(_ context.Context, settings map[string]string) error {
	if len(settings) > 0 {
		return fmt.Errorf("%w: the skeleton adapter takes no settings", adapter.ErrBadSettings)
	}
	return nil
}

// Translate maps the payload to a gatelog Request. It makes no network calls
// and decides nothing; the actor is a claim the daemon checks or replaces.
func (skeleton) Translate(_ context.Context, in adapter.Native) (decision.Request, error) {
	var ev event
	if err := json.Unmarshal(in.Body, &ev); err != nil {
		return decision.Request{}, adapter.BadPayload("not a skeleton event: %v", err)
	}
	if ev.Actor == "" || ev.Action == "" {
		return decision.Request{}, adapter.BadPayload(`fields "actor" and "action" are required`)
	}
	return decision.Request{
		Subject:  decision.Subject{ID: ev.Actor},
		Action:   ev.Action,
		Resource: decision.Resource{System: "skeleton", Name: ev.Target, Environment: ev.Environment},
		Source:   decision.Source{Adapter: "skeleton", AdapterVersion: "0.1.0"},
	}, nil
}

// Render maps the outcome to the native answer. Every failure is a denial.
func (skeleton) Render(_ context.Context, _ adapter.Native, out adapter.Outcome) (adapter.Response, error) {
	v := verdict{Allowed: out.Allowed(), Reasons: out.Reasons()}
	status := http.StatusOK
	switch {
	case out.Failure != nil:
		status = out.Failure.Kind.HTTPStatus()
	case out.Receipt != nil:
		v.DecisionID = out.Receipt.DecisionID
		if !v.Allowed {
			status = http.StatusForbidden
		}
	}
	body, err := json.Marshal(v)
	if err != nil {
		return adapter.Response{}, err
	}
	return adapter.Response{
		Status:  status,
		Headers: http.Header{"Content-Type": {"application/json"}},
		Body:    body,
	}, nil
}

func main() {
	// Serve speaks go-plugin's handshake on stdout and gRPC until the
	// daemon goes away; log to stderr, which the daemon records.
	adapter.Serve(skeleton{})
}
