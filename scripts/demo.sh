#!/bin/bash
# Demo: install, build, start two throwaway Dovecot servers on loopback
# (source filled with sample mail, a Japanese folder among them), migrate
# alice's mailbox with imapmig, show the target's folders, stop the servers.
# Runs as root on a fresh Debian 12.  Everything lives in a temp dir.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)

scripts/setup.sh

build=${BUILD_DIR:-build-demo}
cmake -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
imapmig=$repo/$build/imapmig

if [ -z "${IMAPMIG_SHARED:-}" ] && [ -d ../shared ]; then
	IMAPMIG_SHARED=$(cd ../shared && pwd)
	export IMAPMIG_SHARED
fi

dir=$(mktemp -d /tmp/imapmig-demo.XXXXXX)
stop() {
	python3 tests/integration/harness.py demo-down "$dir" || true
	rm -rf "$dir"
}
trap stop EXIT

echo "== starting two Dovecot servers (source: Maildir++, '.'; target: '/', Sent Items & co.)"
python3 tests/integration/harness.py demo-up "$dir" >"$dir/env"
cat "$dir/env"
# shellcheck disable=SC1091
. "$dir/env"

echo
echo "== source folders (doveadm mailbox list)"
doveadm -c "$SOURCE_CONF" mailbox list -u alice

cmd=("$imapmig" sync --ca-file "$CA"
	--resolve "$SOURCE_RESOLVE" --resolve "$TARGET_RESOLVE"
	--source-password-file "$SOURCE_PASSWORD_FILE"
	--target-password-file "$TARGET_PASSWORD_FILE"
	--state "$dir/state.db"
	"$SOURCE_URL" "$TARGET_URL")
echo
echo "== running:"
echo "   ${cmd[*]}"
"${cmd[@]}"

echo
echo "== target folders (doveadm mailbox status)"
doveadm -c "$TARGET_CONF" -f table mailbox status -u alice 'messages' '*'

echo
echo "== did anything get lost? imapmig verify compares both servers directly:"
vcmd=("$imapmig" verify --ca-file "$CA"
	--resolve "$SOURCE_RESOLVE" --resolve "$TARGET_RESOLVE"
	--source-password-file "$SOURCE_PASSWORD_FILE"
	--target-password-file "$TARGET_PASSWORD_FILE"
	"$SOURCE_URL" "$TARGET_URL")
echo "   ${vcmd[*]}"
"${vcmd[@]}"

echo
echo "== running it again copies nothing:"
"${cmd[@]}"
echo
echo "demo done"
