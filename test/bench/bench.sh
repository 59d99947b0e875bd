#!/usr/bin/env bash
# bench.sh - the benchmark of sluice against PostgreSQL directly and against
# PgBouncer, on loopback, with pgbench and an idle-connection memory test.
#
# It owns the whole run: installing what it needs (pgbouncer, PostgreSQL,
# pgbench, a C compiler and libpq headers, with apt-get), building sluice in a
# release build directory of its own unless SLUICE_BIN names a binary, a
# throwaway PostgreSQL in a temporary directory, PgBouncer and sluice with
# equivalent settings, the pgbench scenarios, the measurements and the result
# files. It does not change sluice or tune anything for it, and it is not a
# test: CI may run it only with --smoke, to check that the script still works.
#
# Usage: test/bench/bench.sh [--smoke] [--rounds N] [--duration S]
#
# Environment: SLUICE_BIN (use this sluice, do not build), BENCH_BUILD_DIR
# (default build-bench in the repository), BENCH_OUT (where results go, default
# BENCH_BUILD_DIR/bench-results/DATE), BENCH_SCALE (pgbench scale, default 10),
# PG_BINDIR (PostgreSQL's initdb/pg_ctl, default the newest under
# /usr/lib/postgresql), BENCH_SCENARIOS (an extended regular expression: run
# only the scenarios whose names match it, e.g. 'tls'; the counts phase too),
# BENCH_MEMORY=0 (skip the memory test with idle clients), BENCH_COUNTS=0 (skip
# the counts phase: instructions and syscalls per transaction, with callgrind
# and strace), BENCH_COUNTS_TXNS (transactions per client in each run of the
# counts phase, default 100, 5 with --smoke), BENCH_COUNTS_REPEAT (runs per
# scenario and pooler in the counts phase, default 3, 1 with --smoke).
#
# Every process it starts is stopped on exit, Ctrl-C included, and the
# temporary directory is removed; the results directory is kept.
set -euo pipefail

rounds=3
duration=10
smoke=0
usage() {
	sed -n '13p' "$0" | sed 's/^# //'
	exit "${1:-0}"
}
while [ $# -gt 0 ]; do
	case "$1" in
	--smoke) smoke=1 ;;
	--rounds) rounds=${2:?--rounds needs a number}; shift ;;
	--duration) duration=${2:?--duration needs seconds}; shift ;;
	-h | --help) usage 0 ;;
	*) echo "bench.sh: unknown argument: $1" >&2; usage 2 ;;
	esac
	shift
done
# Idle clients held by each pooler: how many, and their sslmode (require: TLS to the pooler).
idle_specs=("1000|disable" "10000|disable" "1000|require")
if [ "$smoke" = 1 ]; then
	rounds=1
	duration=3
	idle_specs=("200|disable" "200|require")
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench_src=$repo/test/bench
build_dir=${BENCH_BUILD_DIR:-$repo/build-bench}
out_dir=${BENCH_OUT:-$build_dir/bench-results/$(date +%Y%m%d-%H%M%S)}
scale=${BENCH_SCALE:-10}
password=benchpw
pool_size=20
max_client_conn=12000

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_root=0
[ "$(id -u)" -eq 0 ] && is_root=1
sudo=()
[ "$is_root" = 1 ] || sudo=(sudo)

# ---- packages ----------------------------------------------------------------

# Installs the Debian packages the benchmark needs and the machine lacks.
install_packages() {
	local want=(pgbouncer postgresql postgresql-contrib libpq-dev gcc valgrind strace)
	local missing=() p
	for p in "${want[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
}

install_packages
if [ -z "${PG_BINDIR:-}" ]; then
	PG_BINDIR=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
fi
[ -x "$PG_BINDIR/initdb" ] || die "no initdb in PG_BINDIR=$PG_BINDIR"
pgbench=$PG_BINDIR/pgbench
[ -x "$pgbench" ] || pgbench=$(command -v pgbench) || die "pgbench not found"
psql=$(command -v psql) || die "psql not found"
pgbouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$pgbouncer" ] || die "pgbouncer not found"

# ---- sluice --------------------------------------------------------------------

if [ -n "${SLUICE_BIN:-}" ]; then
	sluice_bin=$SLUICE_BIN
else
	"$repo/scripts/setup.sh" >&2
	if [ ! -f "$build_dir/build.ninja" ]; then
		log "configuring $build_dir (release)"
		(cd "$repo" && meson setup "$build_dir" --buildtype=release) >&2
	fi
	log "building sluice in $build_dir"
	ninja -C "$build_dir" sluice >&2
	sluice_bin=$build_dir/sluice
fi
[ -x "$sluice_bin" ] || die "sluice binary $sluice_bin is not executable"
# The tree the binary came from, taken now: others may commit during a long run.
tree_state="commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown), \
$(git -C "$repo" status --porcelain -- src include 2>/dev/null | wc -l) uncommitted files in src/ and include/"
[ -n "${SLUICE_BIN:-}" ] && tree_state="given as SLUICE_BIN=$SLUICE_BIN; repository at $tree_state"

# ---- temporary directory, processes, clean-up ----------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
mkdir -p "$out_dir"
pg_started=0
pgbouncer_pid=
sluice_pid=
pgbouncer_tls_pid=
sluice_tls_pid=
sluice_w2_pid=
sluice_uring_pid=
idle_pid=
pgbench_pid=
# The counts phase: the pooler under callgrind (cg_pid is valgrind, cg_wrap_pid
# the timeout around it) and strace.
cg_pid=
cg_wrap_pid=
strace_pid=

# initdb, pg_ctl and PgBouncer refuse to run as root: as root they, and sluice
# (so both poolers run alike), run as the OS user postgres. setpriv keeps the
# raised file-descriptor limit, where su or runuser could reset it through PAM.
as_pg=()
if [ "$is_root" = 1 ]; then
	id postgres >/dev/null 2>&1 || die "as root, the OS user 'postgres' must exist"
	as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
	chown postgres: "$work"
fi

stop_pid() {
	local pid=$1
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	local i
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	stop_pid "$pgbench_pid"
	stop_pid "$idle_pid"
	stop_pid "$strace_pid"
	stop_pid "$cg_pid"
	stop_pid "$cg_wrap_pid"
	stop_pid "$sluice_pid"
	stop_pid "$pgbouncer_pid"
	stop_pid "$sluice_tls_pid"
	stop_pid "$sluice_w2_pid"
	stop_pid "$sluice_uring_pid"
	stop_pid "$pgbouncer_tls_pid"
	if [ "$pg_started" = 1 ]; then
		"${as_pg[@]}" "$PG_BINDIR/pg_ctl" -D "$work/pgdata" -m immediate -w -t 30 stop \
			>/dev/null 2>&1
	fi
	wait 2>/dev/null
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The file-descriptor limit for the poolers, pgbench and the idle-client tool.
want_nofile=30000
ulimit -Hn "$want_nofile" 2>/dev/null || true
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge "$want_nofile" ]; then
	ulimit -n "$want_nofile"
