#!/usr/bin/env bash
# Builds the unmodified cosign (COSIGN_VERSION, default v2.6.5) from its Go
# module into bin/ when it is not there yet, then runs
# TestCosignVerifiesBundles: `cosign verify-blob-attestation` on bundles
# written by `gatelog log bundle --subject-out`, offline with the trusted
# root from `gatelog log trusted-root`, claims checked, on good bundles and
# on tampered ones it must refuse. Building cosign takes minutes, so this
# is `make interop`, not part of `make test`.
#
# cosign before v2.6.3 ignores --type (GHSA-w6c6-c85g-mmv6): do not set
# COSIGN_VERSION lower.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${COSIGN_VERSION:-v2.6.5}"
bin="$root/bin/cosign-$version"

if [ ! -x "$bin" ]; then
	echo "interop: building cosign $version (a few minutes)" >&2
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	GOBIN="$tmp" go install "github.com/sigstore/cosign/v2/cmd/cosign@$version"
	mkdir -p "$root/bin"
	mv "$tmp/cosign" "$bin"
fi
"$bin" version 2>/dev/null | grep -E '^GitVersion' >&2 || true

cd "$root"
GATELOG_COSIGN="$bin" go test -count=1 -run 'TestCosignVerifiesBundles' -v ./cli/gatelog
