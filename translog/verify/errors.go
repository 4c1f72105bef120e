package verify

import (
	"errors"
	"fmt"
)

// ErrFailed is wrapped by every verification failure: errors.Is(err,
// ErrFailed) tells "the log, receipt or record is not what it claims" from
// an error reading it.
var ErrFailed = errors.New("verification failed")

// Check names one check of a verification. It is also an error, so a
// caller tests which check failed with errors.Is(err, verify.CheckSET),
// or reads it from a *CheckError with errors.As.
type Check string

func (c Check) Error() string { return string(c) }

// The checks, named as they are reported ("verification failed: <check>: …").
const (
	CheckLogKey              Check = "log key"
	CheckSignerKey           Check = "signer key" // the key is not in the set, or not valid at the entry's time
	CheckCheckpoint          Check = "checkpoint" // not this log's, or unreadable
	CheckCheckpointSignature Check = "checkpoint signature"
	CheckInclusion           Check = "inclusion proof"
	CheckConsistency         Check = "consistency"
	CheckSET                 Check = "signed entry timestamp"
	CheckEnvelope            Check = "envelope" // signature, or not the envelope the entry commits to
	CheckEntry               Check = "log entry"
	CheckUUID                Check = "uuid"
	CheckLogID               Check = "log_id"
	CheckDecisionID          Check = "decision_id"
	CheckKind                Check = "kind" // the receipt's record kind is not the signed one
	CheckAllow               Check = "allow"
	CheckReasons             Check = "reasons"
	CheckAlerts              Check = "alerts"
	CheckAnswer              Check = "answer" // a verified record that does not answer the request sent
)

// CheckError is a failed check: which one, what was wrong, and the cause
// when there is one. It wraps ErrFailed, its Check, and Err.
type CheckError struct {
	Check  Check
	Detail string
	Err    error
}

func (e *CheckError) Error() string {
	msg := fmt.Sprintf("%s: %s", ErrFailed, e.Check)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap gives ErrFailed, the Check and the cause to errors.Is and errors.As.
func (e *CheckError) Unwrap() []error {
	errs := []error{ErrFailed, e.Check}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// fail is a failed check described by a message.
func fail(check Check, format string, args ...any) error {
	return &CheckError{Check: check, Detail: fmt.Sprintf(format, args...)}
}

// failWith is a failed check caused by err.
func failWith(check Check, err error) error {
	return &CheckError{Check: check, Err: err}
}