else
	ulimit -n "$hard"
fi
log "file descriptor limit $(ulimit -n)"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port nothing listens on, not one of the arguments.
# Below Linux's ephemeral range (32768 and up), where a port may be the local
# end of an outgoing connection, which port_open cannot see but bind fails on.
next_port=$((20000 + RANDOM % 10000))
free_port() {
	local p
	while :; do
		next_port=$((next_port + 1))
		p=$next_port
		case " $* " in *" $p "*) continue ;; esac
		port_open "$p" || { echo "$p"; return; }
	done
}

# ---- PostgreSQL ------------------------------------------------------------------

# A certificate for the TLS scenarios: both poolers offer TLS to the clients
# that ask, and PostgreSQL to the poolers' instances that ask.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/tls.key" -out "$work/tls.crt" \
	-days 2 -subj /CN=localhost >"$work/openssl.log" 2>&1 || die "openssl could not make a certificate"
chmod 600 "$work/tls.key"
[ "$is_root" = 1 ] && chown postgres: "$work"/tls.*

pg_port=$(free_port)
log "PostgreSQL $("$PG_BINDIR/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port"
"${as_pg[@]}" "$PG_BINDIR/initdb" -D "$work/pgdata" -U postgres -A trust -E UTF8 --no-sync \
	>"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; die "initdb failed"; }
cat >>"$work/pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$work'
max_connections = 300
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = md5
# For the scenarios with TLS on both sides; the other instances of the poolers
# keep their servers in the clear (server_tls_sslmode = disable).
ssl = on
ssl_cert_file = '$work/tls.crt'
ssl_key_file = '$work/tls.key'
EOF
cat >"$work/pgdata/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 md5
EOF
"${as_pg[@]}" "$PG_BINDIR/pg_ctl" -D "$work/pgdata" -l "$work/postgres.log" -w -t 60 start \
	>"$work/pg_ctl.log" 2>&1 || { cat "$work/postgres.log" >&2; die "PostgreSQL did not start"; }
pg_started=1

"$psql" -X -q -h "$work" -p "$pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
	-c "CREATE ROLE bench LOGIN PASSWORD '$password'" \
	-c "CREATE DATABASE bench OWNER bench" >&2
export PGPASSWORD=$password
# Every connection is in the clear unless a scenario asks for TLS (libpq's default, prefer,
# would encrypt wherever the poolers offer it).
export PGSSLMODE=disable
log "pgbench -i -s $scale"
"$pgbench" -i -s "$scale" -q -h 127.0.0.1 -p "$pg_port" -U bench bench \
	>"$work/pgbench-init.log" 2>&1 || { cat "$work/pgbench-init.log" >&2; die "pgbench -i failed"; }

# ---- the poolers -------------------------------------------------------------------

printf '"bench" "%s"\n' "$password" >"$work/userlist.txt"
pgbouncer_port=$(free_port "$pg_port")
sluice_port=$(free_port "$pg_port" "$pgbouncer_port")
pgbouncer_tls_port=$(free_port "$pg_port" "$pgbouncer_port" "$sluice_port")
sluice_tls_port=$(free_port "$pg_port" "$pgbouncer_port" "$sluice_port" "$pgbouncer_tls_port")
sluice_w2_port=$(free_port "$pg_port" "$pgbouncer_port" "$sluice_port" "$pgbouncer_tls_port" \
	"$sluice_tls_port")
sluice_uring_port=$(free_port "$pg_port" "$pgbouncer_port" "$sluice_port" "$pgbouncer_tls_port" \
	"$sluice_tls_port" "$sluice_w2_port")

