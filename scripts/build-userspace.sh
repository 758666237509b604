#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the userspace workspace (release); print the directory of binaries.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

cargo build --quiet --release --manifest-path "$MDW_ROOT/userspace/Cargo.toml" >&2
echo "$MDW_ROOT/userspace/target/release"
