#!/bin/bash
# The benchmark: imapmig vs mbsync vs Dovecot dsync (imapc) vs a no-IMAP
# ceiling, on one seeded corpus, each tool from an empty target.
#
#   bench/run.sh                 default: 10 users, ~30,000 messages, ~1.5 GB
#   bench/run.sh quick           tiny (2 users, ~300 messages), for CI
#   bench/run.sh [quick] --users N --messages N --size-mb N --big-mb N
#                --new N --seed N --tools imapmig,mbsync,dsync,ceiling
#                --scenarios large,all,noop,new --perf --keep --out DIR
#
# Environment: IMAPMIG=path (skip the Release build; IMAPMIG_REV=commit it
# was built from, for the report), BENCH_CACHE=dir (the
# generated corpus, default bench/.cache), IMAPMIG_SHARED (shared/ corpus).
# Runs as root on Debian 12: installs what it needs (scripts/setup.sh,
# isync; linux-perf when --perf is asked for).  Results: bench/results/
# (full runs) or the cache (quick runs), as Markdown and JSON.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)

scripts/setup.sh >&2
need=(isync)
for a in "$@"; do
	if [ "$a" = --perf ]; then need+=(linux-perf); fi
done
missing=()
for p in "${need[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "bench: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >&2 ||
		{ apt-get -o DPkg::Lock::Timeout=600 update >&2 &&
			apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >&2; }
fi

if [ -z "${IMAPMIG:-}" ]; then
	echo "bench: building imapmig (Release) in build-bench" >&2
	mkdir -p build-bench
	if ! { cmake -B build-bench -DCMAKE_BUILD_TYPE=Release -DIMAPMIG_SANITIZE=OFF &&
		cmake --build build-bench -j "$(nproc)" --target imapmig; } >build-bench/bench-build.log 2>&1; then
		tail -40 build-bench/bench-build.log >&2
		echo "bench: build failed (build-bench/bench-build.log)" >&2
		exit 1
	fi
	IMAPMIG=$repo/build-bench/imapmig
fi
export IMAPMIG

if [ -z "${IMAPMIG_SHARED:-}" ] && [ -d ../shared ]; then
	IMAPMIG_SHARED=$(cd ../shared && pwd)
	export IMAPMIG_SHARED
fi

exec python3 bench/bench.py "$@"
