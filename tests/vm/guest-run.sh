#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The selftest runner inside the VM (started by scripts/vm-test.sh).
#
#   guest-run.sh [--only PATTERN] OUTDIR [CANARY]
#
# Loads mdwrite.ko from $MDW_MODDIR, runs every selftest (binaries from
# $MDW_BINDIR, which scripts/vm-run.sh puts on PATH) and prints KTAP. The last two results check the kernel log
# (BUG, WARNING, KASAN, UBSAN, lockdep, refcount, ...) and kmemleak. Writes
# OUTDIR/dmesg.txt, OUTDIR/kmemleak.txt and OUTDIR/summary. Exits non-zero
# when any test failed.
#
# CANARY (tests of the runner itself): "fail" adds a failing test, "warn"
# loads a module that WARNs, "leak" loads one that leaks memory, "all" does
# the three in one boot. A canary
# run skips the selftests proper: it only has to show the runner notices.
#
# --only PATTERN runs only the selftests and t_*.sh scripts whose names (as
# in the KTAP lines) match the extended regular expression PATTERN (grep -E,
# unanchored); module_load, module_unload, module_reload, dmesg_clean and
# kmemleak_clean always run. A PATTERN that matches none of them is an
# error: nothing runs, the summary counts one failure, exit status 2.
set -u

only=
if [ "${1:-}" = --only ]; then
	only=$2
	shift 2
fi
out=$1 canary=${2:-}
moddir=$MDW_MODDIR
here=$(cd "$(dirname "$0")" && pwd)
kmemleak=/sys/kernel/debug/kmemleak

mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug

# kmemleak reports objects older than 5 s: let boot-time objects age, then
# forget whatever boot itself left behind, so only the tests are judged.
if [ -e "$kmemleak" ]; then
	while [ "$(cut -d. -f1 /proc/uptime)" -lt 6 ]; do sleep 1; done
	echo scan >"$kmemleak"
	echo clear >"$kmemleak"
fi
dmesg --clear
# Room for whole test calls in the backlog of veth/bridge hops.
sysctl -qw net.core.netdev_max_backlog=100000

# Each test is "name:command". Commands run under bash with a time limit.
tests=("module_load:insmod $moddir/mdwrite.ko && test -c /dev/mdwrite")
if [ -z "$canary" ]; then
	selected=()
	for t in $(mdwrite-selftests list); do
		selected+=("$t:mdwrite-selftests run $t")
	done
	for f in "$here"/t_*.sh; do
		name=$(basename "$f" .sh)
		selected+=("${name#t_}:bash $f")
	done
	if [ -n "$only" ]; then
		all=("${selected[@]}") selected=()
		for t in "${all[@]}"; do
			grep -Eq -- "$only" <<<"${t%%:*}" && selected+=("$t")
		done
		if [ ${#selected[@]} = 0 ]; then
			echo "guest-run: --only '$only' matches no selftest or t_*.sh script (or is not an extended regex)" >&2
			echo "0 1" >"$out/summary"
			exit 2
		fi
	fi
	tests+=("${selected[@]}")
fi
case "$canary" in
"") ;;
fail) tests+=("canary_fail:echo 'deliberately failing test'; false") ;;
warn) tests+=("canary_warn:insmod $moddir/canary/mdw_canary.ko warn=1 && rmmod mdw_canary") ;;
leak) tests+=("canary_leak:insmod $moddir/canary/mdw_canary.ko leak=1 && rmmod mdw_canary") ;;
all) # One boot for the three: each must still be caught by its own check.
	tests+=("canary_fail:echo 'deliberately failing test'; false")
	tests+=("canary_warn:insmod $moddir/canary/mdw_canary.ko warn=1 && rmmod mdw_canary")
	tests+=("canary_leak:insmod $moddir/canary/mdw_canary.ko leak=1 && rmmod mdw_canary") ;;
*) echo "unknown canary '$canary'" >&2; exit 2 ;;
esac
tests+=("module_unload:rmmod mdwrite && ! test -e /dev/mdwrite")
tests+=("module_reload:for i in 1 2 3; do insmod $moddir/mdwrite.ko && mdwrite info >/dev/null && rmmod mdwrite || exit 1; done")
tests+=("dmesg_clean:bash $here/check-dmesg.sh $out/dmesg.txt")
tests+=("kmemleak_clean:bash $here/check-kmemleak.sh $out/kmemleak.txt")

echo "KTAP version 1"
echo "1..${#tests[@]}"
pass=0 fail=0 skip=0 n=0
for t in "${tests[@]}"; do
	n=$((n + 1))
	name=${t%%:*} cmd=${t#*:}
	limit=900
	# The fuzzer runs as long as asked, plus its pin check and set-up.
	[ "$name" = fuzz ] && limit=$((${MDW_FUZZ_DURATION:-150} + 300))
	t0=$SECONDS
	# A plain command runs without a shell in between (an exec costs
	# ~0.5 s in the debug guest); one with operators under bash -c.
	run=(bash -c "$cmd")
	[[ $cmd == *[\&\;\|\<\>\$\(\'\"]* ]] || read -r -a run <<<"$cmd"
	if output=$(timeout "$limit" "${run[@]}" 2>&1); then
		# How long each test takes, against its limit (a diagnostic line).
		echo "# $name: $((SECONDS - t0)) s"
		echo "ok $n $name"
		pass=$((pass + 1))
	else
		rc=$?
		if [ $rc = 4 ]; then
			# kselftest's skip: the test cannot run on this kernel.
			echo "ok $n $name # SKIP ${output//$'\n'/ }"
			skip=$((skip + 1))
			continue
		fi
		[ -n "$output" ] && printf '%s\n' "$output" | sed 's/^/# /'
		[ $rc = 124 ] && echo "# timed out"
		echo "# $name: $((SECONDS - t0)) s"
		echo "not ok $n $name"
		fail=$((fail + 1))
	fi
done
echo "# mdwrite-summary: $pass passed, $fail failed, $skip skipped"
echo "$pass $fail" >"$out/summary"
[ "$fail" = 0 ]
