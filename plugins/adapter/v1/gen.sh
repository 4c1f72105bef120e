#!/usr/bin/env bash
# Regenerates the Go code for adapter.proto with pinned generators.
#
#   plugins/adapter/v1/gen.sh [OUTDIR]
#
# OUTDIR defaults to this directory; scripts/check-proto.sh passes a temporary
# one to compare against the committed files. protoc comes from Debian's
# protobuf-compiler package; protoc-gen-go and protoc-gen-go-grpc are built at
# the versions below into a temporary GOBIN, so nothing outside the repository
# and the Go caches changes.
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if ! command -v protoc >/dev/null 2>&1; then
	echo "gen.sh: protoc not found; install Debian's protobuf-compiler (apt-get install -y protobuf-compiler)" >&2
	exit 1
fi

gobin="$(mktemp -d)"
trap 'rm -rf "$gobin"' EXIT
# Build the generators outside the module so its go.mod is left alone.
(
	cd "$gobin"
	export GOBIN="$gobin" GOFLAGS=
	go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
	go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"
)

PATH="$gobin:$PATH" protoc \
	--proto_path="$here" \
	--go_out="$out" --go_opt=paths=source_relative \
	--go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
	adapter.proto
