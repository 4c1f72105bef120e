#!/usr/bin/env bash
# Runs every Go fuzz target of the module for a bounded time each
# (FUZZTIME, default 10s), one after the other, and stops at the first one
# that finds a failure (the failing input is kept under the package's
# testdata/fuzz/ by go test, so `go test` replays it from then on).
# `make test` already runs each target's seed corpus; this explores.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
n=0
start=$(date +%s)
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	grep -lq '^func Fuzz' "$dir"/*_test.go 2>/dev/null || continue
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "== $pkg $target ($fuzztime)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tail -n 3
		n=$((n + 1))
	done
done
echo "fuzz: $n targets, ${fuzztime} each, clean, in $(( $(date +%s) - start ))s"
