#!/bin/sh
# A layer includes only itself and the layers below it (see STYLE.md).
# Prints each violation and exits 1 if there is any.
cd "$(dirname "$0")/.." || exit 2
order="util net imap store engine batch report cli"
rank() { i=0; for l in $order; do [ "$l" = "$1" ] && { echo $i; return; }; i=$((i+1)); done; echo 99; }
bad=0
for f in src/*/*.c src/*/*.h; do
	[ -e "$f" ] || continue
	layer=$(echo "$f" | cut -d/ -f2)
	r=$(rank "$layer")
	for inc in $(sed -n 's/^#include "\([a-z]*\)\/.*/\1/p' "$f" | sort -u); do
		if [ "$(rank "$inc")" -gt "$r" ]; then
			echo "$f: layer '$layer' includes upper layer '$inc'"
			bad=1
		fi
	done
done
[ $bad -eq 0 ] && echo "layers ok"
exit $bad
