package main

import (
	"strconv"
	"strings"
	"unicode"
)

// printable returns s as is when a terminal shows exactly its characters,
// and quoted with Go escapes otherwise. Record fields (actions, subjects,
// reasons, key names) are written by callers; printed raw, a field holding
// "\x1b[2K\r" or a right-to-left override could erase or rewrite what an
// auditor's terminal shows ("VERIFIED" included), and a tab or newline
// could shift a table's columns or fake a line.
func printable(s string) string {
	for _, r := range s {
		if r == ' ' {
			continue
		}
		if !unicode.IsPrint(r) || unicode.Is(unicode.Bidi_Control, r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// escaped is an error printed through printable (its text may hold
// fields of a record or a daemon's answer) that still unwraps to its cause.
type escaped struct {
	prefix string
	err    error
}

func (e *escaped) Error() string { return e.prefix + printable(e.err.Error()) }
func (e *escaped) Unwrap() error { return e.err }

// notVerifiedErr is a verification failure as the CLI reports it: exit 3,
// "NOT VERIFIED: …" with the cause escaped and still testable with
// errors.Is/As.
func notVerifiedErr(prefix string, err error) error {
	return notVerified(&escaped{prefix: prefix + "NOT VERIFIED: ", err: err})
}

// printableLines is printable for each line of text (a checkpoint a log
// served), keeping the line breaks.
func printableLines(text []byte) string {
	lines := strings.SplitAfter(string(text), "\n")
	for i, l := range lines {
		body, nl := strings.CutSuffix(l, "\n")
		lines[i] = printable(body)
		if nl {
			lines[i] += "\n"
		}
	}
	return strings.Join(lines, "")
}
