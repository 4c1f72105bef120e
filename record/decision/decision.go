// Package decision holds the types that cross gatelog's package boundaries:
// the Request a policy sees as input, the Decision it returns, the signed
// Record that goes into the log and the Receipt the caller gets back.
//
// It has no dependencies beyond the standard library, so adapters, the
// engine, the log and offline verifiers can all share it.
package decision

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Subject is who the decision is about. Every field except the unverified
// context comes from a verified credential (or a caller allowed to vouch).
type Subject struct {
	ID     string   `json:"id"`
	Kind   string   `json:"kind,omitempty"` // user | service | api_key
	Issuer string   `json:"issuer,omitempty"`
	Groups []string `json:"groups,omitempty"`
	// MFA is true when the credential proves a second factor (amr/acr).
	MFA bool `json:"mfa"`
	// AuthTime is when the subject last authenticated (RFC 3339).
	AuthTime string `json:"auth_time,omitempty"`
	// TokenAgeS is the age of the credential in seconds at decision time.
	TokenAgeS int64 `json:"token_age_s"`
	// CredentialExpiresAt is when the credential stops being valid (RFC 3339).
	CredentialExpiresAt string `json:"credential_expires_at,omitempty"`
	// Verified is set by the daemon only: true when the subject comes from a
	// verified credential or from a caller with the vouch permission.
	Verified bool `json:"verified"`
	// AssertedBy names the caller that vouched for this subject, if any.
	AssertedBy string `json:"asserted_by,omitempty"`
	// Claims carries further verified claims (e.g. break_glass).
	Claims map[string]any `json:"claims,omitempty"`
}

// Resource is what the action is performed on.
type Resource struct {
	System      string         `json:"system,omitempty"`
	Kind        string         `json:"kind,omitempty"`
	Name        string         `json:"name,omitempty"`
	Namespace   string         `json:"namespace,omitempty"`
	Environment string         `json:"environment,omitempty"`
	Repository  string         `json:"repository,omitempty"`
	Ref         string         `json:"ref,omitempty"`
	Attributes  map[string]any `json:"attributes,omitempty"`
}

// Change describes the code change an action ships, for separation of duties.
type Change struct {
	ID        string   `json:"id,omitempty"`
	Author    string   `json:"author,omitempty"`
	Approvers []string `json:"approvers,omitempty"`
}

// History is what the daemon knows about the subject's earlier decisions.
type History struct {
	// PrivilegedActionsUsed lists privileged actions the subject was allowed before.
	PrivilegedActionsUsed []string `json:"privileged_actions_used,omitempty"`
}

// Context is the circumstance of the request.
type Context struct {
	// Time is the decision time (RFC 3339); the daemon sets it when empty.
	Time     string  `json:"time,omitempty"`
	SourceIP string  `json:"source_ip,omitempty"`
	Change   *Change `json:"change,omitempty"`
	// BreakGlassReason is the reason given for an emergency override.
	BreakGlassReason string   `json:"break_glass_reason,omitempty"`
	History          *History `json:"history,omitempty"`
	// DryRun marks a CI system's question that by its own contract has no
	// side effects (the Kubernetes API server's dryRun, sent to webhooks
	// declared sideEffects: NoneOnDryRun). The daemon evaluates it but
	// neither signs nor logs it, so its answer carries no decision id and
	// can never serve as a receipt.
	DryRun bool `json:"dry_run,omitempty"`
	// Unverified holds claims from the payload that nobody vouched for,
	// e.g. a commit author. Policies must not trust them for identity.
	Unverified map[string]any `json:"unverified,omitempty"`
}

// Source says which integration the request came through.
type Source struct {
	Adapter        string `json:"adapter,omitempty"`
	AdapterVersion string `json:"adapter_version,omitempty"`
	RequestID      string `json:"request_id,omitempty"`
}

// Request is the gatelog JSON request; policies see it as input.
type Request struct {
	Subject  Subject  `json:"subject"`
	Action   string   `json:"action"`
	Resource Resource `json:"resource"`
	Context  Context  `json:"context"`
	Source   Source   `json:"source"`
}

// ErrBadRequest marks errors caused by the caller's input.
var ErrBadRequest = errors.New("bad request")

// MaxRequestBytes bounds the size of an encoded Request.
const MaxRequestBytes = 1 << 20

// ParseRequest decodes a JSON request strictly: unknown fields, trailing
// data, a missing action and anything the decoder would have to change to
// accept (duplicate keys, invalid UTF-8, NUL, integers beyond ±2^53) are
// errors that wrap ErrBadRequest and name the offending field.
func ParseRequest(data []byte) (Request, error) {
	var r Request
	if len(data) > MaxRequestBytes {
		return r, fmt.Errorf("%w: body is larger than %d bytes", ErrBadRequest, MaxRequestBytes)
	}
	if err := checkExactJSON(data); err != nil {
		return r, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Request{}, fmt.Errorf("%w: %s", ErrBadRequest, describeJSONError(err))
	}
	if dec.More() {
		return Request{}, fmt.Errorf("%w: unexpected data after the JSON object", ErrBadRequest)
	}
	if err := r.Validate(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// Validate checks the fields every request needs.
func (r Request) Validate() error {
	if strings.TrimSpace(r.Action) == "" {
		return fmt.Errorf("%w: field \"action\" is required", ErrBadRequest)
	}
	if len(r.Action) > 128 {
		return fmt.Errorf("%w: field \"action\" is longer than 128 characters", ErrBadRequest)
	}
	if r.Context.Time != "" {
		if _, err := time.Parse(time.RFC3339, r.Context.Time); err != nil {
			return fmt.Errorf("%w: field \"context.time\" is not an RFC 3339 time: %q", ErrBadRequest, r.Context.Time)
		}
	}
	if r.Subject.AuthTime != "" {
		if _, err := time.Parse(time.RFC3339, r.Subject.AuthTime); err != nil {
			return fmt.Errorf("%w: field \"subject.auth_time\" is not an RFC 3339 time: %q", ErrBadRequest, r.Subject.AuthTime)
		}
	}
	return nil
}

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	case errors.Is(err, io.EOF):
		return "empty body, expected a JSON object"
	default:
		return err.Error()
	}
}

