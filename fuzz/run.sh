#!/bin/bash
# fuzz/run.sh - build the libFuzzer targets with clang and run each one.
#
#   fuzz/run.sh [fuzz_name ...]     (default: every fuzz/fuzz_*.c)
#
# Each target runs for $FUZZ_SECONDS (default 60) seconds on a work copy
# of its seed corpus fuzz/corpus/<name without fuzz_>/, so new inputs land
# in the build directory, not in the repo.  Crashers are written to
# $FUZZ_BUILD/artifacts/<target>/.  Exits non-zero if any target found a
# crash, leak, timeout or sanitizer report, or did not build.
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD:-$root/build-fuzz}
secs=${FUZZ_SECONDS:-60}
# The top CMakeLists adds -fsanitize=fuzzer only to the fuzz executables;
# the layer libraries need the instrumentation too, or libFuzzer sees no
# coverage inside the code under test.
san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

if [ $# -gt 0 ]; then
	targets="$*"
else
	targets=$(cd "$root/fuzz" && ls fuzz_*.c | sed 's/\.c$//')
fi

mkdir -p "$build"
CC=${CC:-clang} cmake -S "$root" -B "$build" -DIMAPMIG_FUZZ=ON \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="$san" >"$build/configure.log" 2>&1 ||
	{ cat "$build/configure.log"; exit 1; }
# shellcheck disable=SC2086
cmake --build "$build" --target $targets -j "$(nproc)" || exit 1

# Each target runs alone on one core; as many at once as there are cores.
run_one() {
	t=$1
	name=${t#fuzz_}
	seeds="$root/fuzz/corpus/$name"
	work="$build/corpus/$name"
	art="$build/artifacts/$t/"
	mkdir -p "$work" "$art"
	set -- "$work"
	[ -d "$seeds" ] && set -- "$work" "$seeds"
	if ! "$build/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$art" -print_final_stats=1 "$@" >"$build/$t.log" 2>&1; then
		tail -n 40 "$build/$t.log"
		echo "== $t: FAILED (log $build/$t.log, crashers in $art)"
		touch "$build/$t.failed"
	else
		echo "== $t: $(grep -aE '^Done [0-9]+ runs' "$build/$t.log" || echo done)"
	fi
}

jobs=$(nproc)
rm -f "$build"/*.failed
running=0
for t in $targets; do
	echo "== $t: ${secs}s"
	run_one "$t" &
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait -n 2>/dev/null || wait
		running=$((running - 1))
	fi
done
wait

failed=""
for t in $targets; do
	[ -e "$build/$t.failed" ] && failed="$failed $t"
done

if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed"
	exit 1
fi
echo "fuzz: all targets ran ${secs}s without a finding"
