#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The concurrency selftests and the fuzzer on the KCSAN kernel.
#
#   scripts/run-kcsan.sh [DURATION]     (make kcsan DURATION=...)
#
# KCSAN (the kernel's data-race detector) cannot share a kernel with KASAN,
# so it has a flavour of its own (tests/kconfig/kcsan.config), built and
# cached on first use like the others (about 25 minutes on 2 cores). Runs the
# selftests whose work races with itself or with the device (several
# threads or processes on one file, calls killed, unmapped, closed or
# unloaded while in flight, recycling against a real driver's TX
# completion, taps) and the fuzzer for DURATION seconds (default 300); a
# KCSAN report ("BUG: KCSAN: data-race") with an mdwrite frame among the
# top frames of a racing access fails the run through the kernel-log
# check (tests/vm/check-dmesg.sh); one inside the kernel itself is listed. Not part of scripts/run-tests.sh: the CI budget has no
# room for a third kernel build.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

duration=${1:-${MDW_FUZZ_DURATION:-300}}
case "$duration" in
'' | *[!0-9]*) die "usage: $0 [DURATION in seconds]" ;;
esac
concurrency='^(many_opens|concurrent_calls|munmap_mid_call|killed_mid_call|device_deleted|sync_call_killable|send_real_nic_recycled|tap_sees_recycled|qdisc_congestion_queued|async_.*|buf_unregister_in_flight|sender_.*async.*|unload_while_open|fuzz)$'
MDW_FUZZ_DURATION=$duration exec "$MDW_ROOT/scripts/vm-test.sh" --kernel kcsan --only "$concurrency"
