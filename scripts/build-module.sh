#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build mdwrite.ko (and the runner's canary and the selftests' capture NIC
# modules) for a cached test kernel.
#
#   scripts/build-module.sh release|debug
#
# Builds in a copy under the cache, one per kernel, so the two flavours never
# share objects and the work tree stays clean. Prints the build directory:
# mdwrite.ko is in it, mdw_canary.ko in its canary/ subdirectory,
# mdw_capture.ko in capture/. Any compiler
# warning fails the build.
#
# MDW_KRUSTFLAGS adds rustc flags (a directory of its own): with
# -Cdebuginfo=2 the module carries line tables, which
# `scripts/bench.sh --exec-profile` uses to say which source lines the
# instructions run (the code is the same as without: check the symbol sizes).
set -euo pipefail

. "$(dirname "$0")/lib.sh"

flavor=${1:-debug}
kdir=$("$MDW_ROOT/scripts/build-kernel.sh" "$flavor")
llvm=$(sed -n 's/^LLVM=//p' "$kdir/mdwrite-build.env")
# One build directory per kernel and per work tree (clones may build at once).
out=$MDW_CACHE/build/$(basename "$kdir")-$(printf %s "$MDW_ROOT" | sha256sum | cut -c1-8)
[ -z "${MDW_KRUSTFLAGS:-}" ] || out+=-$(printf %s "$MDW_KRUSTFLAGS" | sha256sum | cut -c1-8)

mkdir -p "$out/canary" "$out/capture"
rsync -a --delete --exclude canary --exclude capture "$MDW_ROOT/Kbuild" "$MDW_ROOT/rust" "$MDW_ROOT/uapi" "$out/"
rsync -a --delete "$MDW_ROOT/tests/canary/" "$out/canary/"
rsync -a --delete "$MDW_ROOT/tests/capture/" "$out/capture/"

for dir in "$out" "$out/canary" "$out/capture"; do
	log="$dir/build.log"
	if ! make -C "$kdir" M="$dir" RUSTC="$KRUSTC" ${llvm:+LLVM=$llvm} \
		${MDW_KRUSTFLAGS:+KRUSTFLAGS="$MDW_KRUSTFLAGS"} modules >"$log" 2>&1; then
		cat "$log" >&2
		die "module build failed in $dir"
	fi
	if grep -qiE 'warning|error' "$log"; then
		cat "$log" >&2
		die "module build in $dir printed warnings"
	fi
done
echo "$out"
