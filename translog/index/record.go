package index

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/entry"
)

// Kinds of indexed entries.
const (
	KindDecision = "decision"
	KindEvent    = "event"
	// KindUnreadable marks a leaf whose envelope is missing, does not match
	// the leaf, or does not hold a record the index understands. The row
	// keeps the log index and UUID so the entry can still be found.
	KindUnreadable = "unreadable"
)

// DecisionPredicate is the predicate type of the records the index reads.
const DecisionPredicate = "https://gatelog.dev/decision/v1"

// EventEntrypoint marks a decision record that is an external audit event
// (POST /v1/events) rather than a policy decision: it is indexed as
// KindEvent with outcome "event".
const EventEntrypoint = "gatelog/event"

// Row is one indexed log entry. LogIndex and UUID locate the entry so a
// client can fetch it and check its inclusion proof; nothing else in a Row
// is trusted until that check passes.
type Row struct {
	LogIndex       int64            `json:"log_index"`
	UUID           string           `json:"uuid"`
	Kind           string           `json:"kind"`
	ID             string           `json:"id"`
	Time           time.Time        `json:"time"`
	IntegratedTime int64            `json:"integrated_time"`
	Subject        string           `json:"subject"`
	SubjectKind    string           `json:"subject_kind,omitempty"`
	Caller         string           `json:"caller"`
	Action         string           `json:"action"`
	Resource       Resource         `json:"resource"`
	Adapter        string           `json:"adapter,omitempty"`
	Allow          bool             `json:"allow"`
	Outcome        string           `json:"outcome"`
	Reasons        []string         `json:"reasons"`
	Alerts         []decision.Alert `json:"alerts,omitempty"`
	PolicySHA256   string           `json:"policy_sha256,omitempty"`
	PolicyRevision string           `json:"policy_revision,omitempty"`
}

// Resource is the indexed part of a request's resource.
type Resource struct {
	System      string `json:"system,omitempty"`
	Kind        string `json:"kind,omitempty"`
	Name        string `json:"name,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Environment string `json:"environment,omitempty"`
	Repository  string `json:"repository,omitempty"`
	Ref         string `json:"ref,omitempty"`
}

// Outcomes.
const (
	OutcomeAllow = "allow"
	OutcomeDeny  = "deny"
)

var errUnreadable = errors.New("unreadable entry")

// DecodeEntry turns a leaf body and its envelope into a Row. It checks that
// the envelope is the one the leaf commits to (its SHA-256 is the body's
// envelopeHash) but not the signatures: the index is a search aid, and
// clients verify what they find against the log.
func DecodeEntry(logIndex int64, uuid string, integratedTime int64, body, envelope []byte) (Row, error) {
	r := Row{LogIndex: logIndex, UUID: uuid, IntegratedTime: integratedTime, Kind: KindUnreadable, Reasons: []string{}}
	b, err := entry.ParseBody(body)
	if err != nil {
		return r, fmt.Errorf("%w: leaf body: %v", errUnreadable, err)
	}
	sum := sha256.Sum256(envelope)
	if b.Spec.EnvelopeHash.Algorithm != "sha256" || b.Spec.EnvelopeHash.Value != hex.EncodeToString(sum[:]) {
		return r, fmt.Errorf("%w: the stored envelope is not the one the leaf commits to", errUnreadable)
	}
	var env struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(envelope, &env); err != nil {
		return r, fmt.Errorf("%w: envelope: %v", errUnreadable, err)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return r, fmt.Errorf("%w: envelope payload is not base64", errUnreadable)
	}
	var st struct {
		PredicateType string          `json:"predicateType"`
		Predicate     json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		return r, fmt.Errorf("%w: statement: %v", errUnreadable, err)
	}
	if st.PredicateType != DecisionPredicate {
		return r, fmt.Errorf("%w: predicate type %q", errUnreadable, st.PredicateType)
	}
	var rec decision.Record
	if err := json.Unmarshal(st.Predicate, &rec); err != nil {
		return r, fmt.Errorf("%w: decision record: %v", errUnreadable, err)
	}
	return fromDecision(r, rec)
}

func fromDecision(r Row, rec decision.Record) (Row, error) {
	t, err := time.Parse(time.RFC3339Nano, rec.Time)
	if err != nil {
		return r, fmt.Errorf("%w: record time %q is not RFC 3339", errUnreadable, rec.Time)
	}
	req := rec.Request
	r.Kind, r.ID, r.Time = KindDecision, rec.DecisionID, t.UTC()
	r.Subject, r.SubjectKind, r.Caller, r.Action = req.Subject.ID, req.Subject.Kind, rec.Caller.ID, req.Action
	r.Resource = resourceOf(req.Resource)
	r.Adapter = req.Source.Adapter
	r.Allow, r.Outcome = rec.Decision.Allow, outcome(rec.Decision.Allow)
	if rec.Decision.Reasons != nil {
		r.Reasons = rec.Decision.Reasons
	}
	r.Alerts = rec.Decision.Alerts
	r.PolicySHA256, r.PolicyRevision = rec.Policy.SHA256, rec.Policy.Revision
	if rec.Policy.Entrypoint == EventEntrypoint {
		// An event is a report, not a permission: it never counts as an
		// allow or a deny.
		r.Kind, r.Outcome = KindEvent, "event"
	}
	return r, nil
}

func resourceOf(res decision.Resource) Resource {
	return Resource{
		System: res.System, Kind: res.Kind, Name: res.Name, Namespace: res.Namespace,
		Environment: res.Environment, Repository: res.Repository, Ref: res.Ref,
	}
}

func outcome(allow bool) string {
	if allow {
		return OutcomeAllow
	}
	return OutcomeDeny
}
