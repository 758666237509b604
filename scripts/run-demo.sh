#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The main job, from a fresh machine: install what is missing, build the
# speed-configured (release) kernel, the module and userspace, boot the VM,
# load the module, stream a generated MPEG-TS clip over RTP through it to
# several receivers and print each receiver's report (tests/vm/demo.sh).
set -euo pipefail

. "$(dirname "$0")/lib.sh"

bash "$MDW_ROOT/scripts/install-deps.sh"
# The demo's clip, made here into the clip cache the VM reads (ffmpeg in
# the VM takes half a minute).
clip=$(mktemp)
bash "$MDW_ROOT/tests/media/gen-clip.sh" "$clip" 4 2000000
rm -f "$clip"
exec "$MDW_ROOT/scripts/vm-run.sh" --kernel release "$MDW_ROOT/tests/vm/demo.sh"
