#!/bin/sh
# compare.sh: ns/op and allocs/op of `opa bench` on data.gatelog.decision, per
# example request, with the policy library as it was before issue #24
# (bench/policy/testdata/baseline) and as it is now (policies/), side by side.
#
#   bench/policy/compare.sh [path/to/opa] > bench/policy/RESULTS.md
#
# The README's requests (examples/requests/) are evaluated with
# policies/data.yaml, the Acme walkthrough's (examples/policies/requests/)
# with examples/policies/acme.yaml. Data is kept as AST values
# (--optimize-store-for-read-speed), as the engine keeps it
# (inmem.OptReturnASTValuesOnRead), so this is the daemon's evaluation; the
# policies are loaded as they are, unoptimized, as the engine loads them.
# The two libraries are measured in turn,
# REPEAT times (default 3) for each request, and the fastest run of each is
# kept: load from other processes only ever adds time. allocs/op does not
# move with it. Run from the repository root.
set -eu

OPA=${1:-bin/opa-v1.22.2}
REPEAT=${REPEAT:-3}
BASELINE=bench/policy/testdata/baseline
CURRENT=policies

# bench LIB DATA REQUEST prints "ns allocs" for one evaluation.
bench() {
	"$OPA" bench --optimize-store-for-read-speed --format json --ignore '*_test.rego' --ignore data.yaml \
		-d "$1" -d "$2" -i "$3" data.gatelog.decision |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["T"]/d["N"]), round(d["MemAllocs"]/d["N"]))'
}

echo "# The bundled policy library: before and after issue #24"
echo
echo "\`bench/policy/compare.sh\` ($("$OPA" version | head -1), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)): \`opa bench\` of"
echo "\`data.gatelog.decision\` with the data kept as AST values as the daemon keeps it"
echo "(\`--optimize-store-for-read-speed\`), the fastest of $REPEAT alternating runs of about a second per cell."
echo "*before* is \`bench/policy/testdata/baseline\` (the library before the rewrite), *after* is \`policies/\`."
echo
echo "| request | config | ns/op before | ns/op after | ratio | allocs/op before | allocs/op after | ratio |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for set in "examples/requests:policies/data.yaml" "examples/policies/requests:examples/policies/acme.yaml"; do
	dir=${set%%:*}
	data=${set#*:}
	for req in "$dir"/*.json; do
		old_ns= new_ns=
		i=0
		while [ "$i" -lt "$REPEAT" ]; do
			set -- $(bench "$BASELINE" "$data" "$req")
			if [ -z "$old_ns" ] || [ "$1" -lt "$old_ns" ]; then old_ns=$1; fi
			old_allocs=$2
			set -- $(bench "$CURRENT" "$data" "$req")
			if [ -z "$new_ns" ] || [ "$1" -lt "$new_ns" ]; then new_ns=$1; fi
			new_allocs=$2
			i=$((i + 1))
		done
		python3 -c 'import sys
r, d, on, nn, oa, na = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
print(f"| {r} | {d} | {on} | {nn} | {nn/on:.2f} | {oa} | {na} | {na/oa:.2f} |")' \
			"$(basename "$req")" "$(basename "$data")" "$old_ns" "$new_ns" "$old_allocs" "$new_allocs"
	done
done
