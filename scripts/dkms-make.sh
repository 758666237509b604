#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build mdwrite.ko in the current directory (a DKMS build directory) against
# the kernel build tree KSRC, as dkms.conf's MAKE line.
#
#   dkms-make.sh [--clean] KSRC [ignored...]
#
# An out-of-tree Rust module must be compiled by the rustc the kernel was
# built with (its rust/*.rmeta are tied to that compiler) and, for a
# clang-built kernel, with the same LLVM. This finds both from the kernel's
# configuration (CONFIG_RUSTC_VERSION_TEXT, CONFIG_CLANG_VERSION) and says
# what is missing when they cannot be found. $MDW_RUSTC names a rustc to try
# first. dkms appends "CC=clang LD=ld.lld" for clang-built kernels; those
# arguments are ignored (LLVM= sets both, with the right version).
set -euo pipefail

die() { printf 'mdwrite dkms: %s\n' "$*" >&2; exit 1; }

clean=
if [ "${1:-}" = --clean ]; then
	clean=1
	shift
fi
(($#)) || die "usage: $0 [--clean] KSRC"
ksrc=$1
conf=$ksrc/include/config/auto.conf
[ -r "$conf" ] || die "$ksrc is not a kernel build tree (no include/config/auto.conf): install the kernel's headers package"

if [ -n "$clean" ]; then
	rm -rf -- *.o *.ko *.mod *.mod.c .*.cmd modules.order Module.symvers \
		rust/*.o rust/.*.cmd rust/*.d rust/common/*.o
	exit 0
fi

grep -q '^CONFIG_RUST=y' "$conf" ||
	die "kernel in $ksrc has no CONFIG_RUST: mdwrite is a Rust module and needs a kernel built with Rust support"
for f in rust/libcore.rmeta rust/libkernel.rmeta rust/libmacros.so scripts/target.json include/generated/rustc_cfg; do
	[ -e "$ksrc/$f" ] || die "$ksrc lacks $f: this kernel's headers package cannot build Rust modules (it must carry rust/*.rmeta, rust/*.so, scripts/target.json and include/generated/rustc_cfg; see Documentation/building.rst)"
done

want=$(sed -n 's/^CONFIG_RUSTC_VERSION_TEXT="\(.*\)"$/\1/p' "$conf")
rustc=
for c in ${MDW_RUSTC:-} /usr/bin/rustc "$(command -v rustc || true)"; do
	[ -n "$c" ] && [ -x "$c" ] || continue
	if [ -z "$want" ] || [ "$("$c" --version 2>/dev/null)" = "$want" ]; then
		rustc=$c
		break
	fi
done
[ -n "$rustc" ] || die "the kernel was built with '$want'; no such rustc found (tried \$MDW_RUSTC, /usr/bin/rustc, rustc on PATH). Install that compiler (the kernel's crate metadata only loads in it)"

llvm=()
if grep -q '^CONFIG_CC_IS_CLANG=y' "$conf"; then
	ver=$(sed -n 's/^CONFIG_CLANG_VERSION=//p' "$conf")
	major=$((ver / 10000))
	if command -v "clang-$major" >/dev/null && command -v "ld.lld-$major" >/dev/null; then
		llvm=(LLVM=-"$major")
	elif clang --version 2>/dev/null | grep -q "clang version $major\."; then
		llvm=(LLVM=1)
	else
		die "the kernel was built with clang $major; install clang-$major and lld-$major"
	fi
fi

exec make -C "$ksrc" M="$PWD" RUSTC="$rustc" "${llvm[@]}" modules
