package main

import (
	"strconv"
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
