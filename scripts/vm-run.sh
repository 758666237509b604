#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot a cached test kernel under QEMU/TCG (virtme-ng, host root over 9p)
# and run one script in it.
#
#   scripts/vm-run.sh [--kernel debug|release] [--rwdir DIR] [--cpus N]
#                     [--qemu-opts STR] SCRIPT [ARGS...]
#
# Builds what is missing (kernel, module, userspace) first. In the guest,
# SCRIPT runs as root under bash with MDW_MODDIR (where mdwrite.ko is) and
# MDW_BINDIR (the userspace binaries, also on PATH) set; DIR is writable.
# MDW_FUZZ_DURATION and MDW_FUZZ_SEED, when set on the host, are passed to
# the guest too (tests/vm/t_fuzz.sh).
# Exits with the script's status; 124 when the guest ran out of time.
# --cpus sets the guest's vCPUs (default 2); --qemu-opts passes extra QEMU
# options (the benchmark's -icount).
#
# One VM at a time per machine: TCG guests on a 2-core host slow each other
# down until their tests time out, so a second run waits for the first
# (lock file in $MDW_CACHE; the wait does not count against the timeout).
set -euo pipefail

. "$(dirname "$0")/lib.sh"

flavor=debug rwdir=() cpus=2 qemu_opts= timeout=${MDW_VM_TIMEOUT:-2700}
while (($#)); do
	case "$1" in
	--kernel) flavor=$2; shift 2 ;;
	--rwdir) rwdir=(--rwdir "$2"); shift 2 ;;
	--cpus) cpus=$2; shift 2 ;;
	--qemu-opts) qemu_opts=$2; shift 2 ;;
	*) break ;;
	esac
done
(($#)) || die "usage: $0 [--kernel debug|release] [--rwdir DIR] [--cpus N] [--qemu-opts STR] SCRIPT [ARGS...]"

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

PATH=$(dirname "$VNG"):$PATH exec timeout --foreground "$timeout" "$VNG" --run "$kdir/arch/x86/boot/bzImage" \
	--disable-kvm --force-9p --cpus "$cpus" --memory 2G "${rwdir[@]}" --qemu-opts="$hub_nics $qemu_opts" \
	--exec "$cmd" </dev/null
