#!/usr/bin/env bash
# A throwaway PostgreSQL for tests and for trying scale-out by hand.
#
#   scripts/postgres.sh start   installs Debian's postgresql if missing, starts a
#                               server as a plain process on a free loopback port with
#                               its data under a temp folder ($GATELOG_PG_DIR if set,
#                               else a new one), creates the database "gatelog" and
#                               prints its DSN (and nothing else) on stdout.
#   scripts/postgres.sh stop DIR    stops that server and removes DIR.
#
# The folder holds the DSN in DIR/dsn; stderr says how to stop. Authentication is
# "trust" on loopback only: this is for tests, not for keeping data.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

pgbin() {
	local d
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] && { echo "$d"; return 0; }
	done
	return 1
}

install() {
	pgbin >/dev/null && return 0
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		log "PostgreSQL is not installed (Debian package postgresql) and cannot be installed here"
		exit 1
	fi
	log "installing Debian's postgresql"
	export DEBIAN_FRONTEND=noninteractive
	# Test binaries run in parallel and may both install at once: one apt at a time.
	exec 9>"${TMPDIR:-/tmp}/gatelog-apt.lock"
	flock -w 600 9
	pgbin >/dev/null && return 0
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
	pgbin >/dev/null
}

# as_pg runs a command as the user that owns the cluster (postgres when root).
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	log "no free port found"
	exit 1
}

start() {
	install
	local bin dir port
	bin=$(pgbin)
	dir=${GATELOG_PG_DIR:-}
	if [ -z "$dir" ]; then
		dir=$(mktemp -d "${TMPDIR:-/tmp}/gatelog-pg.XXXXXX")
	fi
	mkdir -p "$dir"
	chmod 0755 "$dir"
	if [ "$(id -u)" = 0 ]; then
		chown postgres: "$dir"
	fi
	as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; log "initdb failed"; exit 1; }
	local try
	for try in 1 2 3; do
		port=$(free_port)
		if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
			-o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off" start >&2; then
			break
		fi
		[ "$try" = 3 ] && { cat "$dir/server.log" >&2; log "server did not start"; exit 1; }
	done
	"$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qAtc "CREATE DATABASE gatelog" postgres >&2
	local dsn="postgres://postgres@127.0.0.1:$port/gatelog?sslmode=disable"
	echo "$dsn" >"$dir/dsn"
	log "started on 127.0.0.1:$port; stop with: scripts/postgres.sh stop $dir"
	echo "$dsn"
}

stop() {
	local dir=${1:?usage: postgres.sh stop DIR}
	[ -d "$dir" ] || return 0
	local bin
	if [ -f "$dir/data/postmaster.pid" ] && bin=$(pgbin); then
		as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
	fi
	rm -rf "$dir"
}

case "${1:-}" in
start) start ;;
stop) stop "${2:-}" ;;
*)
	echo "usage: $0 start | stop DIR" >&2
	exit 2
	;;
esac
