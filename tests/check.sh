#!/bin/sh
# The whole test suite: installs build dependencies if missing, builds in
# build/ (or build-san/ with --sanitizers: AddressSanitizer + UBSan), and
# runs `make check` (unit tests and integration tests with real processes).
# --fuzz instead builds the libFuzzer targets with clang in build-fuzz/ and
# runs each for FUZZ_SECONDS (default 30): `make fuzz`, see tests/fuzz/.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

mode=plain
case "${1:-}" in
	--sanitizers) mode=san ;;
	--fuzz) mode=fuzz ;;
	"") ;;
	*) echo "usage: tests/check.sh [--sanitizers|--fuzz]" >&2; exit 2 ;;
esac

[ "$mode" = fuzz ] && export FUZZ=1
sh tests/deps.sh
[ -x configure ] && [ configure -nt configure.ac ] && [ configure -nt Makefile.am ] ||
	autoreconf -fi >/dev/null 2>&1 || autoreconf -fi

if [ "$mode" = fuzz ]; then
	mkdir -p build-fuzz
	cd build-fuzz
	if [ ! -f Makefile ] || [ ../configure -nt Makefile ]; then
		CC=clang ../configure --enable-werror --enable-fuzzing >/dev/null
	fi
	make -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
	exec make fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
fi

if [ "$mode" = san ]; then
	dir=build-san
	flags="--enable-sanitizers"
	# leaks are reported, and fail the run, at process exit
	export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:halt_on_error=1"
	export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
else
	dir=build
	flags=""
fi
mkdir -p "$dir"
cd "$dir"
if [ ! -f Makefile ] || [ ../configure -nt Makefile ]; then
	# shellcheck disable=SC2086
	../configure --enable-werror $flags >/dev/null
fi
make -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
status=0
make -j2 check || status=$?

# Each Check program ends its log with "N%: Checks: C, Failures: F, Errors: E".
for f in tests/*.log; do
	[ -f "$f" ] && grep -H '%: Checks:' "$f" | sed 's|^tests/||'
done
awk '/%: Checks:/ { gsub(",", ""); c += $3; f += $5; e += $7 }
     END { printf "%s: %d passed, %d failed\n", "'"$mode"'", c - f - e, f + e }' tests/*.log

if [ "$status" -ne 0 ]; then
	echo "=== failing test logs ===" >&2
	for f in tests/*.log; do
		[ -f "$f" ] && ! grep -q '^PASS' "${f%.log}.trs" 2>/dev/null &&
			{ echo "--- $f"; tail -n 80 "$f"; } >&2
	done
	exit 1
fi
