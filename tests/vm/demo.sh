#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The main job inside the VM (started by scripts/run-demo.sh): load the
# module, show what it implements, then stream 4 MiB to each of 8 receivers
# (network namespaces behind a bridge) in one call and show what each got.
set -eu
sysctl -qw net.core.netdev_max_backlog=100000
insmod "$MDW_MODDIR/mdwrite.ko"
echo "== $(uname -r): mdwrite loaded, /dev/mdwrite is $(stat -c '%F %a' /dev/mdwrite)"
echo "== mdwrite info"
mdwrite info
echo "== one call, 8 destinations"
mdwrite-selftests demo
rmmod mdwrite
