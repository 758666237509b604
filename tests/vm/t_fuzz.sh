#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The structure-aware fuzzer of /dev/mdwrite (userspace/mdwrite-fuzz) for
# MDW_FUZZ_DURATION seconds (default 150: affordable on the debug kernel
# under TCG) with seed MDW_FUZZ_SEED (default 1). It runs in a network
# namespace of its own with dummy devices only, and fails on an errno the
# ABI does not document, on fewer than half of its WRITEV calls sending,
# and on pages left pinned. The kernel log and kmemleak are judged after
# all tests by guest-run.sh.
set -eu

duration=${MDW_FUZZ_DURATION:-150}
seed=${MDW_FUZZ_SEED:-1}
exec mdwrite-fuzz --duration "$duration" --seed "$seed"
