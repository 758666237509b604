#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the Debian packages mdwrite-dkms and mdwrite-tools with debhelper
# (debian/), in a copy of the work tree under the cache, so the tree stays
# clean and the .debs do not land in its parent directory.
#
#   scripts/build-deb.sh          (or: make deb)
#
# Prints the directory holding mdwrite-dkms_VERSION_all.deb and
# mdwrite-tools_VERSION_ARCH.deb. cargo is rustup's (the one on PATH); its
# target directory is kept in the cache, so a second build is quick.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

command -v dpkg-buildpackage >/dev/null && command -v dh_dkms >/dev/null ||
	die "debhelper or dh-dkms missing: run scripts/install-deps.sh"
version=$(dpkg-parsechangelog -l "$MDW_ROOT/debian/changelog" -SVersion)
# One directory per work tree, as scripts/build-module.sh does.
out=$MDW_CACHE/deb/$(printf %s "$MDW_ROOT" | sha256sum | cut -c1-8)
src=$out/mdwrite-$version
mkdir -p "$src"
rm -f "$out"/*.deb "$out"/*.buildinfo "$out"/*.changes
rsync -a --delete --delete-excluded --exclude=/.git --exclude=/userspace/target \
	--filter=':- .gitignore' "$MDW_ROOT/" "$src/"

log "building mdwrite-dkms and mdwrite-tools $version in $src"
if ! (cd "$src" && CARGO=$(command -v cargo) CARGO_TARGET_DIR=$out/target \
	dpkg-buildpackage -b -us -uc) >"$out/build.log" 2>&1; then
	tail -n 40 "$out/build.log" >&2
	die "package build failed (full log: $out/build.log)"
fi
ls "$out"/mdwrite-dkms_"$version"_all.deb "$out"/mdwrite-tools_"$version"_*.deb >/dev/null
echo "$out"
