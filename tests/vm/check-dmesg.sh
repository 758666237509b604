#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Saves the kernel log to $1 and fails when it holds any report of a kernel
# bug: BUG, WARNING, Oops, KASAN, UBSAN, lockdep, refcount, list corruption,
# reference-tracker reports, KCSAN data races or a Rust panic.
#
# A KCSAN report is mdwrite's when one of the top five frames of either
# racing access is the module's (a function named `mdw_*` or with
# `mdwrite` in its Rust path): mdwrite's code made the access, or a kernel
# function it called directly (an skb, TX queue or completion helper)
# did. A report without such a frame is a race inside the kernel itself
# (6.12 has several that any workload meets: optimistic mutex spinning,
# hrtimer sleeps, the dentry cache under 9p, IPIs of a TLB flush deep in
# pin_user_pages_fast); it is printed, with its title, and not counted.
set -u
dmesg >"$1"
filtered=$1.judged
awk '
	function flush() {
		if (block == "") return
		if (ours) printf "%s", block
		else print "kernel-internal KCSAN report (no mdwrite frame): " title > "/dev/stderr"
		block = ""
	}
	/BUG: KCSAN: / {
		flush()
		title = $0
		sub(/.*BUG: KCSAN: /, "", title)
		block = $0 "\n"
		ours = 0
		depth = 0
		next
	}
	# The start of the stack of one access: "read to ... by task 1 on cpu 0:".
	block != "" && / on cpu [0-9]+:$/ { depth = 0 }
	# A stack frame: "[time]  symbol+0xoff/0xsize [module]".
	block != "" && /\]  [^ ]+\+0x[0-9a-f]+\/0x[0-9a-f]+/ {
		frame = $0
		sub(/.*\]  /, "", frame)
		if (++depth <= 5 && frame ~ /^mdw_|mdwrite/) ours = 1
	}
	# (mawk has no interval expressions: twenty = signs spelled out)
	block != "" && /====================/ { flush(); print; next }
	block != "" { block = block $0 "\n"; next }
	{ print }
	END { flush() }
' "$1" >"$filtered"
pattern='BUG:|WARNING:|Oops|general protection|KASAN|KCSAN|UBSAN|lockdep|possible (recursive|circular) locking|inconsistent lock state|suspicious RCU|refcount_t:|ref_tracker|list_(add|del) corruption|Call Trace|kernel BUG|panicked at|rust_panic'
if grep -E "$pattern" "$filtered"; then
	echo "kernel log has reports, full log in $1"
	exit 1
fi
