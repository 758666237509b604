#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The main job inside the VM (started by scripts/run-demo.sh): load the
# module and show what it implements; generate a two-program MPEG-TS clip
# with ffmpeg and stream it over RTP through the module, in real time, to 4
# receivers (network namespaces behind a bridge) running `mdwrite recv`;
# print each receiver's report and check what they got (byte for byte, and
# ffprobe on one; tests/vm/t_media_rtp.sh checks more); then send 4 MiB to
# each of 8 receivers in one call.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../media/lib.sh"
trap media_cleanup EXIT

receivers=4 secs=4 rate=2000000
sysctl -qw net.core.netdev_max_backlog=100000
insmod "$MDW_MODDIR/mdwrite.ko"
echo "== $(uname -r): mdwrite loaded, /dev/mdwrite is $(stat -c '%F %a' /dev/mdwrite)"
echo "== mdwrite info"
mdwrite info

echo "== a $secs s MPEG-TS clip, 2 programs (MPEG-2 video + MP2 audio each), muxed at $rate b/s"
clip=$MDW_MEDIA_DIR/clip.ts
media_clip "$clip" "$secs" "$rate"
packets=$(media_packets "$clip")
echo "$(stat -c %s "$clip") bytes, $packets RTP packets of 7 TS packets each"

media_setup "$receivers"
media_recv_start --packets "$packets" --idle-timeout 60 --fail-on-loss
to=()
for ((i = 0; i < receivers; i++)); do to+=(--to "$(media_rx_addr "$i"):5000"); done
echo "== mdwrite send clip.ts --rtp --backend module ${to[*]}"
ip netns exec "$(media_snd_ns)" mdwrite send "$clip" "${to[@]}" --rtp --backend module |
	sed "s|$MDW_MEDIA_DIR/||"
recv_ok=1
media_recv_wait || recv_ok=0

echo "== each receiver's report (mdwrite recv --rtp)"
for ((i = 0; i < receivers; i++)); do
	line=$(cat "$MDW_MEDIA_DIR/recv$i.txt")
	f() { media_field "$line" "$1"; }
	printf '%s  ssrc %s  packets %s/%s  lost %s  reordered %s  duplicates %s  jitter %s ms  %s bytes\n' \
		"$(f listen)" "$(f ssrc)" "$(f packets)" "$(f expected)" "$(f lost)" "$(f reordered)" \
		"$(f duplicates)" "$(f jitter_ms)" "$(f bytes)"
done
[ "$recv_ok" = 1 ] || media_fail "a receiver lost packets (see its report above)"
echo "== what they received"
for ((i = 0; i < receivers; i++)); do
	cmp -s "$clip" "$MDW_MEDIA_DIR/out$i.ts" || media_fail "receiver $i: the payload differs from the clip"
done
echo "every receiver's payload is the clip, byte for byte; ffprobe of receiver 0's (no continuity error):"
media_probe "$MDW_MEDIA_DIR/out0.ts" >/dev/null
ffprobe -v error -show_entries program=program_id:stream=codec_name -of flat "$MDW_MEDIA_DIR/out0.ts" |
	awk -F'[.=]' '/^programs.*program_id/ { printf "%s  program %s:", (n++ ? "\n" : ""), $NF }
		/^programs.*codec_name/ { gsub(/"/, "", $NF); printf " %s", $NF } END { print "" }'

echo "== one call, 8 destinations"
mdwrite-selftests demo
trap - EXIT
media_cleanup
rmmod mdwrite
echo "== mdwrite unloaded"
