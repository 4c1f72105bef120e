package main

import (
	"os"
	"runtime/debug"
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

func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	tuneGC()
	if got := debug.SetGCPercent(100); got != serveGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, serveGCPercent)
	}
	t.Setenv("GOGC", "100")
	tuneGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC=100 set by the operator: GC percent %d, want it left at 100", got)
	}
}
