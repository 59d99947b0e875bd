#!/usr/bin/env bash
# setup.sh - installs the packages sluice needs, from Debian's archive with
# apt-get. Idempotent: when dpkg says everything is installed already it does
# nothing (no apt-get update, no network).
#
# Usage: setup.sh [--run]
#   --run   only what building and running need: the build packages and a
#           PostgreSQL server (scripts/demo.sh); no test packages, no npm.
#   (none)  everything the test suites need too (scripts/test.sh).
#
# Packages are installed without their recommended extras
# (--no-install-recommends), and no service they would start is started:
# a policy-rc.d refuses the starts during the installation, and the services
# of packages installed here are disabled afterwards on a systemd machine
# (PostgreSQL, Prometheus and the pgbouncer exporter ship enabled units; the
# test harness and the demo start their own processes instead).
#
# It owns the list of dependencies; meson.build finds them with pkg-config.
# It does not configure or build anything (scripts/test.sh does).
set -euo pipefail

mode=test
case "${1:-}" in
--run) mode=run ;;
"") ;;
*)
	echo "usage: setup.sh [--run]" >&2
	exit 2
	;;
esac

# Build: compiler, meson, and the libraries meson.build asks pkg-config for;
# scdoc makes the man pages from doc/'s markdown (doc/md2man.py).
# libsystemd-dev is optional for meson (-Dsystemd=auto): with it sluice speaks
# sd_notify (Type=notify units) and takes socket-activated listeners, and
# check_systemd runs its tests instead of skipping them. liburing-dev is
# optional the same way (-Dio_uring=auto): the io_uring setting needs it. libc6-dev is only
# gcc's Recommends, which --no-install-recommends leaves out: without it gcc
# cannot link a program (a fresh debootstrapped Debian showed it).
build_packages=(
	meson ninja-build pkg-config gcc libc6-dev
	libuv1-dev libssl-dev libpq-dev libinih-dev uthash-dev
	libpg-query-dev libprotobuf-c-dev
	scdoc
	libsystemd-dev
	liburing-dev
)

# Tests: Check, a PostgreSQL server the integration harness runs with initdb
# (postgresql-contrib brings pgbench), valgrind for `meson test --setup
# valgrind`, prometheus for promtool (check_metrics validates /metrics with
# it), and Debian's pgbouncer exporter for the opt-in console test
# (SLUICE_TEST_EXPORTER=1, see check_admin_control.c).
test_packages=(
	check libsubunit-dev
	postgresql-contrib
	valgrind
	prometheus
	prometheus-pgbouncer-exporter
	# ss(8) shows a listening socket's backlog (check_tcp_keepalive).
	iproute2
	# check_tls makes its certificates with the openssl command.
	openssl
	# The format suite checks src/ and include/ against .clang-format with
	# version 14, the one bookworm ships.
	clang-format-14
	# man_lint and the install suite check the man pages with mandoc -T lint.
	mandoc
	# scripts/fuzz.sh builds the libFuzzer targets with clang (-fsanitize=fuzzer);
	# libFuzzer is in libclang-rt-14-dev, which clang only recommends.
	clang libclang-rt-14-dev
	# check_drivers runs real client drivers through sluice: psycopg 3 and
	# asyncpg (run with /usr/bin/python3), the PostgreSQL JDBC driver with a
	# JDK to compile its test program; node-postgres and postgres.js come from
	# npm (test/drivers/package.json, installed below).
	python3-psycopg python3-asyncpg
	libpostgresql-jdbc-java default-jdk-headless
	# scripts/container.sh builds and tests the container image with podman
	# as root (runtime runc), making the Debian base image with debootstrap
	# when no registry provides it; catatonit is the pods' pause process.
	podman runc debootstrap catatonit
)

# Node.js and npm for the node drivers. Only when npm is missing: a Node.js
# from NodeSource already provides both and conflicts with Debian's npm.
if ! command -v npm >/dev/null 2>&1; then
	test_packages+=(nodejs npm)
fi

# The benchmark (test/bench/bench.sh) installs pgbouncer itself.

# Running: a PostgreSQL server for the demo (initdb, pg_ctl, psql).
run_packages=(postgresql)

packages=("${build_packages[@]}" "${run_packages[@]}")
[ "$mode" = test ] && packages+=("${test_packages[@]}")

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "setup.sh: all ${#packages[@]} packages are installed"
else
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		sudo=(sudo)
	fi

	echo "setup.sh: installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Nothing the packages would start starts now (exit 101: "action
	# forbidden", which invoke-rc.d and deb-systemd-invoke obey). An existing
	# policy-rc.d (a container's) is left as it is.
	policy=/usr/sbin/policy-rc.d
	own_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# scripts/setup.sh: no service starts while it installs.\nexit 101\n' |
			"${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		own_policy=1
		trap '"${sudo[@]}" rm -f "$policy"' EXIT
	fi
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}"
	if [ "$own_policy" = 1 ]; then
		"${sudo[@]}" rm -f "$policy"
		trap - EXIT
	fi
	# On a systemd machine, the units of what was installed here stay off
	# (they would start at the next boot): disabled, and stopped if running.
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		for unit in postgresql prometheus prometheus-pgbouncer-exporter; do
			for p in "${missing[@]}"; do
				if [ "$p" = "$unit" ] &&
					systemctl is-enabled --quiet "$unit" 2>/dev/null; then
					echo "setup.sh: disabling the $unit service Debian enabled"
					"${sudo[@]}" systemctl disable --now --quiet "$unit" || true
				fi
			done
		done
	fi
fi

[ "$mode" = run ] && exit 0

# The node drivers of check_drivers, from the npm registry at the versions of
# test/drivers/package-lock.json. Only when they are not installed yet, so
# that a set-up machine needs no network.
drivers_dir="$(cd "$(dirname "$0")/.." && pwd)/test/drivers"
if [ ! -d "$drivers_dir/node_modules" ]; then
	echo "setup.sh: installing the node drivers in $drivers_dir"
	npm ci --prefix "$drivers_dir" --no-audit --no-fund
fi