// Alert is raised by a policy (or the daemon) and logged with the decision.
type Alert struct {
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Message  string `json:"message"`
}

// Decision is the result of data.gatelog.decision.
type Decision struct {
	Allow       bool           `json:"allow"`
	Reasons     []string       `json:"reasons"`
	Alerts      []Alert        `json:"alerts,omitempty"`
	Obligations map[string]any `json:"obligations,omitempty"`
}

// Policy identifies the policy that made a decision.
type Policy struct {
	Revision   string `json:"revision,omitempty"`
	SHA256     string `json:"sha256"`
	Entrypoint string `json:"entrypoint"`
	OPAVersion string `json:"opa_version"`
}

// Daemon identifies the daemon that signed a record.
type Daemon struct {
	Version string `json:"version"`
	KeyID   string `json:"key_id"`
}

// Caller is who authenticated to the daemon to ask for the decision.
type Caller struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
}

// Kinds of logged record. Each is its own in-toto predicate type
// (receipt.PredicateTypeOf), so what a record is, is signed; only a policy
// decision carries an outcome.
const (
	// KindDecision is a policy decision: the policy allowed or denied a
	// request. It is the only kind with an allow.
	KindDecision = "decision"
	// KindEvent is an event a caller reported (POST /v1/events): who
	// reported it is verified, the rest is their word. No policy decided
	// anything, so it carries no allow.
	KindEvent = "event"
	// KindAdmin is the daemon's own record of an administrative change: an
	// API key created or revoked, the decision-signing key rotated, a
	// policy loaded (at start-up and at every reload).
	KindAdmin = "admin"
)

// Record is the predicate of the signed in-toto statement: everything an
// auditor needs to know about one logged record. Kind says which of
// Decision, Event and Admin it carries; it is not in the JSON, which the
// statement's predicate type names instead.
type Record struct {
	Kind       string   `json:"-"`
	DecisionID string   `json:"decision_id"`
	Request    Request  `json:"request"`
	Caller     Caller   `json:"caller"`
	Decision   Decision `json:"decision,omitzero"`
	Event      *Event   `json:"event,omitempty"`
	Admin      *Admin   `json:"admin,omitempty"`
	Policy     Policy   `json:"policy,omitzero"`
	Time       string   `json:"time"`
	Daemon     Daemon   `json:"daemon"`
}

// Event is what a caller reported: the event's type, its message and the
// alerts it raises.
type Event struct {
	Type    string  `json:"type"`
	Message string  `json:"message,omitempty"`
	Alerts  []Alert `json:"alerts,omitempty"`
}

// Admin says on what authority an administrative change was made.
type Admin struct {
	Reason string `json:"reason"`
}

// Allowed reports whether the record is a policy decision that allowed
// its request. An event or an administrative record never is.
func (r Record) Allowed() bool { return r.Kind == KindDecision && r.Decision.Allow }

// Alerts are the alerts the record raises: a policy decision's, or those
// a caller's event reports.
func (r Record) Alerts() []Alert {
	switch {
	case r.Kind == KindEvent && r.Event != nil:
		return r.Event.Alerts
	case r.Kind == KindDecision:
		return r.Decision.Alerts
	}
	return nil
}

// Reasons says why, in words: a decision's reasons, an event's message,
// an administrative record's authority.
func (r Record) Reasons() []string {
	switch {
	case r.Kind == KindEvent && r.Event != nil:
		if r.Event.Message == "" {
			return []string{}
		}
		return []string{r.Event.Message}
	case r.Kind == KindAdmin && r.Admin != nil:
		return []string{r.Admin.Reason}
	case r.Decision.Reasons == nil:
		return []string{}
	}
	return r.Decision.Reasons
}

// InclusionProof proves a log entry is in a tree whose root a signed
// checkpoint commits to. Hashes are hex, as in Rekor.
type InclusionProof struct {
	LogIndex   int64    `json:"log_index"`
	TreeSize   int64    `json:"tree_size"`
	RootHash   string   `json:"root_hash"`
	Hashes     []string `json:"hashes"`
	Checkpoint string   `json:"checkpoint"`
}

// Receipt is what a caller gets back for a decision: the outcome, where it
// is in the log, and the signed material needed to verify it offline.
type Receipt struct {
	DecisionID string `json:"decision_id"`
	// Kind is the record's kind (KindDecision, KindEvent, KindAdmin); only
	// a decision's Allow can be true.
	Kind     string   `json:"kind"`
	Allow    bool     `json:"allow"`
	Reasons  []string `json:"reasons"`
	Alerts   []Alert  `json:"alerts,omitempty"`
	LogIndex int64    `json:"log_index"`
	// UUID is the Rekor entry UUID: 16 hex digits of tree ID, then the leaf hash.
	UUID           string `json:"uuid"`
	IntegratedTime int64  `json:"integrated_time"`
	// LogID is the hex SHA-256 of the log key's PKIX DER.
	LogID string `json:"log_id"`
	// SignedEntryTimestamp is the log's signature over the entry (Rekor SET).
	SignedEntryTimestamp []byte `json:"signed_entry_timestamp"`
	// Envelope is the exact DSSE envelope bytes that were logged.
	Envelope       []byte          `json:"envelope"`
	InclusionProof *InclusionProof `json:"inclusion_proof,omitempty"`
}
