#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The install route in a VM: builds the test kernel's headers package
# (scripts/build-headers.sh) and mdwrite-dkms/mdwrite-tools (make deb), boots
# the kernel and runs tests/vm/packages.sh: dpkg -i, the DKMS build, modprobe,
# the udev rule, a send by an unprivileged group member, the channel unit's
# script, dkms remove, dpkg -r/-P, the kernel log.
#
#   scripts/vm-packages.sh [--kernel debug|release]
#
# Prints the guest's KTAP; the last line is "vm-packages: N passed, N failed".
# Exits non-zero when anything failed or the guest gave no result.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

flavor=debug
case "${1:-}" in
--kernel) flavor=$2 ;;
"") ;;
*) die "usage: $0 [--kernel debug|release]" ;;
esac

hdeb=$("$MDW_ROOT/scripts/build-headers.sh" "$flavor")
debdir=$("$MDW_ROOT/scripts/build-deb.sh")
version=$(dpkg-parsechangelog -l "$MDW_ROOT/debian/changelog" -SVersion)
dkmsdeb=$debdir/mdwrite-dkms_${version}_all.deb
toolsdeb=$(ls "$debdir"/mdwrite-tools_"$version"_*.deb)

out=$(mktemp -d "$MDW_CACHE/vm-pkg.XXXXXX")
trap 'rm -rf "$out"' EXIT

set +e
"$MDW_ROOT/scripts/vm-run.sh" --kernel "$flavor" --rwdir "$out" \
	"$MDW_ROOT/tests/vm/packages.sh" "$out" "$hdeb" "$dkmsdeb" "$toolsdeb" 2>"$out/vng.stderr"
rc=$?
set -e
if [ ! -s "$out/summary" ]; then
	tail -n 50 "$out/vng.stderr" >&2
	echo "vm-packages: guest gave no result (exit $rc)"
	echo "vm-packages: 0 passed, 1 failed"
	exit 1
fi
read -r pass fail <"$out/summary"
echo "vm-packages: $pass passed, $fail failed"
[ "$fail" = 0 ] && [ "$rc" = 0 ]
