#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The main job inside the VM (started by scripts/run-demo.sh).
set -eu
insmod "$MDW_MODDIR/mdwrite.ko"
echo "== $(uname -r): mdwrite loaded, /dev/mdwrite is $(stat -c '%F %a' /dev/mdwrite)"
echo "== mdwrite info"
mdwrite info
rmmod mdwrite
