#!/usr/bin/env bash
# test.sh - the one command that proves a change: installs the dependencies,
# then configures, builds and runs every test suite twice, in `build` (the
# normal build) and in `build-asan` (AddressSanitizer + UndefinedBehavior-
# Sanitizer, sluice itself included, so an integration test fails when the
# daemon it drives reports an error or a leak at exit), then the suites where
# sluice runs threads or processes in `build-tsan` (ThreadSanitizer), and last runs every
# libFuzzer target for a bounded time (scripts/fuzz.sh, a clang build in
# `build-fuzz`; skipped with a note when clang or libFuzzer is missing), and
# then the container image (scripts/container.sh: podman build, a smoke
# test and a `podman kube play` of the sidecar manifest; at most 15 minutes,
# under one when the base image and the build's package layer are cached;
# skipped with a note when podman cannot work here).
#
# Environment:
#   SLUICE_TEST_SKIP_ASAN=1  skip the sanitizer build, for a quick local run
#                            (CI never sets it).
#   SLUICE_TEST_SKIP_TSAN=1  skip the ThreadSanitizer build (CI never sets it).
#   SLUICE_TEST_SKIP_FUZZ=1  skip the fuzz run (CI never sets it).
#   SLUICE_FUZZ_SECONDS=N    seconds per fuzz target (default 20).
#   SLUICE_TEST_SKIP_CONTAINER=1  skip the container image (CI never sets it).
#   SLUICE_BUILD_DIR=NAME    build in NAME and NAME-asan instead of build and
#                            build-asan.
#   MESON_TEST_ARGS          extra arguments for `meson test`, e.g. "--suite unit"
#                            or a test name.
#
# Valgrind is opt-in and not run here (it is slow):
#   meson test -C build --setup valgrind --print-errorlogs
#
# Exits non-zero when any step of any build fails; prints one summary line per build.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

# Sanitizers stop at the first error and say where; leaks fail the process at exit.
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=0:detect_leaks=1:print_stacktrace=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

read -r -a extra_test_args <<<"${MESON_TEST_ARGS:-}"
summary=()
failed=0

# run_build DIR [meson setup options...]: configure (or reconfigure), build, test.
run_build() {
	local dir="$1"
	shift
	local step="configure" start=$SECONDS
	echo "==== $dir: configure"
	# build.ninja exists only after a configure that succeeded. A directory
	# left by a failed first configure can be neither reconfigured nor wiped
	# by meson 1.0, so it is removed (it holds nothing but meson's files).
	local how=()
	if [ -f "$dir/build.ninja" ]; then
		how=(--reconfigure)
	elif [ -d "$dir/meson-private" ]; then
		rm -rf "$dir"
	fi
	meson setup "${how[@]}" "$dir" "$@" || { record "$dir" "$step" "$start"; return 1; }
	step="build"
	echo "==== $dir: build"
	meson compile -C "$dir" || { record "$dir" "$step" "$start"; return 1; }
	step="test"
	echo "==== $dir: test"
	meson test -C "$dir" --print-errorlogs "${extra_test_args[@]}" ||
		{ record "$dir" "$step" "$start"; return 1; }
	record "$dir" "" "$start"
}

# record DIR FAILED_STEP START: one summary line, with meson's counts when there are some.
record() {
	local dir="$1" step="$2" start="$3" counts=""
	local log="$dir/meson-logs/testlog.json"
	if [ -z "$step" ] || [ "$step" = "test" ]; then
		if [ -f "$log" ]; then
			counts=$(awk -F'"result": "' 'NF > 1 { split($2, a, "\""); n[a[1]]++ }
				END { s = ""; for (k in n) s = s sprintf("%s%s=%d", (s ? ", " : ""), k, n[k]); print s }' "$log")
		fi
	fi
	if [ -z "$step" ]; then
		summary+=("PASS  $dir  (${counts:- no tests}) in $((SECONDS - start)) s")
	else
		summary+=("FAIL  $dir  at $step${counts:+ (${counts})} after $((SECONDS - start)) s")
		failed=1
	fi
}

build="${SLUICE_BUILD_DIR:-build}"
run_build "$build" -Dtests=true || true
if [ "${SLUICE_TEST_SKIP_ASAN:-0}" = "1" ]; then
	summary+=("SKIP  $build-asan  (SLUICE_TEST_SKIP_ASAN=1)")
else
	run_build "$build-asan" -Dtests=true -Db_sanitize=address,undefined -Db_lundef=false || true
fi

# ThreadSanitizer, on the suites where sluice runs more than one thread (key
# derivations on libuv's thread pool, workers = 2: the workers suite and the
# <suite>_w2 runs of the suites that exercise what the workers share) or
# starts another process (online restart): a data race fails the daemon, and
# so the test.
if [ "${SLUICE_TEST_SKIP_TSAN:-0}" = "1" ]; then
	summary+=("SKIP  $build-tsan  (SLUICE_TEST_SKIP_TSAN=1)")
else
	all_test_args=("${extra_test_args[@]}")
	if [ ${#extra_test_args[@]} -eq 0 ]; then
		extra_test_args=(derive key_derivation auth_methods auth_query restart takeover
			workers pool_size_w2 cancel_w2 admin_control_w2 prepared_w2 restart_w2
			auth_query_w2 takeover_w2 relay_w2 signals_w2 metrics_w2 tls_w2
			client_limits_w2 notify_w2)
	fi
	TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}" \
		run_build "$build-tsan" -Dtests=true -Db_sanitize=thread -Db_lundef=false || true
	extra_test_args=("${all_test_args[@]}")
fi

# The fuzz targets, bounded: a crash fails the run and leaves its input in
# test/fuzz/corpus/<target>/, where every build's replay runs it from then on.
if [ "${SLUICE_TEST_SKIP_FUZZ:-0}" = "1" ]; then
	summary+=("SKIP  fuzz  (SLUICE_TEST_SKIP_FUZZ=1)")
else
	start=$SECONDS
	rc=0
	./scripts/fuzz.sh "${SLUICE_FUZZ_SECONDS:-20}" || rc=$?
	case "$rc" in
	0) summary+=("PASS  fuzz  (every target, no crash) in $((SECONDS - start)) s") ;;
	77) summary+=("SKIP  fuzz  (no clang with libFuzzer)") ;;
	*)
		summary+=("FAIL  fuzz  after $((SECONDS - start)) s (inputs saved in test/fuzz/corpus/)")
		failed=1
		;;
	esac
fi

# The container image, bounded: the first run debootstraps the base image and
# downloads the build stage's packages (a few minutes), later ones reuse both.
if [ "${SLUICE_TEST_SKIP_CONTAINER:-0}" = "1" ]; then
	summary+=("SKIP  container  (SLUICE_TEST_SKIP_CONTAINER=1)")
else
	echo "==== container"
	start=$SECONDS
	rc=0
	timeout -k 30 900 ./scripts/container.sh || rc=$?
	case "$rc" in
	0) summary+=("PASS  container  (image built, smoke and kube play tests) in $((SECONDS - start)) s") ;;
	77) summary+=("SKIP  container  (podman cannot work here: see container.sh's SKIP line above)") ;;
	124 | 137)
		summary+=("FAIL  container  timed out after $((SECONDS - start)) s")
		failed=1
		;;
	*)
		summary+=("FAIL  container  after $((SECONDS - start)) s")
		failed=1
		;;
	esac
fi

echo
echo "==== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
