#!/usr/bin/env bash
# fuzz.sh - a bounded libFuzzer run of every fuzz target, for CI and for a
# developer: scripts/fuzz.sh [SECONDS]  (default 20 seconds per target).
#
# Configures and builds a clang build directory with -Dfuzz=true (build-fuzz,
# only the targets), then runs each target of test/fuzz/ (one per directory
# of test/fuzz/corpus/) for SECONDS, started from a scratch copy of its
# corpus (libFuzzer adds what it finds to the copy, never to the tree), with
# -timeout=10 -rss_limit_mb=2048. Targets run FUZZ_JOBS at a time (default:
# the number of CPUs, at most 2). It prints, per target, the executions and
# the crashes found; 0 crashes is the only pass. A crash, leak, timeout or
# out-of-memory input is saved as test/fuzz/corpus/<target>/<kind>-<sha1>,
# where the target's replay (a unit test of every build) runs it from then
# on: commit it with the fix.
#
# Environment:
#   FUZZ_BUILD_DIR=NAME  build in NAME instead of build-fuzz.
#   FUZZ_JOBS=N          targets run at once.
#   FUZZ_TARGETS="a b"   run only these targets.
#
# Exits 0 when every target ran clean; 1 on a crash or a failed build; 77
# (automake's "skipped") with a note when clang or its libFuzzer is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

secs="${1:-20}"
dir="${FUZZ_BUILD_DIR:-build-fuzz}"
cpus=$(nproc 2>/dev/null || echo 1)
jobs="${FUZZ_JOBS:-$((cpus < 2 ? cpus : 2))}"
case "$secs" in '' | *[!0-9]*)
	echo "usage: scripts/fuzz.sh [SECONDS]" >&2
	exit 2
	;;
esac

# ---- is there a clang with libFuzzer? ------------------------------------------
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' >"$probe/p.c"
if ! command -v clang >/dev/null 2>&1; then
	echo "fuzz.sh: skipped: no clang (Debian package clang; scripts/setup.sh installs it)"
	exit 77
fi
if ! clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
	echo "fuzz.sh: skipped: clang cannot link -fsanitize=fuzzer (libFuzzer is missing)"
	exit 77
fi

# ---- build ---------------------------------------------------------------------
start=$SECONDS
targets=()
if [ -n "${FUZZ_TARGETS:-}" ]; then
	read -r -a targets <<<"$FUZZ_TARGETS"
else
	for d in test/fuzz/corpus/*/; do
		targets+=("$(basename "$d")")
	done
fi
how=()
if [ -f "$dir/build.ninja" ]; then
	how=(--reconfigure)
elif [ -d "$dir/meson-private" ]; then
	rm -rf "$dir" # a failed first configure, which meson can neither redo nor wipe
fi
echo "==== $dir: configure and build ${#targets[@]} fuzz targets with clang"
CC=clang meson setup "${how[@]}" "$dir" -Dfuzz=true -Dtests=false -Dbuildtype=debugoptimized \
	>"$probe/setup.log" 2>&1 || {
	cat "$probe/setup.log"
	exit 1
}
ninja -C "$dir" "${targets[@]/#/test/fuzz/}" >"$probe/build.log" 2>&1 || {
	cat "$probe/build.log"
	exit 1
}
echo "built in $((SECONDS - start)) s"

# ---- run -----------------------------------------------------------------------
# A sanitizer report is a crash: UBSan stops at the first one too.
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

# run_target NAME: fuzzes it for secs in $probe/NAME/; its log is $probe/NAME.log.
run_target() {
	local t="$1" work="$probe/$1"
	mkdir -p "$work/corpus" "$work/artifacts"
	cp -R "test/fuzz/corpus/$t/." "$work/corpus/"
	(cd "$work" && "$root/$dir/test/fuzz/$t" -max_total_time="$secs" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
		"$work/corpus" >"$probe/$t.log" 2>&1) || true
}

echo "==== fuzzing ${#targets[@]} targets for $secs s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
	if [ "$running" -ge "$jobs" ]; then
		wait -n || true
		running=$((running - 1))
	fi
	run_target "$t" &
	running=$((running + 1))
done
wait

failed=0
printf '%-18s %12s %8s\n' target executions crashes
for t in "${targets[@]}"; do
	log="$probe/$t.log"
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	if [ -z "$execs" ]; then
		# No final stats after a crash: the last status line says how far it got.
		execs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -1)
	fi
	crashes=0
	for a in "$probe/$t/artifacts/"*; do
		[ -e "$a" ] || continue
		crashes=$((crashes + 1))
		cp "$a" "test/fuzz/corpus/$t/"
		echo "fuzz.sh: $t: saved test/fuzz/corpus/$t/$(basename "$a")" >&2
	done
	if [ "$crashes" -eq 0 ] && ! grep -q '^Done [0-9]* runs' "$log"; then
		crashes="?" # it stopped without a crash file: show why
	fi
	printf '%-18s %12s %8s\n' "$t" "${execs:-0}" "$crashes"
	if [ "$crashes" != 0 ]; then
		failed=1
		grep -E 'ERROR|SUMMARY|^ *#[0-9]+ 0x' "$log" | head -30 >&2 || tail -30 "$log" >&2
	fi
done
echo "fuzz.sh: $((SECONDS - start)) s in all"
exit "$failed"