# Writes the ini of pooler instance $1 (section name $2) listening on port $3,
# with server_tls_sslmode $4. The settings are the same for both poolers; only
# the section name and files differ.
write_ini() {
	cat >"$work/$1.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench

[$2]
listen_addr = 127.0.0.1
listen_port = $3
unix_socket_dir =
auth_type = md5
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = $pool_size
max_client_conn = $max_client_conn
log_connections = 0
log_disconnections = 0
logfile = $work/$1.log
client_tls_sslmode = allow
client_tls_key_file = $work/tls.key
client_tls_cert_file = $work/tls.crt
server_tls_sslmode = $4
EOF
}
write_ini pgbouncer pgbouncer "$pgbouncer_port" disable
write_ini sluice sluice "$sluice_port" disable
write_ini pgbouncer_tls pgbouncer "$pgbouncer_tls_port" require
write_ini sluice_tls sluice "$sluice_tls_port" require
# sluice with two event loops (workers = 2): the target sluice_w2, for the scaling column.
write_ini sluice_w2 sluice "$sluice_w2_port" disable
echo "workers = 2" >>"$work/sluice_w2.ini"
# sluice with its socket reads and writes batched through io_uring: the target sluice_uring.
write_ini sluice_uring sluice "$sluice_uring_port" disable
echo "io_uring = on" >>"$work/sluice_uring.ini"
[ "$is_root" = 1 ] && chown postgres: "$work"/*.ini "$work/userlist.txt" "$work"/tls.*
# Copied so that the user postgres can run it wherever the build is.
cp "$sluice_bin" "$work/sluice"
chmod 755 "$work/sluice"

# Starts pooler instance $1 (pgbouncer, sluice, pgbouncer_tls, sluice_tls) in
# the foreground of a background job; its PID goes in ${1}_pid. Waits until it
# accepts connections and logs in once (a warm-up that also checks the
# authentication set-up).
start_pooler() {
	local name=$1 port_var=${1}_port port pid i
	port=${!port_var}
	if [ "${name%_tls}" = pgbouncer ]; then
		"${as_pg[@]}" "$pgbouncer" "$work/$name.ini" >>"$work/$name.out" 2>&1 &
	else
		"${as_pg[@]}" "$work/sluice" "$work/$name.ini" >>"$work/$name.out" 2>&1 &
	fi
	pid=$!
	printf -v "${name}_pid" '%s' "$pid"
	for i in $(seq 100); do
		port_open "$port" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if ! kill -0 "$pid" 2>/dev/null || ! port_open "$port"; then
		tail -n 20 "$work/$name.out" "$work/$name.log" >&2 2>/dev/null || true
		die "$name did not start"
	fi
	timeout -k 5 60 "$psql" -X -q -At -h 127.0.0.1 -p "$port" -U bench -d bench -c 'SELECT 1' >/dev/null ||
		die "logging in through $name failed"
}

# Restarts pooler $1 if it has exited; the event goes to events.txt.
ensure_pooler() {
	local pid_var=${1}_pid
	local pid=${!pid_var}
	if ! kill -0 "$pid" 2>/dev/null; then
		local st=0
		wait "$pid" 2>/dev/null || st=$?
		echo "$(date +%T) $1 (pid $pid) had exited (wait status $st) before: $2; restarted" |
			tee -a "$out_dir/events.txt" >&2
		tail -n 20 "$work/$1.out" "$work/$1.log" >>"$out_dir/events.txt" 2>/dev/null || true
		start_pooler "$1"
	fi
}

start_pooler pgbouncer
start_pooler sluice
start_pooler pgbouncer_tls
start_pooler sluice_tls
start_pooler sluice_w2
start_pooler sluice_uring
log "PgBouncer pid $pgbouncer_pid on port $pgbouncer_port, sluice pid $sluice_pid on port $sluice_port"
log "with TLS to PostgreSQL: PgBouncer pid $pgbouncer_tls_pid, sluice pid $sluice_tls_pid"

clk_tck=$(getconf CLK_TCK)
# utime + stime of process $1 in clock ticks (fields 14 and 15 of /proc/PID/stat;
# the command name before them may hold spaces, so count after its ')').
# Both print NA when the process has gone.
cpu_ticks() {
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) || { echo NA; return 0; }
	echo "${st##*) }" | awk '{print $12 + $13}'
}
rss_kib() {
	local kib
	kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null) || kib=
	echo "${kib:-NA}"
}

# ---- memory with idle clients ----------------------------------------------------

idle_tool=$work/idle_clients
cc -O2 -Wall -I"$(pg_config --includedir)" -o "$idle_tool" "$bench_src/idle_clients.c" -lpq ||
	die "cannot compile idle_clients.c"

mem_tsv=$out_dir/memory.tsv
printf 'pooler\tclients\tlogged_in\tfailed\trss_idle_kib\trss_with_clients_kib\tkib_per_client\trss_after_kib\tnote\n' \
	>"$mem_tsv"
[ "${BENCH_MEMORY:-1}" = 0 ] && idle_specs=()
for pooler in pgbouncer sluice; do
	[ ${#idle_specs[@]} -eq 0 ] && break
	port_var=${pooler}_port
	pid_var=${pooler}_pid
	sleep 1
	rss_idle=$(rss_kib "${!pid_var}")
	for spec in "${idle_specs[@]}"; do
		IFS='|' read -r n sslmode <<<"$spec"
		label=$pooler
		[ "$sslmode" = require ] && label="$pooler TLS"
		log "memory: $label with $n idle clients"
		"$idle_tool" "host=127.0.0.1 port=${!port_var} user=bench dbname=bench password=$password sslmode=$sslmode" \
			"$n" >"$work/idle.out" 2>&1 &
		idle_pid=$!
		for i in $(seq 600); do
			grep -q '^ready' "$work/idle.out" && break
			kill -0 "$idle_pid" 2>/dev/null || break
			sleep 0.5
		done
		note=
		ok=0 failed=$n rss_n=NA per=NA
		if grep -q '^ready' "$work/idle.out"; then
			sleep 2
			ok=$(sed -n 's/^ready ok=\([0-9]*\).*/\1/p' "$work/idle.out")
			failed=$(sed -n 's/^ready .*failed=\([0-9]*\).*/\1/p' "$work/idle.out")
			note=$(sed -n 's/^first error: //p' "$work/idle.out" | cut -c1-200)
			if kill -0 "${!pid_var}" 2>/dev/null; then
				rss_n=$(rss_kib "${!pid_var}")
				[ "$ok" -gt 0 ] && per=$(awk -v a="$rss_n" -v b="$rss_idle" -v n="$ok" \
					'BEGIN {printf "%.2f", (a - b) / n}')
			else
				note="$pooler exited while holding idle clients"
			fi
		else
			note="idle_clients did not finish: $(tr '\n\t' '  ' <"$work/idle.out" | cut -c1-200)"
		fi
		stop_pid "$idle_pid"
		wait "$idle_pid" 2>/dev/null || true
		idle_pid=
		sleep 3
		rss_after=NA
		kill -0 "${!pid_var}" 2>/dev/null && rss_after=$(rss_kib "${!pid_var}")
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$n" "$ok" "$failed" \
			"$rss_idle" "$rss_n" "$per" "$rss_after" "$note" >>"$mem_tsv"
		ensure_pooler "$pooler" "memory test with $n idle clients"
	done
done

# ---- pgbench scenarios ---------------------------------------------------------------

# name | pgbench options | targets (direct n/a where PostgreSQL cannot take the clients)
# | sslmode of the clients (default disable; the _tls scenarios encrypt client to pooler;
# both: require, to the poolers' instances whose servers are TLS too, the _tls2 scenarios)
scenarios=(
	"select_simple_c50|-S -M simple -c 50 -j 2|direct pgbouncer sluice sluice_uring sluice_w2"
	"select_connect_c20|-S -M simple -C -c 20 -j 2|direct pgbouncer sluice sluice_uring"
	"tpcb_c50|-M simple -c 50 -j 2|direct pgbouncer sluice sluice_uring sluice_w2"
	"select_extended_c50|-S -M extended -c 50 -j 2|direct pgbouncer sluice sluice_uring"
	"select_simple_c1000|-S -M simple -c 1000 -j 2|pgbouncer sluice sluice_uring"
	"select_prepared_c50|-S -M prepared -c 50 -j 2|direct sluice sluice_uring"
	"select_simple_tls_c50|-S -M simple -c 50 -j 2|pgbouncer sluice|require"
	"select_connect_tls_c20|-S -M simple -C -c 20 -j 2|pgbouncer sluice|require"
	"tpcb_tls_c50|-M simple -c 50 -j 2|pgbouncer sluice|require"
	"select_simple_tls2_c50|-S -M simple -c 50 -j 2|pgbouncer sluice|both"
	"tpcb_tls2_c50|-M simple -c 50 -j 2|pgbouncer sluice|both"
	"select1_c200|-M simple -c 200 -j 2 -f @SELECT1@|pgbouncer sluice sluice_uring sluice_w2"
)
# select1_c200 isolates the pooler: 200 clients queue for the pool's 20 servers
# with a statement PostgreSQL answers at once (SELECT 1), so the pooler's own
# work per transaction (queueing, linking, relaying) is most of the cost.
# sluice_uring is sluice with io_uring = on (one worker), so that a run compares
# the plain system calls with the batched ones on the same machine and load.
# sluice_w2 is sluice with workers = 2; PostgreSQL and pgbench share the same
# CPUs, so its scaling over sluice is what is left after them.
printf 'SELECT 1;\n' >"$work/select1.sql"

