#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot a cached test kernel under QEMU/TCG (virtme-ng, host root over 9p)
# and run one script in it.
#
#   scripts/vm-run.sh [--kernel debug|release|kcsan] [--rwdir DIR] [--cpus N]
#                     [--qemu-opts STR] SCRIPT [ARGS...]
#
# Builds what is missing (kernel, module, userspace) first. In the guest,
# SCRIPT runs as root under bash with MDW_MODDIR (where mdwrite.ko is) and
# MDW_BINDIR (the userspace binaries, also on PATH) set; DIR is writable.
# MDW_FUZZ_DURATION and MDW_FUZZ_SEED, when set on the host, are passed to
# the guest too (tests/vm/t_fuzz.sh).
# Exits with the script's status; 124 when the guest ran out of time.
# --cpus sets the guest's vCPUs (default 2); --qemu-opts passes extra QEMU
# options (the benchmark's -icount). MDW_VM_VERBOSE=1 shows the guest's
# kernel console (a crash under a selftest otherwise prints nothing).
#
# One VM at a time per machine: TCG guests on a 2-core host slow each other
# down until their tests time out, so a second run waits for the first
# (lock file in $MDW_CACHE; the wait does not count against the timeout).
set -euo pipefail

. "$(dirname "$0")/lib.sh"

flavor=debug rwdir=() cpus=2 qemu_opts= timeout=${MDW_VM_TIMEOUT:-3600}
while (($#)); do
	case "$1" in
	--kernel) flavor=$2; shift 2 ;;
	--rwdir) rwdir=(--rwdir "$2"); shift 2 ;;
	--cpus) cpus=$2; shift 2 ;;
	--qemu-opts) qemu_opts=$2; shift 2 ;;
	*) break ;;
	esac
done
(($#)) || die "usage: $0 [--kernel debug|release|kcsan] [--rwdir DIR] [--cpus N] [--qemu-opts STR] SCRIPT [ARGS...]"

kdir=$("$MDW_ROOT/scripts/build-kernel.sh" "$flavor")
moddir=$("$MDW_ROOT/scripts/build-module.sh" "$flavor")
bindir=$("$MDW_ROOT/scripts/build-userspace.sh")

exec 9>"$MDW_CACHE/vm.lock"
if ! flock -n 9; then
	log "another VM is running on this machine; waiting for it"
	flock 9
fi

# Two virtio-net NICs on one QEMU hub: a real driver (TX completion,
# shared skbs) whose packets the other NIC receives (send_real_nic_recycled).
hub_nics="-netdev hubport,id=mdwh0,hubid=0 -device virtio-net-pci,netdev=mdwh0,mac=52:54:00:00:00:10"
hub_nics+=" -netdev hubport,id=mdwh1,hubid=0 -device virtio-net-pci,netdev=mdwh1,mac=52:54:00:00:00:11"

cmd="MDW_MODDIR=$moddir MDW_BINDIR=$bindir PATH=$bindir:\$PATH"
# The fuzzer's knobs (tests/vm/t_fuzz.sh) reach the guest from the host's
# environment; the guest command line carries no other environment.
for v in MDW_FUZZ_DURATION MDW_FUZZ_SEED; do
	[ -z "${!v:-}" ] || cmd+=" $v=$(printf '%q' "${!v}")"
done
cmd+=" bash"
for a in "$@"; do cmd+=" $(printf '%q' "$a")"; done

# vng runs in a session of its own (setsid), so that a timeout, or this
# script being stopped, ends all of it: vng, its shell, virtme-run and
# QEMU (killing vng alone left QEMU running a stuck guest at full CPU). Its
# output goes through a pipe: QEMU rewrites a regular-file stdout from
# offset 0, garbling a redirected log.
timed_out=$MDW_CACHE/vm-timeout.$$
rm -f "$timed_out"
verbose=()
[ "${MDW_VM_VERBOSE:-0}" = 0 ] || verbose=(--verbose)
# pty.legacy_count=0: no BSD pty pairs (512 devices whose coldplug events
# kept the guest's udev busy for a minute of each boot under TCG).
PATH=$(dirname "$VNG"):$PATH setsid "$VNG" "${verbose[@]}" --run "$kdir/arch/x86/boot/bzImage" \
	--disable-kvm --force-9p --cpus "$cpus" --memory 2G "${rwdir[@]}" --qemu-opts="$hub_nics $qemu_opts" \
	--append "pty.legacy_count=0" \
	--exec "$cmd" </dev/null > >(cat) &
vm=$!
kill_vm() {
	kill -TERM -- "-$vm" 2>/dev/null || return 0
	for _ in $(seq 20); do
		kill -0 -- "-$vm" 2>/dev/null || return 0
		sleep 0.5
	done
	kill -KILL -- "-$vm" 2>/dev/null || true
}
trap 'kill_vm; exit 130' INT TERM
(
	# Not the VM lock's holder, and its sleep goes with it.
	exec 9>&-
	trap 'kill "$nap" 2>/dev/null; exit 0' TERM
	sleep "$timeout" &
	nap=$!
	wait "$nap"
	if kill -0 "$vm" 2>/dev/null; then
		: >"$timed_out"
		kill_vm
	fi
) &
watchdog=$!
set +e
wait "$vm"
rc=$?
set -e
kill "$watchdog" 2>/dev/null || true
wait "$watchdog" 2>/dev/null || true
if [ -e "$timed_out" ]; then
	rm -f "$timed_out"
	# The whole session is gone: vng, virtme-run, QEMU.
	kill_vm
	log "the guest timed out after ${timeout}s (MDW_VM_TIMEOUT) running: $*"
	exit 124
fi
exit "$rc"
