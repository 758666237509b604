#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the mdwrite test kernel, cached outside the repo.
#
#   scripts/build-kernel.sh release|debug|kcsan
#
# A flavour is tests/kconfig/base.config plus tests/kconfig/FLAVOUR.config;
# a "# mdwrite-llvm: -19" line in the latter builds with LLVM=-19 (clang),
# otherwise gcc. release: fast, for demos and benchmarks; debug: KASAN,
# lockdep, kmemleak, UBSAN, fault injection (the selftests' default);
# kcsan: the data-race detector (it cannot share a kernel with KASAN).
#
# Prints the kernel build directory (usable as KDIR) on stdout. The build is
# keyed by the kernel source version, the config fragments, the toolchain
# versions and this recipe, so a second run with the same inputs is instant.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

flavor=${1:-debug}
frag_dir=$MDW_ROOT/tests/kconfig
case "$flavor" in
*/* | base | "") die "unknown kernel flavour '$flavor'" ;;
esac
[ -r "$frag_dir/$flavor.config" ] ||
	die "unknown kernel flavour '$flavor' (one of: $(cd "$frag_dir" && ls ./*.config | sed 's|^\./||; s|\.config$||' | grep -vx base | tr '\n' ' '))"
llvm=$(sed -n 's/^# mdwrite-llvm: *//p' "$frag_dir/$flavor.config")

tarball=/usr/src/linux-source-6.12.tar.xz
[ -r "$tarball" ] || die "$tarball missing: run scripts/install-deps.sh"
[ -x "$KRUSTC" ] || die "$KRUSTC missing: run scripts/install-deps.sh"
[ -x "$BINDGEN" ] || die "$BINDGEN missing: run scripts/install-deps.sh"

src_version=$(dpkg-query -W -f='${Version}' linux-source-6.12)
fragments=("$frag_dir/base.config" "$frag_dir/$flavor.config")
if [ -n "$llvm" ]; then
	cc_version=$(clang$llvm --version | head -n1)
else
	cc_version=$(gcc --version | head -n1)
fi
versions="linux-source-6.12 $src_version
rustc $("$KRUSTC" --version)
bindgen $("$BINDGEN" --version)
cc $cc_version
llvm '$llvm'"

key=$( {
	printf '%s\n' "$versions"
	cat "${fragments[@]}" "$0"
} | sha256sum | cut -c1-16)
out=$MDW_CACHE/kernel/$flavor-$key

if [ -f "$out/.mdwrite-done" ]; then
	echo "$out"
	exit 0
fi

# One extracted source tree per source package version, shared by flavours.
src=$MDW_CACHE/src/linux-$src_version
if [ ! -f "$src/.mdwrite-extracted" ]; then
	log "extracting $tarball"
	rm -rf "$src"
	mkdir -p "$src"
	tar -xf "$tarball" -C "$src" --strip-components=1
	touch "$src/.mdwrite-extracted"
fi

log "building $flavor kernel in $out"
rm -rf "$out"
mkdir -p "$out"
printf '%s\n' "$versions" >"$out/mdwrite-versions.txt"
printf 'LLVM=%s\n' "$llvm" >"$out/mdwrite-build.env"

kmake() {
	make -s -C "$src" O="$out" ${llvm:+LLVM=$llvm} RUSTC="$KRUSTC" \
		BINDGEN="$BINDGEN" "$@"
}

if ! kmake rustavailable >"$out/rustavailable.log" 2>&1; then
	cat "$out/rustavailable.log" >&2
	die "this toolchain cannot build Rust-for-Linux for this kernel:
$versions"
fi

kmake tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" \
	"${fragments[@]}" >"$out/merge.log"
kmake olddefconfig >/dev/null

# Every option the fragments ask for must have survived dependency resolution.
bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=n)
		opt=${line%%=*}
		if grep -q "^$opt=" "$out/.config"; then
			log "config: $opt wanted off, is on"
			bad=1
		fi
		;;
	CONFIG_*=*)
		if ! grep -qx "$line" "$out/.config"; then
			log "config: wanted $line, got: $(grep "^${line%%=*}=" "$out/.config" || echo unset)"
			bad=1
		fi
		;;
	esac
done < <(cat "${fragments[@]}")
[ "$bad" = 0 ] || die "kernel configuration does not match tests/kconfig (see above)"

if ! kmake -j"$(nproc)" bzImage modules >"$out/build.log" 2>&1; then
	tail -n 40 "$out/build.log" >&2
	die "kernel build failed (full log: $out/build.log)"
fi

touch "$out/.mdwrite-done"
log "$flavor kernel ready"
echo "$out"
