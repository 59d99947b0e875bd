#!/bin/sh
# check_install.sh - runs `meson install` of a build into a scratch DESTDIR
# and checks the tree it makes: every file meson.build lists is there and
# nothing else is; the installed binary runs and prints the project's
# version; the man pages carry that version and pass `mandoc -T lint` (when
# mandoc is installed; scripts/setup.sh installs it); the systemd unit starts
# the installed binary. The scratch directory is removed at exit.
#
# Usage: check_install.sh MESON BUILD_ROOT VERSION BIN [FILE]...
#   MESON       the meson that configured the build
#   BUILD_ROOT  the build directory
#   VERSION     meson's project version
#   BIN         the installed path of sluice (absolute, before DESTDIR)
#   FILE        every other installed path; *.1 and *.5 are man pages,
#               *.service the systemd unit
set -u
meson=${1:?usage: check_install.sh MESON BUILD_ROOT VERSION BIN [FILE]...}
build=${2:?}
version=${3:?}
bin=${4:?}
shift 4

dest=$(mktemp -d "${TMPDIR:-/tmp}/sluice-install.XXXXXX") || exit 1
trap 'rm -rf "$dest" "$dest.extra"' EXIT
bad=0
fail() {
	echo "check_install: FAIL: $*"
	bad=$((bad + 1))
}

if ! out=$("$meson" install -C "$build" --destdir "$dest" --no-rebuild --quiet 2>&1); then
	echo "check_install: meson install failed:"
	echo "$out"
	exit 1
fi
echo "check_install: installed into $dest"

# Every listed file, and nothing else.
for f in "$bin" "$@"; do
	[ -s "$dest$f" ] || fail "$f is not installed (or empty)"
done
find "$dest" -type f | LC_ALL=C sort | while read -r f; do
	listed=no
	for want in "$bin" "$@"; do
		[ "$f" = "$dest$want" ] && listed=yes
	done
	[ "$listed" = yes ] || echo "${f#"$dest"}"
done >"$dest.extra"
if [ -s "$dest.extra" ]; then
	fail "installed but not listed in meson.build's install test: $(tr '\n' ' ' <"$dest.extra")"
fi
rm -f "$dest.extra"

# The binary runs; its second line is "sluice <version>" (the first is SHOW VERSION's).
if ! said=$("$dest$bin" --version); then
	fail "$bin --version failed"
elif [ "$(echo "$said" | sed -n 2p)" != "sluice $version" ]; then
	fail "$bin --version says \"$(echo "$said" | sed -n 2p)\", not \"sluice $version\""
else
	echo "check_install: $bin --version: $(echo "$said" | head -n 1)"
fi

lint=$(command -v mandoc || true)
[ -n "$lint" ] || echo "check_install: mandoc not found (scripts/setup.sh installs it): pages not linted"
for f in "$@"; do
	case "$f" in
	*.1 | *.5)
		# .TH "SLUICE" "1" "date" "sluice <version>" "sluice manual": the fourth field.
		footer=$(sed -n 's/^\.TH "[^"]*" "[^"]*" "[^"]*" "\([^"]*\)".*/\1/p' "$dest$f")
		[ "$footer" = "sluice $version" ] ||
			fail "$f says \"$footer\", not \"sluice $version\""
		if [ -n "$lint" ] && ! msgs=$(mandoc -T lint "$dest$f" 2>&1); then
			fail "mandoc -T lint $f: $msgs"
		fi
		;;
	*.service)
		grep -q "^ExecStart=$bin " "$dest$f" || fail "$f does not start $bin"
		;;
	esac
done

if [ "$bad" -ne 0 ]; then
	echo "check_install: $bad check(s) failed"
	exit 1
fi
echo "check_install: $(($# + 1)) files, all as expected"
