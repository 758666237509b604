#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# mdwritesink (GStreamer) through the module: the clip through
# `filesrc ! tsparse set-timestamps=true ! rtpmp2tpay ! mdwritesink
# backend=module` in a sender namespace to 8 receiver namespaces behind a
# bridge, 4 of them GStreamer receivers (udpsrc ! rtpmp2tdepay ! filesink)
# and 4 `mdwrite recv --rtp`. Checks: the element sent through the module,
# every receiver got the clip byte for byte, and the module counted the
# calls and packets.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../media/lib.sh"
gst_pids=()
cleanup() {
	for pid in "${gst_pids[@]}"; do kill "$pid" 2>/dev/null; done
	media_cleanup
}
trap cleanup EXIT

test -c /dev/mdwrite || media_fail "the module is not loaded"
[ -f "$MDW_BINDIR/libgstmdwrite.so" ] || media_fail "no libgstmdwrite.so in $MDW_BINDIR"
# Only the plugins the pipelines use: scanning all of them takes minutes
# under TCG.
plugins=$MDW_MEDIA_DIR/plugins
mkdir -p "$plugins"
sysdir=/usr/lib/x86_64-linux-gnu/gstreamer-1.0
for p in coreelements udp rtp mpegtsdemux; do
	ln -s "$sysdir/libgst$p.so" "$plugins/"
done
ln -s "$MDW_BINDIR/libgstmdwrite.so" "$plugins/"
export GST_PLUGIN_SYSTEM_PATH_1_0=$plugins GST_PLUGIN_PATH_1_0= GST_PLUGIN_PATH=
export GST_REGISTRY_1_0=$MDW_MEDIA_DIR/registry.bin
gst-inspect-1.0 mdwritesink >/dev/null || media_fail "gst-inspect-1.0 does not find mdwritesink"

receivers=8
media_setup $receivers
clip=$MDW_MEDIA_DIR/clip.ts
media_clip "$clip" 3 1500000
# The RTP packets the payloader makes of the clip.
packets=$(gst-launch-1.0 -v filesrc location="$clip" ! tsparse set-timestamps=true ! rtpmp2tpay ! \
	fakesink silent=false 2>&1 | grep -c 'last-message = chain')
media_log "$packets RTP packets"
caps='application/x-rtp,media=video,clock-rate=90000,encoding-name=MP2T,payload=33'
clients=""
for ((i = 0; i < receivers; i++)); do
	a=$(media_rx_addr "$i")
	clients+="${clients:+,}$a:5000"
	if ((i % 2 == 0)); then
		ip netns exec "$(media_rx_ns "$i")" gst-launch-1.0 -q udpsrc address="$a" port=5000 \
			buffer-size=$((8 << 20)) caps="$caps" num-buffers="$packets" ! rtpmp2tdepay ! \
			filesink location="$MDW_MEDIA_DIR/out$i.ts" >"$MDW_MEDIA_DIR/recv$i.txt" 2>&1 &
		gst_pids+=($!)
	else
		ip netns exec "$(media_rx_ns "$i")" mdwrite recv --rtp --listen "$a:5000" \
			--output "$MDW_MEDIA_DIR/out$i.ts" --packets "$packets" --idle-timeout 120 \
			--fail-on-loss >"$MDW_MEDIA_DIR/recv$i.txt" 2>&1 &
		media_recv_pids+=($!)
	fi
done
# Bound once every receiver's port shows.
for ((t = 0; t < 1200; t++)); do
	n=0
	for ((i = 0; i < receivers; i++)); do
		ip netns exec "$(media_rx_ns "$i")" ss -uln | grep -q ':5000 ' && n=$((n + 1))
	done
	((n == receivers)) && break
	sleep 0.1
done
((n == receivers)) || media_fail "only $n receivers bound"
media_log "sending to $clients"
GST_DEBUG=mdwritesink:4 ip netns exec "$(media_snd_ns)" gst-launch-1.0 filesrc location="$clip" ! \
	tsparse set-timestamps=true ! rtpmp2tpay ! \
	mdwritesink backend=module sync=true clients="$clients" >"$MDW_MEDIA_DIR/send.txt" 2>&1 ||
	media_fail "the pipeline failed: $(cat "$MDW_MEDIA_DIR/send.txt")"
grep -q "backend module" "$MDW_MEDIA_DIR/send.txt" ||
	media_fail "not sent by the module: $(cat "$MDW_MEDIA_DIR/send.txt")"
grep -o '[0-9]* calls through the module' "$MDW_MEDIA_DIR/send.txt" || true
for pid in "${gst_pids[@]}"; do
	wait "$pid" || media_fail "a GStreamer receiver failed: $(cat "$MDW_MEDIA_DIR"/recv*.txt)"
done
gst_pids=()
media_recv_wait || media_fail "a receiver failed: $(cat "$MDW_MEDIA_DIR"/recv*.txt)"
for ((i = 0; i < receivers; i++)); do
	cmp -s "$clip" "$MDW_MEDIA_DIR/out$i.ts" ||
		media_fail "receiver $i: the payload differs from the clip ($(stat -c %s "$MDW_MEDIA_DIR/out$i.ts") bytes)"
done
echo "ok: mdwritesink through the module, $receivers receivers ($((receivers / 2)) GStreamer, $((receivers / 2)) mdwrite recv), clip byte-exact"