runs_tsv=$out_dir/runs.tsv
printf 'round\tscenario\ttarget\texit\ttps\tlat_avg_ms\tlat_p99_ms\ttransactions\tfailed\tcpu_us_per_txn\tnote\tlat_p50_ms\tclient_spread\n' \
	>"$runs_tsv"
mkdir -p "$work/txlog" "$out_dir/pgbench"

# Runs scenario $2 ($3 = options) against target $4 in round $1, with libpq's
# sslmode $5 (both: require, to the pooler's instance with TLS to PostgreSQL);
# appends a row.
run_one() {
	local round=$1 scen=$2 opts=$3 target=$4 sslmode=${5:-disable} port pid= inst
	inst=$target
	if [ "$sslmode" = both ]; then
		sslmode=require
		inst=${target}_tls
	fi
	case "$target" in
	direct) port=$pg_port ;;
	*)
		local port_var=${inst}_port pid_var=${inst}_pid
		port=${!port_var}
		pid=${!pid_var}
		;;
	esac
	opts=${opts//@SELECT1@/$work/select1.sql}
	local out=$out_dir/pgbench/r${round}_${scen}_${target}.txt
	local prefix=$work/txlog/tx
	rm -f "$work"/txlog/*
	log "round $round: $scen -> $target"
	local cpu0=0 cpu1=0 rc=0
	[ -n "$pid" ] && cpu0=$(cpu_ticks "$pid")
	# shellcheck disable=SC2086 # $opts is a list of options
	PGSSLMODE=$sslmode timeout -k 5 $((duration * 3 + 60)) "$pgbench" -n $opts -T "$duration" \
		-h 127.0.0.1 -p "$port" -U bench --log --log-prefix="$prefix" bench \
		>"$out" 2>&1 &
	pgbench_pid=$!
	wait "$pgbench_pid" || rc=$?
	pgbench_pid=
	if [ -n "$pid" ]; then
		cpu1=NA
		kill -0 "$pid" 2>/dev/null && cpu1=$(cpu_ticks "$pid")
	fi

	local tps txns failed lat_avg=NA lat_p50=NA lat_p99=NA cpu=NA note=
	tps=$(awk '/^tps = / {print $3; exit}' "$out")
	txns=$(awk -F': ' '/^number of transactions actually processed/ {split($2, a, "/"); print a[1]; exit}' "$out")
	failed=$(awk -F': ' '/^number of failed transactions/ {split($2, a, " "); print a[1]; exit}' "$out")
	: "${tps:=NA}" "${txns:=0}" "${failed:=0}"
	# Latency per transaction in µs is the third column of pgbench's log;
	# "failed" or "skipped" rows are not latencies.
	cat "$work"/txlog/tx.* 2>/dev/null | awk '$3 ~ /^[0-9]+$/ {print $3}' | sort -n \
		>"$work/lat.sorted" || true
	local n
	n=$(wc -l <"$work/lat.sorted")
	if [ "$n" -gt 0 ]; then
		lat_avg=$(awk '{s += $1} END {printf "%.3f", s / NR / 1000}' "$work/lat.sorted")
		local k=$(((n * 99 + 99) / 100))
		lat_p99=$(awk -v k="$k" 'NR == k {printf "%.3f", $1 / 1000; exit}' "$work/lat.sorted")
		lat_p50=$(awk -v k=$(((n + 1) / 2)) 'NR == k {printf "%.3f", $1 / 1000; exit}' "$work/lat.sorted")
	fi
	# Fairness: each client's mean latency; the slowest client's over the fastest's.
	local spread
	spread=$(cat "$work"/txlog/tx.* 2>/dev/null | awk '$3 ~ /^[0-9]+$/ {s[$1] += $3; n[$1]++}
		END {lo = -1; hi = 0
			for (c in s) { m = s[c] / n[c]; if (lo < 0 || m < lo) lo = m; if (m > hi) hi = m }
			if (lo > 0) printf "%.2f", hi / lo; else print "NA"}')
	if [ -n "$pid" ] && [ "$cpu0" != NA ] && [ "$cpu1" != NA ] && [ "$txns" -gt 0 ]; then
		cpu=$(awk -v d=$((cpu1 - cpu0)) -v t="$clk_tck" -v n="$txns" \
			'BEGIN {printf "%.2f", d * 1e6 / t / n}')
	fi
	if [ "$rc" -ne 0 ] || [ "$failed" != 0 ]; then
		note=$(grep -m1 -iE 'error|abort|fatal|could not|timeout' "$out" | tr '\t' ' ' | cut -c1-240 || true)
		# pgbench counts a client that aborts on an error apart from failed transactions.
		local aborted
		aborted=$(grep -cE '^pgbench: error: client [0-9]+ .*aborted' "$out" || true)
		[ "$aborted" -gt 0 ] && note="$aborted client(s) aborted, first error: $note"
		[ "$rc" -eq 124 ] && note="pgbench killed after $((duration * 3 + 60)) s (hang); $note"
	fi
	[ "$cpu1" = NA ] && note="$target exited during the run; $note"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$scen" "$target" "$rc" \
		"$tps" "$lat_avg" "$lat_p99" "$txns" "$failed" "$cpu" "$note" "$lat_p50" "$spread" >>"$runs_tsv"
	[ -n "$pid" ] && ensure_pooler "$inst" "round $round $scen"
	sleep 1
}

for round in $(seq "$rounds"); do
	for s in "${scenarios[@]}"; do
		IFS='|' read -r scen opts targets sslmode <<<"$s"
		[[ "$scen" =~ ${BENCH_SCENARIOS:-.} ]] || continue
		read -ra tl <<<"$targets"
		# Rotate the order of the targets by one each round.
		cnt=${#tl[@]}
		for i in $(seq 0 $((cnt - 1))); do
			run_one "$round" "$scen" "$opts" "${tl[$(((i + round - 1) % cnt))]}" "$sslmode"
		done
	done
done

# ---- counts: instructions and syscalls per transaction ----------------------------

# Figures that do not move with the machine's noise, for each pooler over a
# fixed number of transactions (pgbench -t, after a warm-up with the same
# options, so that the pool's servers are logged in already):
#
# * user-space instructions (callgrind's Ir, the pooler's code and the
#   libraries it calls) of a second instance of each pooler, with the same
#   settings on a port of its own, run under valgrind --tool=callgrind for the
#   whole phase. Method: after the warm-up the counters are zeroed
#   (callgrind_control -z), the measured run goes through, and a dump
#   (callgrind_control -d) holds exactly what the pooler did in between; its
#   summary: line is the count. Chosen over subtracting two runs of a fresh
#   pooler (start + warm-up, then start + warm-up + run) because it is exact
#   (nothing of start-up, warm-up or shutdown leaks in, no difference of two
#   noisy totals) and needs one instance per pooler. callgrind_control talks
#   to the valgrind gdbserver through vgdb, which must run as the same user
#   as the pooler: run as root against a pooler run as postgres it waits
#   forever (the valgrind side never answers), so it runs as_pg, and under
#   timeout like every command here. vgdb wakes a pooler blocked in
#   epoll_wait with ptrace, so ptrace must be allowed (kernel.yama.ptrace_scope
#   0, or root); its FIFOs go to the temporary directory (--vgdb-prefix).
#   PgBouncer runs in the foreground (no -d), its log in pgbouncer_cg.log.
# * syscalls: strace -f -c attached to the timed instance (not under valgrind)
#   for a measured run of its own, then stopped with SIGINT; the total line's
#   calls.
#
# Both include what the measured run's own clients cost to log in and out
# (50 logins over 5,000 transactions in the select scenarios; for -C the
# logins are what is measured), not the servers' logins.

# Scenarios of the counts phase: names of the table above, with their options
# and targets (direct is never counted).
counts_scenarios=(select_simple_c50 select_extended_c50 select_prepared_c50 select_connect_c20 tpcb_c50)
counts_txns=${BENCH_COUNTS_TXNS:-100}
counts_warm=5
counts_repeat=${BENCH_COUNTS_REPEAT:-3}
if [ "$smoke" = 1 ]; then
	counts_txns=${BENCH_COUNTS_TXNS:-5}
	counts_warm=2
	counts_repeat=${BENCH_COUNTS_REPEAT:-1}
fi
counts_tsv=$out_dir/counts.tsv
counts_md=$out_dir/counts.md
counts_seconds=
# Limits: a pgbench run against a pooler under callgrind (about 50x slower),
# one against the timed instance, a callgrind_control call, the pooler under
# valgrind as a whole.
counts_pgbench_limit=900
counts_strace_limit=600
counts_ctl_limit=60
cg_limit=7200

# Options and targets of scenario $1, from the scenarios table: sets
# counts_opts and counts_targets; fails when there is no such scenario.
counts_lookup() {
	local s scen opts targets sslmode
	for s in "${scenarios[@]}"; do
		IFS='|' read -r scen opts targets sslmode <<<"$s"
		if [ "$scen" = "$1" ]; then
			counts_opts=${opts//@SELECT1@/$work/select1.sql}
			counts_targets=$targets
			return 0
		fi
	done
	return 1
}

# Runs pgbench with options $3 and -t $4 against port $2 within $5 seconds,
# output to $1. Sets cp_rc (pgbench's exit status, 124 when it was killed)
# and cp_txns (transactions processed, 0 when unknown).
counts_pgbench() {
	local out=$1 port=$2 opts=$3 t=$4 limit=$5
	cp_rc=0
	# shellcheck disable=SC2086 # $opts is a list of options
	timeout -k 10 "$limit" "$pgbench" -n $opts -t "$t" -h 127.0.0.1 -p "$port" -U bench bench \
		>"$out" 2>&1 &
	pgbench_pid=$!
	wait "$pgbench_pid" || cp_rc=$?
	pgbench_pid=
	cp_txns=$(awk -F': ' '/^number of transactions actually processed/ {split($2, a, "/"); print a[1]; exit}' "$out")
	: "${cp_txns:=0}"
}

# What went wrong in a pgbench run (cp_rc, output $1, expected transactions $2),
# for the note column; empty when nothing did.
counts_pgbench_note() {
	local what=$3
	if [ "$cp_rc" -eq 124 ] || [ "$cp_rc" -eq 137 ]; then
		echo "$what: pgbench killed after its time limit (hang)"
	elif [ "$cp_rc" -ne 0 ] || [ "$cp_txns" != "$2" ]; then
		echo "$what: pgbench exit $cp_rc, $cp_txns of $2 transactions: $(grep -m1 -iE 'error|abort|fatal|could not' "$1" |
			tr '\t' ' ' | cut -c1-160)"
	fi
}

# Sends command $2 (-z, -d) to the callgrind instance of pooler $1 (PID cg_pid)
# with callgrind_control, as the pooler's user; fails unless it answers OK.
cg_control() {
	local out=$work/cg/control.out
	timeout -k 5 "$counts_ctl_limit" "${as_pg[@]}" callgrind_control \
		"--vgdb-prefix=$work/vgdb/$1" "$2" "$cg_pid" >"$out" 2>&1 || true
	cat "$out" >>"$work/${1}_cg.out"
	grep -q 'OK' "$out"
}

# Starts the callgrind instance of pooler $1 (pgbouncer, sluice, sluice_uring): cg_pid,
# cg_wrap_pid, on port cg_port. Fails (with the log's tail in cg_note) when it
# does not start or take a login within two minutes.
cg_start() {
	local name=$1 bin i
	cg_port=$(free_port "$pg_port" "$pgbouncer_port" "$sluice_port" "$pgbouncer_tls_port" "$sluice_tls_port")
	write_ini "${name}_cg" "${name%_uring}" "$cg_port" disable
	[ "$name" = sluice_uring ] && echo "io_uring = on" >>"$work/${name}_cg.ini"
	[ "$is_root" = 1 ] && chown postgres: "$work/${name}_cg.ini"
	bin=$work/sluice
	[ "$name" = pgbouncer ] && bin=$pgbouncer
	# Not daemonized: PgBouncer stays in the foreground without -d.
	timeout -k 10 "$cg_limit" "${as_pg[@]}" valgrind --tool=callgrind --vgdb=yes \
		"--vgdb-prefix=$work/vgdb/$name" "--callgrind-out-file=$work/cg/$name.out" \
		"$bin" "$work/${name}_cg.ini" >>"$work/${name}_cg.out" 2>&1 &
	cg_wrap_pid=$!
	cg_pid=
	# setpriv and valgrind exec, so timeout's one child is the pooler under valgrind.
	for i in $(seq 1200); do
		[ -n "$cg_pid" ] || cg_pid=$(timeout 5 pgrep -P "$cg_wrap_pid" || true)
		[ -n "$cg_pid" ] && port_open "$cg_port" && break
		kill -0 "$cg_wrap_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$cg_pid" ] || ! port_open "$cg_port" ||
		! timeout -k 5 120 "$psql" -X -q -At -h 127.0.0.1 -p "$cg_port" -U bench -d bench \
			-c 'SELECT 1' >/dev/null 2>&1; then
		cg_note="$name under callgrind did not start: $(tail -n 3 "$work/${name}_cg.out" "$work/${name}_cg.log" \
			2>/dev/null | tr '\t\n' '  ' | cut -c1-200)"
		cg_stop
		return 1
	fi
	return 0
}

# Stops the callgrind instance, if any.
cg_stop() {
	stop_pid "$cg_pid"
	stop_pid "$cg_wrap_pid"
	wait "$cg_wrap_pid" 2>/dev/null || true
	cg_pid=
	cg_wrap_pid=
}

# The instructions of scenario $1 (options $2) through the callgrind instance
# of pooler $3, repetition $4 (the first warms up): sets cg_txns, cg_ir and
# cg_note; cg_skip=1 when the next repetitions would fail the same way.
cg_measure() {
	local scen=$1 opts=$2 name=$3 rep=$4 out=$out_dir/counts/${1}_${3}
	local expect before f dump=
	cg_txns=0 cg_ir=NA cg_note='' cg_skip=0
	if [ "$rep" = 1 ]; then
		counts_pgbench "$out.callgrind-warmup.txt" "$cg_port" "$opts" "$counts_warm" "$counts_pgbench_limit"
		cg_note=$(counts_pgbench_note "$out.callgrind-warmup.txt" \
			$((counts_warm * counts_clients)) "callgrind warm-up")
		[ -z "$cg_note" ] || { cg_skip=1; return 0; }
	fi
	if ! cg_control "$name" -z; then
		cg_note="callgrind_control -z failed: $(tail -n 2 "$work/cg/control.out" | tr '\n' ' ')"
		cg_skip=1
		return 0
	fi
	expect=$((counts_txns * counts_clients))
	counts_pgbench "$out.callgrind.r$rep.txt" "$cg_port" "$opts" "$counts_txns" "$counts_pgbench_limit"
	cg_txns=$cp_txns
	cg_note=$(counts_pgbench_note "$out.callgrind.r$rep.txt" "$expect" "callgrind run")
	before=$(cd "$work/cg" && echo ./*)
	if ! cg_control "$name" -d; then
		cg_note="callgrind_control -d failed: $(tail -n 2 "$work/cg/control.out" | tr '\n' ' ')"
		cg_skip=1
		return 0
	fi
	for f in "$work/cg/$name.out".*; do
		case " $before " in *" ./${f##*/} "*) ;; *) dump=$f ;; esac
	done
	if [ -z "$dump" ]; then
		cg_note="no callgrind dump appeared; $cg_note"
		return 0
	fi
	cg_ir=$(awk '/^summary:/ {print $2; found = 1; exit} /^totals:/ {t = $2} END {if (!found && t != "") print t}' "$dump")
	: "${cg_ir:=NA}"
	mv "$dump" "$out.callgrind.r$rep.out"
}

