#!/bin/bash
# Install everything imapmig needs to build and test on Debian 12.
# Idempotent: apt is only called when a package is missing.  Shared by
# scripts/test.sh, scripts/demo.sh and .ci/run.
set -euo pipefail
"$(dirname "$0")/cyrus-setup.sh"  # Cyrus IMAP unpacked for test_sync_cyrus (conflicts with dovecot-imapd)

PACKAGES=(
	build-essential cmake pkg-config clang
	libssl-dev libsqlite3-dev zlib1g-dev libcmocka-dev libcurl4-openssl-dev
	dovecot-core dovecot-imapd
	python3 openssl time procps ca-certificates python3-aiosmtpd
)

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo "setup: all packages present"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "setup: missing packages: ${missing[*]} (run as root to install)" >&2
	exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# The tests start private Dovecot instances; keep the package's system
# service from being started by the postinst (exit 101 = "action forbidden").
# Only installed when there is no policy already, and removed afterwards.
policy=/usr/sbin/policy-rc.d
ours=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	ours=1
fi
cleanup() { if [ "$ours" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get -o DPkg::Lock::Timeout=600 update
apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"

# If a system dovecot got started anyway (no policy-rc.d honoured), stop it:
# it would hold ports 143/993 and is not used by the tests.
if pidof dovecot >/dev/null 2>&1 && [ -e /run/dovecot/master.pid ]; then
	doveadm stop 2>/dev/null || true
fi
echo "setup: done"
