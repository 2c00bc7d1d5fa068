#!/bin/bash
# Unpack Cyrus IMAP into a private folder for the integration tests
# (tests/integration/cyrus.py), on Debian 12.
#
# The cyrus-imapd package conflicts with dovecot-imapd, which the other
# tests need, so it is never installed: its .debs are fetched with
# `apt-get download` and unpacked with `dpkg -x`.  Only the libraries the
# binaries link against (and sasl2-bin for saslpasswd2) are installed the
# ordinary way; none of them conflicts with Dovecot.
#
# Folder: $IMAPMIG_CYRUS_DIR, else tests/integration/.cyrus (holds its own
# .gitignore, so nothing there is ever committed).  Idempotent: does
# nothing when the unpacked tree is already there and the libraries are
# installed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${IMAPMIG_CYRUS_DIR:-$repo/tests/integration/.cyrus}
root=$dest/root
marker=$dest/.unpacked

DEBS=(cyrus-common cyrus-imapd)
# libraries of cyrus-common / cyrus-imapd that a Dovecot test box lacks;
# sasl2-bin: saslpasswd2 fills the private sasldb
LIBS=(libclamav12 libical3 libxapian30 libzephyr4 libicu72 libjansson4
	libpcre3 libpq5 libwrap0 libxml2 libsasl2-modules libsasl2-modules-db
	sasl2-bin)

missing=()
for p in "${LIBS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -eq 0 ] && [ -e "$marker" ] && [ -x "$root/usr/lib/cyrus/bin/imapd" ]; then
	echo "cyrus-setup: present in $dest"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "cyrus-setup: run as root (missing: ${missing[*]:-} ${marker})" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [ "${#missing[@]}" -ne 0 ]; then
	echo "cyrus-setup: installing ${missing[*]}"
	apt-get -o DPkg::Lock::Timeout=600 update
	apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
fi

if [ ! -e "$marker" ] || [ ! -x "$root/usr/lib/cyrus/bin/imapd" ]; then
	mkdir -p "$dest"
	printf '*\n' >"$dest/.gitignore"
	dl=$(mktemp -d)
	trap 'rm -rf "$dl"' EXIT
	# apt-get download writes into the current directory; _apt must be
	# able to write there when apt drops privileges.
	chmod 777 "$dl"
	(cd "$dl" && apt-get -o DPkg::Lock::Timeout=600 download "${DEBS[@]}") || {
		apt-get -o DPkg::Lock::Timeout=600 update
		(cd "$dl" && apt-get download "${DEBS[@]}")
	}
	rm -rf "$root"
	mkdir -p "$root"
	for d in "$dl"/*.deb; do
		dpkg -x "$d" "$root"
	done
	test -x "$root/usr/lib/cyrus/bin/imapd"
	ls "$dl"/*.deb | xargs -n1 basename >"$marker"
fi

# the binaries must find all their libraries (libcyrus*.so come from
# the unpacked tree: cyrus.py sets LD_LIBRARY_PATH the same way)
out=$(LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu ldd \
	"$root/usr/lib/cyrus/bin/imapd" "$root/usr/lib/cyrus/bin/master" \
	"$root/usr/lib/cyrus/bin/mbpath" 2>&1 || true)
if grep 'not found' <<<"$out" >&2; then
	echo "cyrus-setup: unresolved libraries (above)" >&2
	exit 1
fi
echo "cyrus-setup: ready in $dest ($(tr '\n' ' ' <"$marker"))"
