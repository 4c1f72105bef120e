package main

import (
	"os"
	"runtime/debug"
	"strings"
	"syscall"
)

// stackGODEBUG keeps goroutine stacks from being shrunk by the garbage
// collector. OPA's evaluator recurses deeply, so a decision grows the
// stack of the goroutine serving it to a few hundred KB; with shrinking
// on, every collection (many a second under load) halves the idle
// connection goroutines' stacks and the next decision copies them back up
// frame by frame. Measured with bench/ (gatelog-bench compare, 2 cores):
// 15–20 % less CPU per decision and as much more throughput at 16 and 64
// clients. The price is memory: a stack stays at its high-water mark,
// a few hundred KB per open connection.
const stackGODEBUG = "gcshrinkstackoff=1"

// reexecWithStackGODEBUG re-executes this process for `gatelog serve` with
// stackGODEBUG added to GODEBUG: the runtime reads that setting only at
// start-up. A GODEBUG that already names gcshrinkstackoff is left as the
// operator set it. It returns only when no re-exec happened (or it failed,
// in which case the daemon runs with the runtime's default).
func reexecWithStackGODEBUG(args []string) {
	if !isServe(args) || strings.Contains(os.Getenv("GODEBUG"), "gcshrinkstackoff") {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	_ = syscall.Exec(exe, args, withGODEBUG(os.Environ(), stackGODEBUG))
}

// isServe reports whether args run the serve command.
func isServe(args []string) bool {
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "-") {
			return a == "serve"
		}
	}
	return false
}

// withGODEBUG returns env with setting appended to its GODEBUG (one
// GODEBUG entry: the runtime reads the first).
func withGODEBUG(env []string, setting string) []string {
	out := make([]string, 0, len(env)+1)
	cur := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			cur = v
			continue
		}
		out = append(out, kv)
	}
	if cur != "" {
		setting = cur + "," + setting
	}
	return append(out, "GODEBUG="+setting)
}

// serveGCPercent is the garbage collector's target (GOGC) for `gatelog
// serve` when the operator has not set GOGC. A decision allocates a few
// hundred KB that are garbage once it is answered, while the live heap
// (policies, caches) is small and steady, so at Go's default of 100 the
// collector runs many times a second. Measured with bench/ (gatelog-bench
// compare, 16 clients, 2 cores, back to back): 1,123–1,264 µs of CPU per
// decision at 100, 933–950 at 400. The price is memory: the heap grows to
// about five times the live data between collections instead of two.
const serveGCPercent = 400

// tuneGC sets serveGCPercent unless GOGC is set, in which case the
// runtime has already applied the operator's value.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(serveGCPercent)
	}
}
