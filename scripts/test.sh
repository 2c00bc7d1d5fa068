#!/bin/bash
# Build imapmig and run every test (unit + integration) with CTest.
#   scripts/test.sh                 ASan+UBSan, -Werror (what CI runs)
#   scripts/test.sh --no-sanitize   faster local loop
#   scripts/test.sh [opts] -- ARGS  extra arguments for ctest (e.g. -R basic)
# Environment: BUILD_DIR (default build, or build-nosan with --no-sanitize),
# JOBS (default nproc), IMAPMIG_SHARED (shared/ with the corpus; default
# ../shared beside the repository).
set -euo pipefail

cd "$(dirname "$0")/.."
sanitize=ON
ctest_args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--no-sanitize) sanitize=OFF ;;
	--) shift; ctest_args=("$@"); break ;;
	-h|--help) sed -n '2,9p' "$0"; exit 0 ;;
	*) echo "test.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done

scripts/setup.sh

if [ "$sanitize" = ON ]; then
	build=${BUILD_DIR:-build}
else
	build=${BUILD_DIR:-build-nosan}
fi
jobs=${JOBS:-$(nproc)}

cmake -B "$build" -DIMAPMIG_WERROR=ON -DIMAPMIG_SANITIZE="$sanitize" \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j "$jobs"

# LSan needs ptrace-like access that some containers refuse; keep leak
# checking on but do not let a sandbox quirk abort the run.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Integration tests each start private Dovecot servers and spend most of
# their time waiting on them, so four at a time still fit the 2-core CI
# machine (CTEST_JOBS overrides).
ctest --test-dir "$build" --output-on-failure -j "${CTEST_JOBS:-4}" "${ctest_args[@]}"
