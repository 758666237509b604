#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Package the headers of a cached test kernel the way a distribution's
# linux-headers package carries them, plus what out-of-tree Rust modules need.
#
#   scripts/build-headers.sh release|debug|kcsan
#
# Prints the path of linux-headers-KREL_KREL-1_amd64.deb. It installs
#   /usr/src/linux-headers-KREL/       the external-module build tree
#   /lib/modules/KREL/build            -> /usr/src/linux-headers-KREL
# like the package `make bindeb-pkg` builds, so DKMS finds it. The tree is
# what the kernel's own scripts/package/install-extmod-build puts in that
# package (Makefiles, include/, generated headers, scripts/ with modpost,
# objtool, Module.symvers, auto.conf) plus:
#   - .config (DKMS reads it: BUILD_EXCLUSIVE_CONFIG, the compiler);
#   - rust/*.rmeta and rust/*.so: the metadata of the kernel's crates (core,
#     compiler_builtins, kernel, bindings, uapi, build_error, ffi) and the
#     `macros` proc-macro library. Linux 6.12's install-extmod-build leaves
#     them out, so its packages cannot build a Rust module ("can't find crate
#     for `core`"); scripts/target.json and include/generated/rustc_cfg, which
#     rustc also needs, are in its list already.
# A Rust module also needs the very rustc the kernel was built with (the
# .rmeta files are tied to it); CONFIG_RUSTC_VERSION_TEXT in .config names it.
#
# Built from the already built kernel, cached separately (keyed by the kernel
# build and this script), so making headers never rebuilds or re-keys the
# kernel itself.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

flavor=${1:-debug}
kdir=$("$MDW_ROOT/scripts/build-kernel.sh" "$flavor")
src=$(readlink -f "$kdir/source")
krel=$(cat "$kdir/include/config/kernel.release")
key=$(cat "$0" | sha256sum | cut -c1-8)
out=$MDW_CACHE/headers/$(basename "$kdir")-$key
deb=$out/linux-headers-${krel}_${krel}-1_amd64.deb

if [ -f "$out/.mdwrite-done" ]; then
	echo "$deb"
	exit 0
fi

log "packaging the headers of $(basename "$kdir") ($krel) in $out"
rm -rf "$out"
root=$out/root
hdr=$root/usr/src/linux-headers-$krel
mkdir -p "$hdr" "$root/DEBIAN"

# The kernel's own list, run as builddeb runs it (in the object tree). CC and
# HOSTCC equal: no cross build, so the host programs are taken as built.
(
	cd "$kdir"
	srctree=$src SRCARCH=x86 CC=cc HOSTCC=cc MAKE=make \
		sh "$src/scripts/package/install-extmod-build" "$hdr"
)
cp "$kdir/.config" "$hdr/.config"

# What install-extmod-build lacks for Rust in 6.12.
if grep -q '^CONFIG_RUST=y' "$kdir/.config"; then
	mkdir -p "$hdr/rust"
	cp "$kdir"/rust/*.rmeta "$kdir"/rust/*.so "$hdr/rust/"
	for f in rust/libcore.rmeta rust/libkernel.rmeta rust/libmacros.so \
		scripts/target.json include/generated/rustc_cfg; do
		[ -e "$hdr/$f" ] || die "headers tree lacks $f"
	done
fi

mkdir -p "$root/lib/modules/$krel"
ln -s "/usr/src/linux-headers-$krel" "$root/lib/modules/$krel/build"

size=$(du -sk "$root/usr" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: linux-headers-$krel
Version: $krel-1
Architecture: amd64
Maintainer: mdwrite developers <mdwrite@example.invalid>
Section: kernel
Priority: optional
Installed-Size: $size
Description: Linux kernel headers for $krel (mdwrite $flavor test kernel)
 The external-module build tree of the mdwrite $flavor test kernel,
 including the Rust crate metadata that out-of-tree Rust modules need.
EOF
# zstd: 38 MB instead of 152 (mostly crate metadata), quick to unpack in TCG.
dpkg-deb --root-owner-group -Zzstd -z3 --build "$root" "$deb" >/dev/null
rm -rf "$root"
touch "$out/.mdwrite-done"
echo "$deb"
