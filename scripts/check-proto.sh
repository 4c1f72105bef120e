#!/usr/bin/env bash
# Fails when the committed generated code for plugins/adapter/v1/adapter.proto
# is not what the pinned generators produce from it (run `make proto` and
# commit the result). Installs Debian's protobuf-compiler when protoc is
# missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/plugins/adapter/v1"

if ! command -v protoc >/dev/null 2>&1; then
	echo "check-proto: installing protobuf-compiler" >&2
	if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq protobuf-compiler >/dev/null
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$dir/gen.sh" "$tmp"

status=0
for f in adapter.pb.go adapter_grpc.pb.go; do
	if ! diff -u "$dir/$f" "$tmp/$f"; then
		status=1
	fi
done
if [ "$status" -ne 0 ]; then
	echo "check-proto: plugins/adapter/v1 generated code is out of date; run 'make proto' and commit" >&2
	exit 1
fi
echo "check-proto: plugins/adapter/v1 generated code is current"
