#!/usr/bin/env bash
# Browser end-to-end test of the auditor console: installs what it needs if
# missing (Debian's chromium, the npm packages pinned in ui/package-lock.json),
# builds gatelog, and runs ui/test/browser.test.mjs, which starts a daemon,
# drives Chromium with playwright-core and saves screenshots to ui/artifacts/.
#
# Under CI=true a browser that cannot be installed or started fails the run;
# elsewhere the test is skipped with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

skip_or_fail() {
	if [ "${CI:-}" = "true" ]; then
		echo "ui-test: $1" >&2
		exit 1
	fi
	echo "ui-test: SKIPPED: $1" >&2
	exit 0
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	skip_or_fail "node and npm are needed (Node.js 20 or later)"
fi

if [ ! -x "$CHROMIUM" ]; then
	if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
		echo "ui-test: installing Debian's chromium" >&2
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
	else
		skip_or_fail "no Chromium at $CHROMIUM and no root apt-get to install it (apt-get install chromium)"
	fi
fi
[ -x "$CHROMIUM" ] || skip_or_fail "no Chromium at $CHROMIUM after installing"

if [ ! -d ui/node_modules/playwright-core ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
	echo "ui-test: npm ci in ui/" >&2
	(cd ui && npm ci --no-audit --no-fund --loglevel=error)
fi

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
$GO build -o "$bin/gatelog" ./cli/gatelog

cd ui
GATELOG_BIN="$bin/gatelog" CHROMIUM="$CHROMIUM" node --test test/browser.test.mjs
