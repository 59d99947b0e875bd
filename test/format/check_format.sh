#!/bin/sh
# check_format.sh - fails when a C file of src/ or include/ differs from what
# clang-format makes of it with the project's .clang-format, and names each
# such file with the first lines of the difference. `ninja format` rewrites
# them. The layout is pinned to clang-format 14 (Debian bookworm's, installed
# by scripts/setup.sh): other versions break lines differently, so with
# another one the check is skipped rather than failing on a good tree.
#
# Usage: check_format.sh SOURCE_ROOT [--fix]
set -u
root=${1:?usage: check_format.sh SOURCE_ROOT [--fix]}
fix=${2:-}
cd "$root" || exit 1

cf=""
for c in clang-format-14 clang-format; do
	if command -v "$c" >/dev/null 2>&1 && "$c" --version | grep -q 'version 14\.'; then
		cf=$c
		break
	fi
done
if [ -z "$cf" ]; then
	echo "check_format: clang-format 14 not found (scripts/setup.sh installs it): skipped"
	exit 77
fi

files=$(find src include -name '*.[ch]' | LC_ALL=C sort)
if [ "$fix" = "--fix" ]; then
	# shellcheck disable=SC2086
	exec "$cf" -i $files
fi
bad=0
for f in $files; do
	if ! "$cf" "$f" | diff -u "$f" - >/tmp/check_format.$$ 2>&1; then
		echo "check_format: $f is not formatted (ninja format rewrites it):"
		head -n 20 /tmp/check_format.$$
		bad=$((bad + 1))
	fi
done
rm -f /tmp/check_format.$$
if [ "$bad" -gt 0 ]; then
	echo "check_format: $bad file(s) differ from .clang-format"
	exit 1
fi
echo "check_format: $(echo "$files" | wc -l) files match .clang-format"
