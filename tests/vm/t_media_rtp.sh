#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# MPEG-TS over RTP through the module: a generated two-program clip streamed
# by `mdwrite send --backend module --rtp` from a sender namespace to 3
# receivers in other namespaces behind a bridge, each running
# `mdwrite recv`. Checks: every receiver got the clip byte for byte with no
# loss, reordering or sequence error; ffprobe reads it as the source's
# programs and streams with no continuity error; ffmpeg decodes it cleanly;
# tshark's RTP analysis of a capture of the sender's link finds 3 streams,
# all packets, none lost, no problem.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../media/lib.sh"
trap media_cleanup EXIT

# MDW_MEDIA_BACKEND=fallback runs the same test without the module.
backend=${MDW_MEDIA_BACKEND:-module}
[ "$backend" != module ] || test -c /dev/mdwrite || media_fail "the module is not loaded"
# On the debug kernel (kmemleak) under TCG, ffprobe, ffmpeg and tshark take
# minutes each: there the test checks the receivers' RTP analysis and the
# bytes only (the received files are then the clip, which the host tests
# check with the tools). MDW_MEDIA_TOOLS=1 forces the tools.
if [ -z "${MDW_MEDIA_TOOLS:-}" ] && [ -e /sys/kernel/debug/kmemleak ]; then
	export MDW_MEDIA_TOOLS=0
	echo "debug kernel: checking the RTP analysis and the bytes, not with ffprobe/ffmpeg/tshark"
fi
tools=${MDW_MEDIA_TOOLS:-1}
[ "$tools" = 0 ] || media_warm_tshark
media_setup 3
media_log "generating the clip"
clip=$MDW_MEDIA_DIR/clip.ts
# The clip of the host test rtp_to_three_receivers_over_loopback: cached by
# tests/media/gen-clip.sh when the host tests ran first (scripts/run-tests.sh).
media_clip "$clip" 3 1500000
# Each receiver stops at its last packet; the idle timeout (long: on the
# debug kernel the steps before the first packet take a minute) if some are lost.
media_recv_start --packets "$(media_packets "$clip")" --idle-timeout 120 --fail-on-loss
[ "$tools" = 0 ] || media_capture_start
media_log "sending"
to=()
for i in 0 1 2; do to+=(--to "$(media_rx_addr "$i"):5000"); done
ip netns exec "$(media_snd_ns)" mdwrite send "$clip" "${to[@]}" --rtp --backend "$backend" \
	>"$MDW_MEDIA_DIR/send.txt" || media_fail "mdwrite send failed: $(cat "$MDW_MEDIA_DIR/send.txt")"
cat "$MDW_MEDIA_DIR/send.txt"
grep -q "^total backend=$backend " "$MDW_MEDIA_DIR/send.txt" || media_fail "not sent by the module"
media_recv_wait || media_fail "a receiver failed: $(cat "$MDW_MEDIA_DIR"/recv*)"
[ "$tools" = 0 ] || media_capture_stop
cat "$MDW_MEDIA_DIR"/recv?.txt
media_log "checking"
media_check "$clip"
if [ "$tools" = 0 ]; then
	echo "ok: 3 receivers, no loss, clip byte-exact"
else
	echo "ok: 3 receivers, no loss, clip byte-exact, ffprobe/ffmpeg/tshark clean"
fi
