#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install everything mdwrite needs on a Debian 12 (bookworm) machine: the
# kernel source, the Rust toolchain kbuild can use (Debian's rustc-web, which
# ships the library source), a pinned bindgen-cli, clang/LLVM 19 for the debug
# kernel, QEMU and virtme-ng for the selftests, and the network tools the
# tests run inside the guest, and debhelper, dh-dkms, dkms and lintian for the
# Debian packages (make deb) and their test, and GStreamer 1.22 (development
# files for the mdwritesink plugin, gst-launch-1.0/gst-inspect-1.0, and the
# elements its tests use: tsparse and mpegtsmux from -bad, rtpmp2tpay and
# udpsrc from -good, x264enc from -ugly).
#
# Idempotent and quiet when everything is already there.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

DEB_PACKAGES=(
	linux-source-6.12
	rustc-web rust-web-src
	libclang-19-dev clang-19 lld-19 llvm-19
	flex bison bc libelf-dev libssl-dev cpio kmod rsync
	busybox-static qemu-system-x86 udev
	python3-venv python3-docutils
	iproute2 ethtool tcpdump
	gnuplot-nox
	ffmpeg tshark
	dkms dh-dkms debhelper lintian libcap2-bin adduser man-db systemd
	libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
	gstreamer1.0-plugins-ugly
)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bindgen-cli: pinned, installed into the cache so it survives work-tree resets.
if ! "$BINDGEN" --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
	log "installing bindgen-cli $BINDGEN_VERSION"
	cargo install --quiet --locked --root "$MDW_CACHE/bindgen" \
		--version "$BINDGEN_VERSION" bindgen-cli
fi

# virtme-ng: pinned, in its own venv (Debian's python is externally managed).
if ! "$VNG" --version 2>/dev/null | grep -q "$VNG_VERSION"; then
	log "installing virtme-ng $VNG_VERSION"
	/usr/bin/python3 -m venv "$MDW_CACHE/venv"
	"$MDW_CACHE/venv/bin/pip" install -q "virtme-ng==$VNG_VERSION"
fi

# Userspace lint components of the rustup toolchain.
if command -v rustup >/dev/null; then
	rustup component list --installed 2>/dev/null | grep -q '^clippy' ||
		rustup component add clippy rustfmt >/dev/null 2>&1 || true
fi

log "dependencies ready"
