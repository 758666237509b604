#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The module cannot be unloaded while /dev/mdwrite is open, and the open file
# keeps working; once closed, unload works (then the module is loaded again
# for the tests after this one).
set -eu
exec 3</dev/mdwrite
if rmmod mdwrite 2>/dev/null; then
	echo "rmmod succeeded with /dev/mdwrite open"
	exit 1
fi
grep -q '^mdwrite ' /proc/modules
# The open file still answers.
mdwrite info >/dev/null
exec 3<&-
rmmod mdwrite
test ! -e /dev/mdwrite
insmod "$MDW_MODDIR/mdwrite.ko"
test -c /dev/mdwrite