# The syscalls of scenario $1 (options $2) through the timed instance of
# pooler $3, repetition $4 (the first warms up): sets st_txns, st_calls and
# st_note; st_skip=1 when the next repetitions would fail the same way.
st_measure() {
	local scen=$1 opts=$2 name=$3 rep=$4 out=$out_dir/counts/${1}_${3}
	local pid_var=${3}_pid port_var=${3}_port pid i expect
	st_txns=0 st_calls=NA st_note='' st_skip=0
	ensure_pooler "$name" "counts phase, $scen"
	pid=${!pid_var}
	if [ "$rep" = 1 ]; then
		counts_pgbench "$out.strace-warmup.txt" "${!port_var}" "$opts" "$counts_warm" "$counts_strace_limit"
		st_note=$(counts_pgbench_note "$out.strace-warmup.txt" $((counts_warm * counts_clients)) "strace warm-up")
		[ -z "$st_note" ] || { st_skip=1; return 0; }
	fi
	rm -f "$work/strace.out" "$work/strace.err"
	timeout -k 5 $((counts_strace_limit + 60)) strace -f -c -o "$work/strace.out" -p "$pid" \
		2>"$work/strace.err" &
	strace_pid=$!
	# strace says "Process N attached" (with -f: "attached with K threads")
	# once it has attached to all of the pooler's threads.
	for i in $(seq 100); do
		grep -q ' attached' "$work/strace.err" 2>/dev/null && break
		kill -0 "$strace_pid" 2>/dev/null || break
		sleep 0.1
	done
	if ! kill -0 "$strace_pid" 2>/dev/null; then
		st_note="strace could not attach: $(head -n 2 "$work/strace.err" | tr '\n' ' ')"
		st_skip=1
		wait "$strace_pid" 2>/dev/null || true
		strace_pid=
		return 0
	fi
	expect=$((counts_txns * counts_clients))
	counts_pgbench "$out.strace.r$rep.txt" "${!port_var}" "$opts" "$counts_txns" "$counts_strace_limit"
	st_txns=$cp_txns
	st_note=$(counts_pgbench_note "$out.strace.r$rep.txt" "$expect" "strace run")
	# timeout passes the SIGINT on to strace, which detaches and writes its table.
	kill -INT "$strace_pid" 2>/dev/null || true
	for i in $(seq 300); do
		kill -0 "$strace_pid" 2>/dev/null || break
		sleep 0.1
	done
	stop_pid "$strace_pid"
	wait "$strace_pid" 2>/dev/null || true
	strace_pid=
	st_calls=$(awk '$NF == "total" {print $4; exit}' "$work/strace.out" 2>/dev/null || true)
	: "${st_calls:=NA}"
	[ "$st_calls" = NA ] && st_note="no strace table; $st_note"
	cp "$work/strace.out" "$out.strace.r$rep.out" 2>/dev/null || true
}

