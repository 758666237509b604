#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the mdwrite selftests in a VM (QEMU/TCG through virtme-ng).
#
#   scripts/vm-test.sh [--kernel debug|release|kcsan] [--canary fail|warn|leak|all]
#                      [--only PATTERN]
#
# Boots the kernel (scripts/vm-run.sh), runs tests/vm/guest-run.sh and
# prints its KTAP.
# --only runs only the tests whose names match the extended regular
# expression PATTERN (grep -E, unanchored): the names of
# `mdwrite-selftests list` and of tests/vm/t_NAME.sh (NAME); module_load,
# module_unload, module_reload, dmesg_clean and kmemleak_clean always run.
# A PATTERN that is not a valid extended regex or matches none of those
# tests fails at once, before the VM boots.
# Exits non-zero when a test fails, when the kernel log or kmemleak has a
# report, or when the guest panics or times out (no summary comes back).
# The last line is "vm: N passed, N failed".
set -euo pipefail

. "$(dirname "$0")/lib.sh"

usage="usage: $0 [--kernel debug|release|kcsan] [--canary fail|warn|leak|all] [--only PATTERN]"
flavor=debug canary= only=
while (($#)); do
	case "$1" in
	--kernel) (($# >= 2)) || die "$usage"; flavor=$2; shift 2 ;;
	--canary) (($# >= 2)) || die "$usage"; canary=$2; shift 2 ;;
	--only) (($# >= 2)) || die "$usage"; only=$2; shift 2
		[ -n "$only" ] || die "--only needs a non-empty pattern" ;;
	*) die "$usage" ;;
	esac
done

guest_args=()
if [ -n "$only" ]; then
	[ -z "$canary" ] || die "--only and --canary do not go together (a canary run has no selftests)"
	# Check the pattern here, so a typo fails now rather than after a boot.
	rc=0
	grep -Eq -- "$only" </dev/null 2>/dev/null || rc=$?
	[ "$rc" != 2 ] || die "--only '$only' is not a valid extended regular expression"
	bindir=$("$MDW_ROOT/scripts/build-userspace.sh")
	names=$("$bindir/mdwrite-selftests" list)
	for f in "$MDW_ROOT"/tests/vm/t_*.sh; do
		name=$(basename "$f" .sh)
		names+=$'\n'${name#t_}
	done
	if ! matched=$(grep -E -- "$only" <<<"$names"); then
		die "--only '$only' matches no test; the tests are:"$'\n'"$names"
	fi
	log "--only '$only': $(wc -l <<<"$matched") tests and the module/kernel-log checks"
	guest_args=(--only "$only")
fi

out=$(mktemp -d "$MDW_CACHE/vm-run.XXXXXX")
trap 'rm -rf "$out"' EXIT

set +e
"$MDW_ROOT/scripts/vm-run.sh" --kernel "$flavor" --rwdir "$out" \
	"$MDW_ROOT/tests/vm/guest-run.sh" "${guest_args[@]}" "$out" $canary 2>"$out/vng.stderr"
rc=$?
set -e
# The runner's own complaints (a pattern that selects nothing).
grep '^guest-run:' "$out/vng.stderr" >&2 || true

if [ ! -s "$out/summary" ]; then
	tail -n 50 "$out/vng.stderr" >&2
	echo "vm: guest gave no result (exit $rc): panic, hang or boot failure"
	echo "vm: 0 passed, 1 failed"
	exit 1
fi
read -r pass fail <"$out/summary"
if [ "$fail" != 0 ] || [ "$rc" != 0 ]; then
	# The run directory goes with this script: keep the kernel log and
	# the kmemleak report of a failed run for a look afterwards.
	keep=$MDW_CACHE/last-failed-run
	rm -rf "$keep"
	mkdir -p "$keep"
	cp "$out"/dmesg.txt* "$out"/kmemleak.txt "$keep"/ 2>/dev/null || true
	log "kernel log and kmemleak report of this run kept in $keep"
fi
echo "vm: $pass passed, $fail failed"
[ "$fail" = 0 ] && [ "$rc" = 0 ]
