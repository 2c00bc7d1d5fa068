#!/bin/bash
# The threaded paths under ThreadSanitizer: batch workers, folder workers
# (--connections-per-user), append lanes (--append-connections), shared
# state handles.  Builds build-tsan (Debug, -fsanitize=thread) and runs the
# integration tests that drive them; a data race makes imapmig exit 66,
# which fails the test, and the report is in build-tsan/tsan.PID.
#
#   scripts/tsan.sh                 the default set
#   scripts/tsan.sh test_batch_run  the named tests
set -euo pipefail

cd "$(dirname "$0")/.."
dir=build-tsan
cmake -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DIMAPMIG_SANITIZE=OFF \
	-DCMAKE_C_FLAGS="-fsanitize=thread -g -Werror" \
	-DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" >/dev/null
cmake --build "$dir" -j "$(nproc)" --target imapmig >/dev/null

tests=("$@")
if [ "${#tests[@]}" -eq 0 ]; then
	tests=(test_batch_basic test_batch_failures test_sync_parallel
		test_sync_noliteralplus test_sync_lanes_faults)
fi
export IMAPMIG=$PWD/$dir/imapmig
export TSAN_OPTIONS="exitcode=66 log_path=$PWD/$dir/tsan"
rm -f "$dir"/tsan.*
passed=0 failed=0
for t in "${tests[@]}"; do
	if python3 "tests/integration/$t.py" >"$dir/$t.log" 2>&1; then
		passed=$((passed + 1))
		echo "tsan: $t ok"
	else
		failed=$((failed + 1))
		echo "tsan: $t FAILED (log: $dir/$t.log)"
		tail -5 "$dir/$t.log"
	fi
done
for f in "$dir"/tsan.*; do
	[ -e "$f" ] || continue
	echo "tsan: race report $f:"
	head -40 "$f"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
