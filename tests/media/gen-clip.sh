#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Generates a small MPEG-TS test clip with ffmpeg: two programs, each an
# MPEG-2 video (test pattern, 320x240, 25 fps) and an MP2 audio (sine), muxed
# at a constant rate (so the PCRs give an exact bitrate).
#
#   gen-clip.sh OUT.ts [SECONDS [MUXRATE]]     (defaults: 3 s, 1500000 b/s)
#
# Needs ffmpeg (Debian package ffmpeg). Deterministic: the same arguments
# give the same file with the same ffmpeg and this script. So clips are
# cached in $MDW_CACHE/media (default ~/.cache/mdwrite/media) under a name
# made of the arguments, this script's hash and ffmpeg's version: a run on
# the host fills the cache, and a VM, which sees the host's files read-only,
# copies from it instead of running ffmpeg under TCG (minutes on the debug
# kernel). A cache that cannot be written is not used.
set -euo pipefail

out=${1:?usage: gen-clip.sh OUT.ts [SECONDS [MUXRATE]]}
secs=${2:-3}
rate=${3:-1500000}

command -v ffmpeg >/dev/null || { echo "gen-clip.sh: ffmpeg is not installed (apt-get install ffmpeg)" >&2; exit 1; }

cache=${MDW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mdwrite}/media
key=$( (cat "${BASH_SOURCE[0]}"; dpkg-query -W -f='${Version}' ffmpeg 2>/dev/null) | sha256sum | cut -c1-12)
cached=$cache/clip-${secs}s-$rate-$key.ts
if [ -s "$cached" ]; then
	cp "$cached" "$out"
	exit 0
fi

ffmpeg -nostdin -v error -y \
	-f lavfi -i "testsrc=size=320x240:rate=25" \
	-f lavfi -i "sine=frequency=440:sample_rate=48000" \
	-f lavfi -i "testsrc2=size=320x240:rate=25" \
	-f lavfi -i "sine=frequency=880:sample_rate=48000" \
	-t "$secs" \
	-map 0:v -map 1:a -map 2:v -map 3:a \
	-c:v mpeg2video -b:v 400k -maxrate 400k -bufsize 400k -g 25 \
	-c:a mp2 -b:a 64k \
	-program title=One:st=0:st=1 -program title=Two:st=2:st=3 \
	-muxrate "$rate" -flags +bitexact -fflags +bitexact \
	-f mpegts "$out"
if mkdir -p "$cache" 2>/dev/null && cp "$out" "$cached.tmp.$$" 2>/dev/null; then
	mv "$cached.tmp.$$" "$cached"
fi