# Appends note $2 to the notes of key $1, once.
counts_add_note() {
	[ -n "$2" ] || return 0
	case "; ${cnt_note[$1]:-}; " in *"; $2; "*) return 0 ;; esac
	cnt_note[$1]="${cnt_note[$1]:+${cnt_note[$1]}; }$2"
}

if [ "${BENCH_COUNTS:-1}" != 0 ]; then
	counts_start=$(date +%s)
	mkdir -p "$out_dir/counts" "$work/cg" "$work/vgdb"
	[ "$is_root" = 1 ] && chown postgres: "$work/cg" "$work/vgdb"
	printf 'scenario\tpooler\trepetition\tclients\ttxns_callgrind\tinstructions\tinstr_per_txn\ttxns_strace\tsyscalls\tsyscalls_per_txn\tnote\n' \
		>"$counts_tsv"
	declare -A cnt_cg_txns=() cnt_cg_ir=() cnt_st_txns=() cnt_st_calls=() cnt_note=()
	counts_list=()
	for scen in "${counts_scenarios[@]}"; do
		[[ "$scen" =~ ${BENCH_SCENARIOS:-.} ]] || continue
		counts_lookup "$scen" || die "counts phase: no scenario $scen in the table"
		counts_list+=("$scen")
	done
	# Instructions: one callgrind instance per pooler, for all the scenarios.
	for name in pgbouncer sluice sluice_uring; do
		[ ${#counts_list[@]} -eq 0 ] && break
		cg_up=0 cg_skip=0
		for scen in "${counts_list[@]}"; do
			counts_lookup "$scen"
			[[ " $counts_targets " == *" $name "* ]] || continue
			counts_clients=$(sed -n 's/.*-c \([0-9]*\).*/\1/p' <<<"$counts_opts")
			if [ "$cg_up" = 0 ]; then
				log "counts: starting $name under callgrind"
				cg_note=
				if cg_start "$name"; then
					cg_up=1
				else
					cg_up=failed
					log "counts: $cg_note"
				fi
			fi
			for rep in $(seq "$counts_repeat"); do
				cg_txns=0 cg_ir=NA
				if [ "$cg_up" = 1 ]; then
					log "counts: $scen -> $name under callgrind, -t $counts_txns, $rep/$counts_repeat"
					cg_measure "$scen" "$counts_opts" "$name" "$rep"
					if ! kill -0 "$cg_pid" 2>/dev/null; then
						cg_note="$name under callgrind exited; $cg_note"
						cg_stop
						cg_up=0
					fi
				fi
				cnt_cg_txns[$scen|$name|$rep]=$cg_txns
				cnt_cg_ir[$scen|$name|$rep]=$cg_ir
				counts_add_note "$scen|$name" "$cg_note"
				if [ "$cg_up" != 1 ] || [ "$cg_skip" = 1 ]; then
					break
				fi
			done
		done
		[ "$cg_up" = 1 ] && cg_stop
	done
	# Syscalls: strace on the timed instances.
	for scen in "${counts_list[@]}"; do
		counts_lookup "$scen"
		counts_clients=$(sed -n 's/.*-c \([0-9]*\).*/\1/p' <<<"$counts_opts")
		for name in pgbouncer sluice sluice_uring; do
			[[ " $counts_targets " == *" $name "* ]] || continue
			for rep in $(seq "$counts_repeat"); do
				log "counts: $scen -> $name under strace, -t $counts_txns, $rep/$counts_repeat"
				st_measure "$scen" "$counts_opts" "$name" "$rep"
				cnt_st_txns[$scen|$name|$rep]=$st_txns
				cnt_st_calls[$scen|$name|$rep]=$st_calls
				counts_add_note "$scen|$name" "$st_note"
				if [ "$st_skip" = 1 ]; then
					break
				fi
			done
		done
	done
	for scen in "${counts_list[@]}"; do
		counts_lookup "$scen"
		counts_clients=$(sed -n 's/.*-c \([0-9]*\).*/\1/p' <<<"$counts_opts")
		for name in pgbouncer sluice sluice_uring; do
			if [[ " $counts_targets " != *" $name "* ]]; then
				printf '%s\t%s\t\t%s\t\t\t\t\t\t\tnot run (not a target of %s in the scenarios table)\n' \
					"$scen" "$name" "$counts_clients" "$scen" >>"$counts_tsv"
				continue
			fi
			for rep in $(seq "$counts_repeat"); do
				k="$scen|$name|$rep"
				awk -v s="$scen" -v p="$name" -v r="$rep" -v c="$counts_clients" \
					-v ct="${cnt_cg_txns[$k]:-0}" -v ir="${cnt_cg_ir[$k]:-NA}" \
					-v st="${cnt_st_txns[$k]:-0}" -v sc="${cnt_st_calls[$k]:-NA}" \
					-v note="${cnt_note[$scen|$name]:-}" 'BEGIN {
					ipt = (ir != "NA" && ct > 0) ? sprintf("%.0f", ir / ct) : "NA"
					spt = (sc != "NA" && st > 0) ? sprintf("%.2f", sc / st) : "NA"
					printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s, p, r, c, ct, ir, ipt, st, sc, spt, note
				}' >>"$counts_tsv"
			done
		done
	done
	counts_seconds=$(($(date +%s) - counts_start))
	log "counts phase took $counts_seconds s"
	{
		echo "## Instructions and syscalls per transaction"
		echo
		echo "Each pooler over pgbench -t $counts_txns per client, $counts_repeat time(s), after a warm-up of -t $counts_warm"
		echo "with the same options (the pool's servers logged in already); the run's own client logins are"
		echo "included. Instructions: user space, callgrind's Ir, of an instance under valgrind --tool=callgrind"
		echo "(counters zeroed before each run, dumped after it). Syscalls: strace -f -c attached to the timed"
		echo "instance for runs of their own. Medians, and the range over the runs: how many events each"
		echo "wake-up finds still moves the figures a little. The counts phase took $counts_seconds s."
		echo
		echo "| scenario | pooler | transactions | instructions/txn | range | syscalls/txn | range | sluice/PgBouncer instructions | sluice/PgBouncer syscalls | note |"
		echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
		tail -n +2 "$counts_tsv" | awk -F'\t' '
		function ratio(a, b) { return (a == "n/a" || b == "n/a" || b == "" || b + 0 == 0) ? "n/a" : sprintf("%.2f", a / b) }
		function commas(x,    s) {
			if (x !~ /^[0-9]+$/) return x
			s = ""
			while (length(x) > 3) { s = "," substr(x, length(x) - 2) s; x = substr(x, 1, length(x) - 3) }
			return x s
		}
		# Median, min and max of a space-separated list (m, lo, hi); m = "n/a" when empty.
		function stats(list,    v, n, i, j, t) {
			n = split(list, v, " ")
			if (n == 0) { m = lo = hi = "n/a"; return }
			for (i = 2; i <= n; i++)
				for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
			m = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
			lo = v[1]; hi = v[n]
		}
		{
			key = $1 SUBSEP $2
			if (!(key in seen)) { seen[key] = 1; order[++nk] = key; note[key] = $11 }
			if ($5 == "" && $8 == "") { notrun[key] = 1; next }
			tx[key] = tx[key] == "" ? $5 "/" $8 : tx[key]
			if ($7 != "NA") ipt[key] = ipt[key] " " $7
			if ($10 != "NA") spt[key] = spt[key] " " $10
		}
		END {
			for (i = 1; i <= nk; i++) {
				key = order[i]
				stats(ipt[key]); im[key] = m; ilo[key] = lo; ihi[key] = hi
				stats(spt[key]); sm[key] = m; slo[key] = lo; shi[key] = hi
			}
			for (i = 1; i <= nk; i++) {
				key = order[i]
				split(key, kk, SUBSEP)
				if (key in notrun) {
					printf "| %s | %s | n/a | n/a | | n/a | | | | %s |\n", kk[1], kk[2], note[key]
					continue
				}
				split(tx[key], t, "/")
				txs = t[1] == t[2] ? commas(t[1]) : commas(t[1]) " / " commas(t[2])
				r1 = r2 = ""
				if (kk[2] == "sluice" || kk[2] == "sluice_uring") {
					pk = kk[1] SUBSEP "pgbouncer"
					r1 = (pk in notrun) ? "n/a" : ratio(im[key], im[pk])
					r2 = (pk in notrun) ? "n/a" : ratio(sm[key], sm[pk])
				}
				printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", kk[1], kk[2], txs,
					im[key] == "n/a" ? "n/a" : commas(sprintf("%.0f", im[key])),
					ilo[key] == ihi[key] ? "" : commas(ilo[key]) "–" commas(ihi[key]),
					sm[key] == "n/a" ? "n/a" : sprintf("%.2f", sm[key]),
					slo[key] == shi[key] ? "" : slo[key] "–" shi[key], r1, r2, note[key]
			}
		}'
	} >"$counts_md"
fi

# ---- summary ---------------------------------------------------------------------

summary=$out_dir/summary.md
{
	echo "## Throughput and latency (medians over $rounds round(s) of ${duration} s)"
	echo
	echo "pgbench against scale-$scale data on 127.0.0.1; pool size $pool_size, transaction mode."
	echo "CPU is the pooler process's user+system time per transaction. n/a: not applicable."
	echo
	echo "Client spread: the slowest client's mean latency over the fastest's (1.00 = all served alike)."
	echo
	echo "| scenario | target | TPS | avg ms | p50 ms | p99 ms | p99/p50 | client spread | CPU µs/txn | runs ok | failed txns | sluice/PgBouncer TPS | sluice/direct TPS | sluice/PgBouncer CPU | workers=2/workers=1 TPS |"
	echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	tail -n +2 "$runs_tsv" | awk -F'\t' '
	function median(list,    v, n, i, j, t) {
		n = split(list, v, " ")
		if (n == 0) return "n/a"
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
		return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
	}
	function fmt(x, f) { return x == "n/a" ? x : sprintf(f, x) }
	function add(k, x) { if (x != "NA" && x != "") vals[k] = vals[k] " " x }
	function ratio(a, b) { return (a == "n/a" || b == "n/a" || b + 0 == 0) ? "n/a" : sprintf("%.2f", a / b) }
	{
		key = $2 SUBSEP $3
		if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
		if (!($2 in sseen)) { sseen[$2] = 1; sorder[++ns] = $2 }
		add("tps" SUBSEP key, $4 == 0 ? $5 : "NA")
		add("avg" SUBSEP key, $6); add("p99" SUBSEP key, $7); add("cpu" SUBSEP key, $10)
		add("p50" SUBSEP key, $12); add("spread" SUBSEP key, $13)
		runs[key]++; if ($4 == 0 && $9 == 0 && $8 > 0) ok[key]++
		failed[key] += $9
	}
	END {
		for (i = 1; i <= nk; i++) {
			split(order[i], kk, SUBSEP)
			for (m = 1; m <= 6; m++) {
				name = m == 1 ? "tps" : m == 2 ? "avg" : m == 3 ? "p99" : m == 4 ? "cpu" : m == 5 ? "p50" : "spread"
				med[name, order[i]] = median(vals[name SUBSEP order[i]])
			}
		}
		targets = "direct pgbouncer sluice sluice_uring sluice_w2"
		nt = split(targets, tgt, " ")
		for (s = 1; s <= ns; s++) {
			sc = sorder[s]
			for (t = 1; t <= nt; t++) {
				key = sc SUBSEP tgt[t]
				r1 = r2 = r3 = r4 = ""
				if (tgt[t] == "sluice" || tgt[t] == "sluice_uring" || tgt[t] == "sluice_w2") {
					r1 = ratio(med["tps", key], med["tps", sc SUBSEP "pgbouncer"])
					r2 = ratio(med["tps", key], med["tps", sc SUBSEP "direct"])
					r3 = ratio(med["cpu", key], med["cpu", sc SUBSEP "pgbouncer"])
				}
				if (tgt[t] == "sluice_w2")
					r4 = ratio(med["tps", key], med["tps", sc SUBSEP "sluice"])
				if (!(key in seen)) {
					if (tgt[t] != "sluice_w2" && tgt[t] != "sluice_uring")
						printf "| %s | %s | n/a | n/a | n/a | n/a | n/a | n/a | n/a | not run | | | | | |\n", sc, tgt[t]
					continue
				}
				printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d | %d | %s | %s | %s | %s |\n", sc, tgt[t],
					fmt(med["tps", key], "%.1f"), fmt(med["avg", key], "%.2f"),
					fmt(med["p50", key], "%.2f"), fmt(med["p99", key], "%.2f"),
					ratio(med["p99", key], med["p50", key]), fmt(med["spread", key], "%.2f"),
					tgt[t] == "direct" ? "n/a" : fmt(med["cpu", key], "%.1f"),
					ok[key], runs[key], failed[key], r1, r2, r3, r4
			}
		}
	}'
	echo
	echo "## Memory with idle logged-in clients"
	echo
	echo "| pooler | clients | logged in | failed | RSS idle KiB | RSS with clients KiB | KiB per client | RSS after KiB | note |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
	tail -n +2 "$mem_tsv" | awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}'
	notes=$(awk -F'\t' 'NR > 1 && $11 != "" {printf "* round %s, %s, %s: exit %s, %s failed transactions: %s\n", $1, $2, $3, $4, $9, $11}' "$runs_tsv")
	if [ -n "$notes" ]; then
		echo
		echo "## Errors"
		echo
		echo "$notes"
	fi
	if [ -f "$counts_md" ]; then
		echo
		cat "$counts_md"
	fi
	if [ -f "$out_dir/events.txt" ]; then
		echo
		echo "## Pooler restarts"
		echo
		echo '```'
		cat "$out_dir/events.txt"
		echo '```'
	fi
} >"$summary"

