package main

import (
	"slices"
	"strings"
	"testing"
)

func TestWithGODEBUG(t *testing.T) {
	got := withGODEBUG([]string{"PATH=/bin", "GODEBUG=http2client=0", "HOME=/root"}, stackGODEBUG)
	want := []string{"PATH=/bin", "HOME=/root", "GODEBUG=http2client=0," + stackGODEBUG}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	got = withGODEBUG([]string{"PATH=/bin"}, stackGODEBUG)
	if !slices.Equal(got, []string{"PATH=/bin", "GODEBUG=" + stackGODEBUG}) {
		t.Errorf("without GODEBUG: %q", got)
	}
}

func TestIsServe(t *testing.T) {
	for args, want := range map[string]bool{
		"gatelog serve --data d": true,
		"gatelog decide --input": false,
		"gatelog":                false,
		"gatelog --help serve":   true,
		"gatelog verify serve":   false,
	} {
		if got := isServe(splitArgs(args)); got != want {
			t.Errorf("isServe(%q) = %v", args, got)
		}
	}
}

func splitArgs(s string) []string { return strings.Fields(s) }
