#!/bin/sh
# Asks gatelog for a decision: POST the request in $1 to $GATELOG_URL/v1/decide
# with the build's OIDC token ($GATELOG_TOKEN) and print the receipt.
#
# Exit status: 0 allowed, 2 denied, 1 no decision (gatelog unreachable,
# token refused, request rejected): everything but 0 fails the build.
# Run by the gatelogGate step (vars/gatelogGate.groovy); tested as is.
set -u

request="$1"
receipt="${2:-gatelog-receipt.json}"

if [ -z "${GATELOG_URL:-}" ] || [ -z "${GATELOG_TOKEN:-}" ]; then
	echo "gatelog: GATELOG_URL and GATELOG_TOKEN must be set" >&2
	exit 1
fi

# The token goes in a header file, not on the command line, so it does not
# show up in the process list of the agent.
headers="$(mktemp)"
trap 'rm -f "$headers"' EXIT
printf 'Authorization: Bearer %s\nContent-Type: application/json\n' "$GATELOG_TOKEN" >"$headers"

status=$(curl --silent --show-error --max-time "${GATELOG_TIMEOUT:-30}" \
	--retry "${GATELOG_RETRIES:-2}" --retry-connrefused \
	-H @"$headers" \
	-o "$receipt" -w '%{http_code}' \
	--data-binary @"$request" \
	"${GATELOG_URL%/}/v1/decide") || {
	echo "gatelog: no answer from ${GATELOG_URL}: the build is blocked" >&2
	exit 1
}

cat "$receipt"
echo
if [ "$status" != "200" ]; then
	echo "gatelog: HTTP $status, no decision: the build is blocked" >&2
	exit 1
fi
# The receipt's only "allow" key is the decision (reasons are quoted strings).
if grep -Eq '"allow"[[:space:]]*:[[:space:]]*true' "$receipt"; then
	exit 0
fi
echo "gatelog: denied" >&2
exit 2