cat >"$out_dir/machine.txt" <<EOF
date: $(date -u '+%Y-%m-%d %H:%M UTC')
command: test/bench/bench.sh $([ "$smoke" = 1 ] && echo --smoke) --rounds $rounds --duration $duration
nproc: $(nproc)
cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
kernel: $(uname -r)
PostgreSQL: $("$PG_BINDIR/postgres" --version)
pgbench: $("$pgbench" --version)
PgBouncer: $("$pgbouncer" --version | head -n1)
sluice: $("$sluice_bin" --version | sed -n 2p) ($tree_state)
valgrind: $(valgrind --version 2>/dev/null || echo none)
strace: $(strace -V 2>/dev/null | head -n1 || echo none)
load average at start: $load_start
load average at end: $(cut -d' ' -f1-3 /proc/loadavg)
EOF
cp "$work"/*.ini "$out_dir/"
cp "$work"/*.log "$out_dir/" 2>/dev/null || true

cat "$summary"
echo
if [ -f "$counts_md" ]; then
	log "results in $out_dir: summary.md, runs.tsv, memory.tsv, counts.tsv, counts.md, machine.txt, pgbench/, counts/"
else
	log "results in $out_dir: summary.md, runs.tsv, memory.tsv, machine.txt, pgbench/"
fi
