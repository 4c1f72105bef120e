package index

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog/entry"
)

// Kinds of indexed entries: the record kinds (decision.KindDecision, …),
// which the signed predicate type names, and unreadable.
const (
	KindDecision = decision.KindDecision
	KindEvent    = decision.KindEvent
	KindAdmin    = decision.KindAdmin
	// KindUnreadable marks a leaf whose envelope is missing, does not match
	// the leaf, or does not hold a record the index understands. The row
	// keeps the log index and UUID so the entry can still be found.
	KindUnreadable = "unreadable"
)

// legacyEventEntrypoint marks the events of logs written before events
// had their own predicate type: decision records with this entrypoint,
// indexed as KindEvent.
const legacyEventEntrypoint = "gatelog/event"

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
		return r, fmt.Errorf("%w: leaf body: %w", errUnreadable, err)
	}
	sum := sha256.Sum256(envelope)
	if b.Spec.EnvelopeHash.Algorithm != "sha256" || b.Spec.EnvelopeHash.Value != hex.EncodeToString(sum[:]) {
		return r, fmt.Errorf("%w: the stored envelope is not the one the leaf commits to", errUnreadable)
	}
	st, err := receipt.ReadStatement(envelope)
	if err != nil {
		return r, fmt.Errorf("%w: %w", errUnreadable, err)
	}
	return fromRecord(r, st.Predicate)
}

func fromRecord(r Row, rec decision.Record) (Row, error) {
	t, err := time.Parse(time.RFC3339Nano, rec.Time)
	if err != nil {
		return r, fmt.Errorf("%w: record time %q is not RFC 3339", errUnreadable, rec.Time)
	}
	req := rec.Request
	r.Kind, r.ID, r.Time = rec.Kind, rec.DecisionID, t.UTC()
	r.Subject, r.SubjectKind, r.Caller, r.Action = req.Subject.ID, req.Subject.Kind, rec.Caller.ID, req.Action
	r.Resource = resourceOf(req.Resource)
	r.Adapter = req.Source.Adapter
	r.Allow, r.Reasons, r.Alerts = Allowed(rec), rec.Reasons(), rec.Alerts()
	if len(r.Alerts) == 0 {
		r.Alerts = nil // no alerts, however the record spelt it
	}
	r.PolicySHA256, r.PolicyRevision = rec.Policy.SHA256, rec.Policy.Revision
	if legacyEvent(rec) {
		r.Kind = KindEvent
	}
	r.Outcome = outcomeOf(r.Kind, r.Allow)
	return r, nil
}

// Allowed is the allow the index keeps for a record: a policy decision's;
// never an event's or an administrative record's (nor that of an event a
// log written before events had their own kind holds as a decision).
func Allowed(rec decision.Record) bool { return rec.Allowed() && !legacyEvent(rec) }

func legacyEvent(rec decision.Record) bool {
	return rec.Kind == KindDecision && rec.Policy.Entrypoint == legacyEventEntrypoint
}

func resourceOf(res decision.Resource) Resource {
	return Resource{
		System: res.System, Kind: res.Kind, Name: res.Name, Namespace: res.Namespace,
		Environment: res.Environment, Repository: res.Repository, Ref: res.Ref,
	}
}

// outcomeOf is a row's outcome: allow or deny for a decision; an event is
// a report and an administrative record a change, neither a permission,
// so their outcome is their kind.
func outcomeOf(kind string, allow bool) string {
	switch {
	case kind != KindDecision:
		return kind
	case allow:
		return OutcomeAllow
	}
	return OutcomeDeny
}
