#!/usr/bin/env bash
# demo.sh - sluice in front of a throwaway PostgreSQL, in one command.
#
# Installs the dependencies, builds sluice (meson, in ./build), creates a
# PostgreSQL cluster in a temporary directory on a free port with the user
# demo (password demo) and the database demo, writes a sluice config there
# (transaction pooling, SCRAM for clients) and runs sluice in the foreground
# on 127.0.0.1:6432 (or the next free port), printing the psql command that
# connects through it. Ctrl-C stops sluice and PostgreSQL and deletes the
# temporary directory; so does any other way this script ends.
#
# Run as root, PostgreSQL runs as the OS user postgres (initdb refuses root).
#
# Environment: SLUICE_BUILD_DIR (default build) is the meson build directory
# to use; PG_BINDIR overrides `pg_config --bindir`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Only what building and running need: no test packages, no npm.
./scripts/setup.sh --run

echo "==== building sluice"
build="${SLUICE_BUILD_DIR:-build}"
if [ ! -f "$build/build.ninja" ]; then
	# Left over from a failed first configure: meson can only start afresh.
	if [ -d "$build/meson-private" ]; then
		rm -rf "$build"
	fi
	# No test suites: they need Check, which only the test command installs
	# (scripts/test.sh reconfigures this directory with -Dtests=true).
	meson setup "$build" -Dtests=false
fi
meson compile -C "$build" sluice:executable

bindir="${PG_BINDIR:-$(pg_config --bindir)}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
	chown postgres: "$tmp"
	# In $tmp: the user postgres may not enter the directory the demo runs from.
	as_pg=(runuser -u postgres -- env --chdir="$tmp")
fi

sluice_pid=""
cleanup() {
	trap - EXIT INT TERM
	set +e
	if [ -n "$sluice_pid" ] && kill -0 "$sluice_pid" 2>/dev/null; then
		# SIGINT: exit once servers are released, without waiting for clients.
		kill -INT "$sluice_pid"
		for _ in $(seq 50); do kill -0 "$sluice_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$sluice_pid" 2>/dev/null
	fi
	if [ -f "$tmp/data/postmaster.pid" ]; then
		"${as_pg[@]}" "$bindir/pg_ctl" -D "$tmp/data" -m fast -w -t 30 stop >/dev/null
	fi
	rm -rf "$tmp"
	echo "demo: stopped sluice and PostgreSQL, removed $tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port nobody listens on, from $1 upwards. Start below Linux's ephemeral
# range (32768 and up): a port there may be the local end of some outgoing
# connection, which a connect does not see but a bind fails on.
free_port() {
	local port="$1"
	while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		port=$((port + 1))
	done
	echo "$port"
}

echo "==== starting PostgreSQL in $tmp"
pg_port=$(free_port 15432)
"${as_pg[@]}" "$bindir/initdb" -D "$tmp/data" -U postgres -A trust -E UTF8 --no-locale \
	--no-sync >"$tmp/initdb.log" 2>&1 || { cat "$tmp/initdb.log"; exit 1; }
cat >>"$tmp/data/postgresql.conf" <<CONF
port = $pg_port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$tmp'
fsync = off
CONF
cat >"$tmp/data/pg_hba.conf" <<HBA
local all all trust
host all all 127.0.0.1/32 scram-sha-256
HBA
"${as_pg[@]}" "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/postgres.log" -w -t 60 start >/dev/null ||
	{ cat "$tmp/postgres.log"; exit 1; }
psql -X -q -h "$tmp" -p "$pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
	-c "CREATE ROLE demo LOGIN PASSWORD 'demo'" -c "CREATE DATABASE demo OWNER demo"

port=$(free_port 6432)
metrics_port=$(free_port 9127)
cat >"$tmp/userlist.txt" <<USERS
"demo" "demo"
USERS
cat >"$tmp/sluice.ini" <<INI
; Written by scripts/demo.sh; removed when the demo ends.
[sluice]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $tmp
auth_type = scram-sha-256
auth_file = $tmp/userlist.txt
pool_mode = transaction
default_pool_size = 10
logfile =
admin_users = demo
metrics_port = $metrics_port

[databases]
demo = host=127.0.0.1 port=$pg_port dbname=demo
INI

cat <<MSG

PostgreSQL is on 127.0.0.1:$pg_port, sluice will listen on 127.0.0.1:$port.
Connect through sluice with:

    psql "host=127.0.0.1 port=$port dbname=demo user=demo password=demo"

The admin console (SHOW POOLS, SHOW STATS, SHOW POOL_WAITS, ...):

    psql "host=127.0.0.1 port=$port dbname=pgbouncer user=demo password=demo" -c "SHOW POOLS"

Prometheus metrics and probes: http://127.0.0.1:$metrics_port/metrics, /health, /ready
(curl http://127.0.0.1:$metrics_port/ready; where curl is missing, bash alone:
    exec 3<>/dev/tcp/127.0.0.1/$metrics_port; printf 'GET /ready HTTP/1.0\r\n\r\n' >&3; cat <&3)

Config: $tmp/sluice.ini. Press Ctrl-C to stop everything.

MSG

# sluice runs as a child the script waits for: Ctrl-C interrupts the wait, and
# cleanup() signals sluice, then stops PostgreSQL. If sluice exits by itself
# (a config error, say), its status ends the script and cleanup() still runs.
"$build/sluice" "$tmp/sluice.ini" &
sluice_pid=$!
wait "$sluice_pid"
