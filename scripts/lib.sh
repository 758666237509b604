# SPDX-License-Identifier: GPL-2.0
# Shared settings for the mdwrite scripts. Source it, do not run it.

MDW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Expensive builds (kernels, bindgen, virtme-ng) live outside the repo.
MDW_CACHE=${MDW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mdwrite}
mkdir -p "$MDW_CACHE"

BINDGEN_VERSION=0.73.2
VNG_VERSION=1.42
BINDGEN=$MDW_CACHE/bindgen/bin/bindgen
VNG=$MDW_CACHE/venv/bin/vng

# kbuild must use Debian's rustc (it has rust-src); userspace uses rustup's.
KRUSTC=/usr/bin/rustc
export LIBCLANG_PATH=/usr/lib/llvm-19/lib

log() { printf '[mdwrite] %s\n' "$*" >&2; }
die() { printf '[mdwrite] error: %s\n' "$*" >&2; exit 1; }
