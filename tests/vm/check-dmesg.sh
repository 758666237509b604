#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Saves the kernel log to $1 and fails when it holds any report of a kernel
# bug: BUG, WARNING, Oops, KASAN, UBSAN, lockdep, refcount, list corruption,
# reference-tracker reports, KCSAN data races or a Rust panic. KCSAN reports
# of races inside the kernel itself that tests/vm/kcsan-known.txt lists
# (each with why mdwrite is not involved) are printed, not counted.
set -u
here=$(cd "$(dirname "$0")" && pwd)
dmesg >"$1"
filtered=$1.judged
awk -v known="$here/kcsan-known.txt" '
	BEGIN {
		while ((getline line < known) > 0)
			if (line !~ /^#/ && line != "") ok[line] = 1
	}
	/BUG: KCSAN: / {
		title = $0
		sub(/.*BUG: KCSAN: [a-z-]+ in /, "", title)
		gsub(/\+0x[0-9a-f]+\/0x[0-9a-f]+/, "", title)
		if (title in ok) {
			print "known kernel-internal KCSAN report (not mdwrite): " title > "/dev/stderr"
			skip = 1
			next
		}
	}
	skip && /={20,}/ { skip = 0; next }
	!skip { print }
' "$1" >"$filtered"
pattern='BUG:|WARNING:|Oops|general protection|KASAN|KCSAN|UBSAN|lockdep|possible (recursive|circular) locking|inconsistent lock state|suspicious RCU|refcount_t:|ref_tracker|list_(add|del) corruption|Call Trace|kernel BUG|panicked at|rust_panic'
if grep -E "$pattern" "$filtered"; then
	echo "kernel log has reports, full log in $1"
	exit 1
fi
