// Package adapter defines what a gatelog CI adapter is: a translator between
// one CI system's native payloads and gatelog's Request and Receipt.
//
// An adapter runs as its own process and speaks gRPC to the daemon through
// hashicorp/go-plugin (see Serve and Plugin). It never makes network calls and
// never decides: it turns a payload into a Request, and later turns the
// daemon's outcome for that payload into the CI system's native answer.
package adapter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gatelog/gatelog/record/decision"
)

// Adapter is implemented by every CI adapter. Implementations must be safe
// for concurrent use and keep no state between Translate and Render: Render
// gets the same payload again, so an adapter restarted in between still
// answers correctly.
type Adapter interface {
	// Info names the adapter and the payload kinds it accepts.
	Info(ctx context.Context) (Info, error)
	// Configure applies the settings from the daemon config. It is called
	// once after every start, before Translate or Render. Settings it does
	// not know are an error wrapping ErrBadSettings.
	Configure(ctx context.Context, settings map[string]string) error
	// Translate turns a native payload into a Request. A payload the adapter
	// cannot use is an error wrapping ErrBadPayload. The subject it returns
	// is what the payload claims; the daemon replaces it with the verified
	// identity or marks it vouched for.
	Translate(ctx context.Context, in Native) (decision.Request, error)
	// Render turns the daemon's outcome for a payload into the CI system's
	// native answer. It must answer any payload, including one Translate
	// rejected, and every failure must render as the CI system's "blocked".
	Render(ctx context.Context, in Native, out Outcome) (Response, error)
}

// Info describes an adapter.
type Info struct {
	// Name is the adapter's name, e.g. "tekton".
	Name string
	// Version is the adapter's own version, recorded in Request.Source.
	Version string
	// Kinds lists the payload kinds the adapter accepts, in the CI system's
	// own words (e.g. "admission.k8s.io/v1 AdmissionReview").
	Kinds []string
	// Unavailable is the native answer the daemon gives, without asking the
	// adapter, while the adapter is down. It cannot depend on the request,
	// and a status below 400 is ignored in favour of a plain 503: while the
	// adapter is down nothing may look like an allow.
	Unavailable *Response
}

// Native is a CI system's request as it reached the daemon.
type Native struct {
	Body []byte
	// Headers are the HTTP request headers, keys in canonical form.
	Headers http.Header
}

// Response is a CI system's native answer.
type Response struct {
	Status  int
	Headers http.Header
	Body    []byte
}

// Outcome is what the daemon concluded for a payload: a receipt (allow or
// deny) or a failure. Exactly one of the two is set.
type Outcome struct {
	Receipt *decision.Receipt
	Failure *Failure
}

// Sentinel errors adapters and their callers branch on.
var (
	// ErrBadPayload marks a payload an adapter cannot translate. It wraps
	// decision.ErrBadRequest: the fault is the caller's.
	ErrBadPayload = fmt.Errorf("%w: payload rejected by adapter", decision.ErrBadRequest)
	// ErrBadSettings marks settings an adapter does not accept.
	ErrBadSettings = errors.New("bad adapter settings")
	// ErrInvalidRequest marks a Request an adapter produced that the daemon
	// refuses to decide on.
	ErrInvalidRequest = errors.New("adapter produced an invalid request")
)

// FailureKind classifies a Failure. Every kind renders as a denial; the kind
// only chooses the CI system's status code and wording.
type FailureKind int

// The failure kinds, in the order of the wire enum.
const (
	// Internal is anything not covered below.
	Internal FailureKind = iota + 1
	// BadRequest means the payload or the request built from it was rejected.
	BadRequest
	// Unauthenticated means the caller's credential was missing or refused.
	Unauthenticated
	// Unavailable means a dependency (engine, log, adapter) is temporarily down.
	Unavailable
)

func (k FailureKind) String() string {
	switch k {
	case BadRequest:
		return "bad_request"
	case Unauthenticated:
		return "unauthenticated"
	case Unavailable:
		return "unavailable"
	default:
		return "internal"
	}
}

// HTTPStatus is the HTTP status code that matches the kind.
func (k FailureKind) HTTPStatus() int {
	switch k {
	case BadRequest:
		return http.StatusBadRequest
	case Unauthenticated:
		return http.StatusUnauthorized
	case Unavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// Failure is why the daemon has no receipt for a payload. It is an error, so
// the daemon can return one from anywhere on the request path and choose the
// kind and the wording the CI system sees.
type Failure struct {
	Kind FailureKind
	// Message is shown to the CI system's user; it must not carry secrets or
	// internal addresses.
	Message string
}

func (f *Failure) Error() string { return f.Kind.String() + ": " + f.Message }

// FailureOf classifies err for rendering. A *Failure anywhere in the chain is
// used as is; errors wrapping decision.ErrBadRequest keep their message (it
// describes the caller's input); deadlines and cancellations are
// Unavailable; anything else is Internal with a generic message, so internal
// details never reach a CI system.
func FailureOf(err error) *Failure {
	var f *Failure
	switch {
	case err == nil:
		return &Failure{Kind: Internal, Message: "gatelog could not decide"}
	case errors.As(err, &f):
		return f
	case errors.Is(err, decision.ErrBadRequest):
		return &Failure{Kind: BadRequest, Message: err.Error()}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &Failure{Kind: Unavailable, Message: "gatelog did not answer in time"}
	default:
		return &Failure{Kind: Internal, Message: "gatelog could not decide"}
	}
}

// Allowed reports whether the outcome is an allow: a receipt that allows.
func (o Outcome) Allowed() bool { return o.Failure == nil && o.Receipt != nil && o.Receipt.Allow }

// Reasons is the text to show the CI system's user for the outcome.
func (o Outcome) Reasons() []string {
	switch {
	case o.Failure != nil:
		return []string{o.Failure.Message}
	case o.Receipt != nil:
		return o.Receipt.Reasons
	default:
		return []string{"gatelog could not decide"}
	}
}

// Validate checks an outcome has exactly one of receipt and failure.
func (o Outcome) Validate() error {
	if (o.Receipt == nil) == (o.Failure == nil) {
		return errors.New("outcome needs exactly one of receipt and failure")
	}
	return nil
}

// ValidateRequest checks a Request an adapter produced before the daemon
// decides on it: it must name an action and a subject, and it must not claim
// anything only the daemon may set. Errors wrap ErrInvalidRequest.
func ValidateRequest(r decision.Request) error {
	var problems []string
	if strings.TrimSpace(r.Action) == "" {
		problems = append(problems, `field "action" is required`)
	}
	if strings.TrimSpace(r.Subject.ID) == "" {
		problems = append(problems, `field "subject.id" is required`)
	}
	if r.Subject.Verified {
		problems = append(problems, `field "subject.verified" is set by the daemon only`)
	}
	if r.Subject.AssertedBy != "" {
		problems = append(problems, `field "subject.asserted_by" is set by the daemon only`)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, strings.Join(problems, "; "))
	}
	if err := r.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return nil
}

// BadPayload returns an error wrapping ErrBadPayload with a message that
// names the offending field and what was expected.
func BadPayload(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadPayload, fmt.Sprintf(format, args...))
}
