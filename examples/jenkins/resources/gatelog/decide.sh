#!/bin/sh
# Asks gatelog whether this build may go on: POSTs the build description in
# $1 (Jenkins' own variables: JOB_NAME, BUILD_URL, GIT_BRANCH, ... plus
# action and environment) to $GATELOG_URL/v1/adapters/jenkins with the
# build's OIDC token ($GATELOG_TOKEN), saves gatelog's answer to $2 and
# prints it, reasons included, to the build log.
#
# Exit status: 0 allowed; 2 denied; 3 the token was already used (every
# binding of the oidc-provider credential mints one token, and two bindings
# of one build within the same second mint the same one: bind again after a
# second and retry); 1 no decision (gatelog unreachable, token refused,
# payload rejected). Everything but 0 fails the build.
# Run by the gatelogGate step (vars/gatelogGate.groovy); tested as is.
set -u

request="$1"
answer="${2:-gatelog-answer.json}"

if [ -z "${GATELOG_URL:-}" ] || [ -z "${GATELOG_TOKEN:-}" ]; then
	echo "gatelog: GATELOG_URL and GATELOG_TOKEN must be set" >&2
	exit 1
fi

# The token goes in a header file, not on the command line, so it does not
# show up in the process list of the agent.
headers="$(mktemp)"
trap 'rm -f "$headers"' EXIT
printf 'Authorization: Bearer %s\nContent-Type: application/json\n' "$GATELOG_TOKEN" >"$headers"

# curl retries when it could not connect, and on 429 and 5xx answers. A
# token is accepted once, so a retry after an answer that came after the
# token was checked is refused as already used (exit 3), and the step binds
# a new token.
status=$(curl --silent --show-error --max-time "${GATELOG_TIMEOUT:-30}" \
	--retry "${GATELOG_RETRIES:-2}" --retry-connrefused \
	-H @"$headers" \
	-o "$answer" -w '%{http_code}' \
	--data-binary @"$request" \
	"${GATELOG_URL%/}/v1/adapters/jenkins") || {
	echo "gatelog: no answer from ${GATELOG_URL}: the build is blocked" >&2
	exit 1
}

cat "$answer"
echo
# The answer's only "allow" key is the decision (reasons are quoted strings).
case "$status" in
200)
	if grep -Eq '"allow"[[:space:]]*:[[:space:]]*true' "$answer"; then
		exit 0
	fi
	;;
403)
	if grep -q '"decision_id"' "$answer"; then
		echo "gatelog: denied: the build is blocked (the reasons are above)" >&2
		exit 2
	fi
	;;
401)
	if grep -q 'already used' "$answer"; then
		echo "gatelog: this token was already used: bind the credential again" >&2
		exit 3
	fi
	;;
esac
echo "gatelog: HTTP $status, no decision: the build is blocked" >&2
exit 1
