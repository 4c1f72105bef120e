#!/usr/bin/env bash
# A throwaway MariaDB for tests and for trying scale-out by hand.
#
#   scripts/mariadb.sh start   installs Debian's mariadb-server if missing, starts a
#                              server as a plain process on a free loopback port with
#                              its data under a temp folder ($GATELOG_MARIADB_DIR if
#                              set, else a new one), creates the database and user
#                              "gatelog" and prints the DSN (and nothing else) on
#                              stdout, in the form `gatelog serve --log` takes.
#   scripts/mariadb.sh stop DIR    stops that server and removes DIR.
#   scripts/mariadb.sh restart DIR starts that server again after it died (kill -9
#                              it for a crash drill), on the same data and port.
#
# The folder holds the DSN in DIR/dsn and the server's pid in DIR/mariadb.pid;
# stderr says how to stop. This is for tests, not for keeping data.
set -euo pipefail

log() { echo "mariadb.sh: $*" >&2; }

install() {
	command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null && return 0
	[ -x /usr/sbin/mariadbd ] && command -v mariadb-install-db >/dev/null && return 0
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		log "MariaDB is not installed (Debian package mariadb-server) and cannot be installed here"
		exit 1
	fi
	log "installing Debian's mariadb-server"
	export DEBIAN_FRONTEND=noninteractive
	# Test binaries run in parallel and may both install at once: one apt at a time.
	exec 9>"${TMPDIR:-/tmp}/gatelog-apt.lock"
	flock -w 600 9
	command -v mariadb-install-db >/dev/null && [ -x "$(mariadbd_bin)" ] && return 0
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >&2
}

mariadbd_bin() {
	command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd
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

# launch DIR PORT runs the server on DIR/data and waits until it answers.
launch() {
	local dir=$1 port=$2
	"$(mariadbd_bin)" --no-defaults --user="$(id -un)" --datadir="$dir/data" --socket="$dir/mariadb.sock" \
		--port="$port" --bind-address=127.0.0.1 --skip-networking=0 --pid-file="$dir/mariadbd.pid" \
		--log-error="$dir/server.log" --innodb-flush-log-at-trx-commit=2 --skip-log-bin \
		--max-connections=500 </dev/null >/dev/null 2>&1 &
	# The script alone writes DIR/mariadb.pid (the server writes its own
	# copy elsewhere): the server rewrites its pid file while it starts, and
	# read empty at that moment it looked like a server that had died — the
	# script then started a second one, which could not lock the data files
	# and, aborting, took the socket with it.
	echo $! >"$dir/mariadb.pid"
	# Wait as long as the server lives, up to three minutes: after a kill -9
	# InnoDB's crash recovery on a loaded CI machine can take more than the
	# thirty seconds a fresh start needs, and a server killed for being slow
	# starts its recovery over. A server that exits (a port taken) fails at
	# once.
	for _ in $(seq 1 1800); do
		if mariadb --no-defaults -S "$dir/mariadb.sock" -u root -e 'SELECT 1' >/dev/null 2>&1; then
			return 0
		fi
		kill -0 "$(cat "$dir/mariadb.pid")" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# restart DIR starts the server of DIR again after it died (a crash drill:
# kill -9 its pid first), on the same data and port, so the DSN still works.
restart() {
	local dir=${1:?usage: mariadb.sh restart DIR} port
	[ -f "$dir/dsn" ] || { log "$dir/dsn not found: not a folder start made"; exit 1; }
	port=$(sed -n 's/.*tcp(127.0.0.1:\([0-9]*\)).*/\1/p' "$dir/dsn")
	for _ in 1 2 3 4 5; do
		launch "$dir" "$port" && { log "restarted on 127.0.0.1:$port"; return 0; }
		kill "$(cat "$dir/mariadb.pid")" 2>/dev/null || true
		sleep 1 # the port may still be held for a moment
	done
	cat "$dir/server.log" >&2
	log "server did not restart"
	exit 1
}

start() {
	install
	local dir port user
	dir=${GATELOG_MARIADB_DIR:-}
	if [ -z "$dir" ]; then
		dir=$(mktemp -d "${TMPDIR:-/tmp}/gatelog-mariadb.XXXXXX")
	fi
	mkdir -p "$dir"
	user=$(id -un)
	mariadb-install-db --no-defaults --datadir="$dir/data" --user="$user" \
		--auth-root-authentication-method=socket --skip-test-db >"$dir/install.log" 2>&1 ||
		{ cat "$dir/install.log" >&2; log "mariadb-install-db failed"; exit 1; }
	local try ok=
	for try in 1 2 3; do
		port=$(free_port)
		launch "$dir" "$port" && ok=1 && break
		kill "$(cat "$dir/mariadb.pid")" 2>/dev/null || true
		[ "$try" = 3 ] && { cat "$dir/server.log" >&2; log "server did not start"; exit 1; }
	done
	mariadb --no-defaults -S "$dir/mariadb.sock" -u root -e "
		CREATE DATABASE IF NOT EXISTS gatelog;
		CREATE USER IF NOT EXISTS 'gatelog'@'127.0.0.1' IDENTIFIED BY 'gatelog';
		CREATE USER IF NOT EXISTS 'gatelog'@'localhost' IDENTIFIED BY 'gatelog';
		GRANT ALL ON *.* TO 'gatelog'@'127.0.0.1';
		GRANT ALL ON *.* TO 'gatelog'@'localhost';" >&2
	local dsn="mysql://gatelog:gatelog@tcp(127.0.0.1:$port)/gatelog"
	echo "$dsn" >"$dir/dsn"
	log "started on 127.0.0.1:$port; stop with: scripts/mariadb.sh stop $dir"
	echo "$dsn"
}

stop() {
	local dir=${1:?usage: mariadb.sh stop DIR}
	[ -d "$dir" ] || return 0
	if [ -f "$dir/mariadb.pid" ]; then
		local pid
		pid=$(cat "$dir/mariadb.pid")
		if kill "$pid" 2>/dev/null; then
			for _ in $(seq 1 100); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -9 "$pid" 2>/dev/null || true
		fi
	fi
	rm -rf "$dir"
}

case "${1:-}" in
start) start ;;
stop) stop "${2:-}" ;;
restart) restart "${2:-}" ;;
*)
	echo "usage: $0 start | stop DIR | restart DIR" >&2
	exit 2
	;;
esac
