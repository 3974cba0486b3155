#!/bin/sh
# run.sh SRCDIR NAME... — runs the libFuzzer targets of an --enable-fuzzing
# build (`make fuzz` calls it from the build directory).
#
# Each tests/fuzz/fuzz_NAME runs for FUZZ_SECONDS (default 60) on its own
# corpus in tests/fuzz/work/NAME/ of the build tree: the seeds and the
# regression inputs of the source tree are copied there first, and what
# libFuzzer finds stays there (the source tree is never written).  FUZZ_JOBS
# targets run at once (default: the number of CPUs).  A crash leaves its
# input in tests/fuzz/work/crash-NAME/ and fails the run; copy it into
# SRCDIR/tests/fuzz/regressions/NAME/ once understood.
set -eu

[ $# -ge 2 ] || { echo "usage: run.sh SRCDIR NAME..." >&2; exit 2; }
src=$1
shift
secs=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-}
[ -n "$jobs" ] || jobs=$(nproc 2>/dev/null || echo 1)
work=tests/fuzz/work
mkdir -p "$work"

# Target-specific options: longer inputs where the format needs them.
fuzz_opts() {
	case $1 in
	ws_hs) echo "-max_len=20000" ;;
	conf) echo "-max_len=16384" ;;
	deflate) echo "-max_len=8192" ;;
	ws_frame) echo "-max_len=1024" ;;   # streams of headers: short inputs go further
	*) echo "-max_len=4096" ;;
	esac
}

run_one() {
	name=$1
	corpus=$work/$name
	crash=$work/crash-$name
	rm -rf "$crash"
	mkdir -p "$corpus" "$crash"
	cp "$src/tests/fuzz/corpus/$name"/* "$corpus/"
	if [ -d "$src/tests/fuzz/regressions/$name" ]; then
		for f in "$src/tests/fuzz/regressions/$name"/*; do
			[ -f "$f" ] && cp "$f" "$corpus/"
		done
	fi
	dict=""
	d=$name
	[ "$name" = phx_json ] && d=json
	[ -f "$src/tests/fuzz/$d.dict" ] && dict="-dict=$src/tests/fuzz/$d.dict"
	# shellcheck disable=SC2046,SC2086
	UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
	./tests/fuzz/fuzz_"$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$crash/" $(fuzz_opts "$name") $dict \
		"$corpus" >"$work/$name.log" 2>&1
}

report() {
	name=$1
	status=$2
	log=$work/$name.log
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | sed 's/cov: //')
	files=$(find "$work/$name" -type f | wc -l)
	if [ "$status" -eq 0 ]; then
		echo "fuzz $name: ok, ${runs:-?} runs in ${secs}s, coverage ${cov:-?}, corpus $files"
	else
		echo "fuzz $name: FAILED (exit $status), inputs in $work/crash-$name/:" >&2
		ls "$work/crash-$name" >&2 || true
		tail -n 60 "$log" >&2
	fi
}

# Each target writes its exit status to work/NAME.status; batches of
# FUZZ_JOBS run in the background.
run_bg() {
	status=0
	run_one "$1" || status=$?
	echo "$status" >"$work/$1.status"
}

failed=0
while [ $# -gt 0 ]; do
	batch=""
	while [ $# -gt 0 ] && [ "$(echo "$batch" | wc -w)" -lt "$jobs" ]; do
		run_bg "$1" &
		batch="$batch $1"
		shift
	done
	wait
	for name in $batch; do
		status=$(cat "$work/$name.status" 2>/dev/null || echo 1)
		report "$name" "$status"
		[ "$status" -eq 0 ] || failed=1
	done
done
exit "$failed"
