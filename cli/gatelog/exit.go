package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/translog/monitor"
	"github.com/gatelog/gatelog/translog/verify"
)

// The exit codes of every gatelog command: one table, mapped in one place
// (exitCode), printed in the root --help.
const (
	exitOK = 0
	// exitError: the command could not do its work — bad usage, a file or
	// key that cannot be read, a daemon that cannot be reached or answers
	// with an error.
	exitError = 1
	// exitNo: the answer is no — a decision denied (decide, policy eval),
	// or a check the caller asked for did not pass (policy test: a Rego
	// test failed, no tests, coverage below the threshold; policy replay
	// --fail-on-change: a decision would change).
	exitNo = 2
	// exitVerify: something does not verify — a receipt, entry, checkpoint
	// or proof (verify, decide, audit search --verify, log, monitor, policy
	// replay), or keys that changed since they were pinned.
	exitVerify = 3
)

// exitCodesHelp is the table as the root --help prints it.
const exitCodesHelp = `EXIT CODES (every command):
   0  ok; for decide and policy eval: allowed
   1  error: bad usage, unreadable file or key, daemon unreachable or answered with an error
   2  no: denied (decide, policy eval), or a check you asked for did not pass
      (policy test: tests failed or coverage below --coverage-threshold;
       policy replay --fail-on-change: decisions would change)
   3  verification failed: a receipt, log entry, checkpoint or proof does not verify
      (verify, decide, audit search --verify, log, monitor, policy replay), the log
      misbehaved (fork, rollback, bad entry), or keys pinned on first use changed`

// exitErr carries an exit code and the message to print.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

// ExitCode makes exitErr a cli.ExitCoder too.
func (e *exitErr) ExitCode() int { return e.code }

// notVerified is a verification failure: exit 3, whatever the cause's type.
func notVerified(err error) error { return &exitErr{code: exitVerify, err: err} }

// answerNo is exit 2 with msg ("" when the output already says it).
func answerNo(msg string) error { return &exitErr{code: exitNo, err: errors.New(msg)} }

// exitCode maps an error to the table: a verification failure (a
// *verify.CheckError, a *monitor.Alarm, anything wrapping verify.ErrFailed)
// is 3 wherever it comes from; an explicit code is kept; anything else is 1.
func exitCode(err error) int {
	var (
		ee *exitErr
		al *monitor.Alarm
		ec cli.ExitCoder
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &al), errors.Is(err, verify.ErrFailed):
		return exitVerify
	case errors.As(err, &ec):
		return ec.ExitCode()
	}
	return exitError
}

// report prints err (unless it is empty: the output said it) and returns
// the exit code for it.
func report(w io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(w, "gatelog:", msg)
	}
	return exitCode(err)
}
