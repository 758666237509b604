#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Saves the kernel log to $1 and fails when it holds any report of a kernel
# bug: BUG, WARNING, Oops, KASAN, UBSAN, lockdep, refcount, list corruption,
# reference-tracker reports or a Rust panic.
set -u
dmesg >"$1"
pattern='BUG:|WARNING:|Oops|general protection|KASAN|UBSAN|lockdep|possible (recursive|circular) locking|inconsistent lock state|suspicious RCU|refcount_t:|ref_tracker|list_(add|del) corruption|Call Trace|kernel BUG|panicked at|rust_panic'
if grep -E "$pattern" "$1"; then
	echo "kernel log has reports, full log in $1"
	exit 1
fi
