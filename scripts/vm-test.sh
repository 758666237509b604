#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the mdwrite selftests in a VM (QEMU/TCG through virtme-ng).
#
#   scripts/vm-test.sh [--kernel debug|release] [--canary fail|warn|leak|all]
#
# Boots the kernel (scripts/vm-run.sh), runs tests/vm/guest-run.sh and
# prints its KTAP.
# Exits non-zero when a test fails, when the kernel log or kmemleak has a
# report, or when the guest panics or times out (no summary comes back).
# The last line is "vm: N passed, N failed".
set -euo pipefail

. "$(dirname "$0")/lib.sh"

flavor=debug canary=
while (($#)); do
	case "$1" in
	--kernel) flavor=$2; shift 2 ;;
	--canary) canary=$2; shift 2 ;;
	*) die "usage: $0 [--kernel debug|release] [--canary fail|warn|leak|all]" ;;
	esac
done

out=$(mktemp -d "$MDW_CACHE/vm-run.XXXXXX")
trap 'rm -rf "$out"' EXIT

set +e
"$MDW_ROOT/scripts/vm-run.sh" --kernel "$flavor" --rwdir "$out" \
	"$MDW_ROOT/tests/vm/guest-run.sh" "$out" $canary 2>"$out/vng.stderr"
rc=$?
set -e

if [ ! -s "$out/summary" ]; then
	tail -n 50 "$out/vng.stderr" >&2
	echo "vm: guest gave no result (exit $rc): panic, hang or boot failure"
	echo "vm: 0 passed, 1 failed"
	exit 1
fi
read -r pass fail <"$out/summary"
echo "vm: $pass passed, $fail failed"
[ "$fail" = 0 ] && [ "$rc" = 0 ]
