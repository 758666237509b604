#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# mdwritesink (GStreamer) through the module: the clip through
# `filesrc ! tsparse set-timestamps=true ! rtpmp2tpay ! mdwritesink
# backend=module` in a sender namespace to 8 receiver namespaces behind a
# bridge, 4 of them GStreamer receivers (udpsrc ! rtpmp2tdepay ! filesink)
# and 4 `mdwrite recv --rtp`, in real time (sync=true), then paced
# (sync=false, pace=true, fq on the link). Checks: the element sent through
# the module, every receiver got the clip byte for byte, rmmod is refused
# while the first run plays (and the stream goes on), and the paced run
# took the clip's duration. Then the same pipeline into GStreamer's own
# multiudpsink (sync=false) to the same receivers: the module is not used
# (no file open on it while it plays) and every receiver gets the clip, the
# same bytes as the mdwritesink run delivered. Last, ffprobe reads one
# GStreamer receiver's and one `mdwrite recv`'s file of the mdwritesink run
# as MPEG-TS with the clip's programs and streams.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../media/lib.sh"
gst_pids=()
probe_pids=()
cleanup() {
	for pid in "${gst_pids[@]}" "${probe_pids[@]}"; do kill "$pid" 2>/dev/null; done
	media_cleanup
}
trap cleanup EXIT

# MDW_MEDIA_BACKEND=fallback runs it without the module (pacing unchecked).
backend=${MDW_MEDIA_BACKEND:-module}
[ "$backend" != module ] || test -c /dev/mdwrite || media_fail "the module is not loaded"
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
media_log "registry made"

receivers=8
media_setup $receivers
clip=$MDW_MEDIA_DIR/clip.ts
media_clip "$clip" 3 1500000
media_log "clip made"
# ffprobe's programs' and streams' (index, codec, type) and format (name,
# numbers of streams and programs) of FILE, one key=value a line: its header
# analysis, not every packet (the byte comparisons cover the rest).
probe() {
	ffprobe -v error -show_entries format=format_name,nb_programs,nb_streams:stream=index,codec_name,codec_type \
		-of flat "$1"
}
# The clip's, in the background while the pipelines run (its first start
# also loads ffmpeg's libraries, seconds under TCG).
probe "$clip" >"$MDW_MEDIA_DIR/probe-clip.txt" 2>&1 &
probe_pids+=($!)
# The RTP packets the payloader makes of the clip.
packets=$(gst-launch-1.0 -v filesrc location="$clip" ! tsparse set-timestamps=true ! rtpmp2tpay ! \
	fakesink silent=false 2>&1 | grep -c 'last-message = chain')
media_log "$packets RTP packets"
caps='application/x-rtp,media=video,clock-rate=90000,encoding-name=MP2T,payload=33'
clients=""
for ((i = 0; i < receivers; i++)); do
	clients+="${clients:+,}$(media_rx_addr "$i"):5000"
done

# Every receiver of $rx_pids has its port bound.
all_bound() {
	local pid
	for pid in "${rx_pids[@]}"; do
		media_udp "$pid" 5000 || return 1
	done
}

# run NAME SINK SINK-PROPERTIES...: the clip to the 8 receivers through SINK
# (mdwritesink or multiudpsink); checks that mdwritesink sent it through the
# $backend (multiudpsink: that no mdwritesink ran) and that every receiver
# got it byte for byte; sets $elapsed (seconds the sending pipeline took).
run() {
	local name=$1 sink=$2 i a t t0 props
	shift 2
	rx_pids=()
	props=(clients="$clients")
	[ "$sink" != mdwritesink ] || props+=(backend="$backend")
	for ((i = 0; i < receivers; i++)); do
		a=$(media_rx_addr "$i")
		rm -f "$MDW_MEDIA_DIR/out$i.ts"
		if ((i % 2 == 0)); then
			ip netns exec "$(media_rx_ns "$i")" gst-launch-1.0 -q udpsrc address="$a" port=5000 \
				buffer-size=$((8 << 20)) caps="$caps" num-buffers="$packets" ! rtpmp2tdepay ! \
				filesink location="$MDW_MEDIA_DIR/out$i.ts" >"$MDW_MEDIA_DIR/recv$i.txt" 2>&1 &
			gst_pids+=($!)
			rx_pids+=($!)
		else
			ip netns exec "$(media_rx_ns "$i")" mdwrite recv --rtp --listen "$a:5000" \
				--output "$MDW_MEDIA_DIR/out$i.ts" --packets "$packets" --idle-timeout 120 \
				--fail-on-loss >"$MDW_MEDIA_DIR/recv$i.txt" 2>&1 &
			media_recv_pids+=($!)
			rx_pids+=($!)
		fi
	done
	# Bound once every receiver's port shows.
	media_until 120 'all_bound' '$name: not every receiver bound: $(cat "$MDW_MEDIA_DIR"/recv*.txt)'
	media_log "$name: receivers bound"
	media_log "$name: sending to $clients"
	t0=$(date +%s.%N)
	GST_DEBUG=mdwritesink:4 ip netns exec "$(media_snd_ns)" gst-launch-1.0 filesrc location="$clip" ! \
		tsparse set-timestamps=true ! rtpmp2tpay ! \
		"$sink" "${props[@]}" "$@" >"$MDW_MEDIA_DIR/send.txt" 2>&1 &
	local sender=$!
	[ -z "${during:-}" ] || eval "$during"

	wait $sender || media_fail "$name: the pipeline failed: $(cat "$MDW_MEDIA_DIR/send.txt")"
	elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
	media_log "$name: the pipeline ended after ${elapsed}s"
	if [ "$sink" = mdwritesink ]; then
		grep -q "backend $backend" "$MDW_MEDIA_DIR/send.txt" ||
			media_fail "$name: not sent by the $backend: $(cat "$MDW_MEDIA_DIR/send.txt")"
		grep -o '[0-9]* calls through the [a-z]*' "$MDW_MEDIA_DIR/send.txt" || true
	elif grep -q mdwritesink "$MDW_MEDIA_DIR/send.txt"; then
		media_fail "$name: mdwritesink ran: $(cat "$MDW_MEDIA_DIR/send.txt")"
	fi
	# Every packet has been sent: the receivers end within seconds, or
	# lost some (a GStreamer receiver then waits for ever).
	for pid in "${gst_pids[@]}"; do
		for ((t = 0; t < 1200; t++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			media_fail "$name: a GStreamer receiver still waits 120 s after the pipeline ended; received: $(
				for ((i = 0; i < receivers; i += 2)); do stat -c '%n %s' "$MDW_MEDIA_DIR/out$i.ts"; done
			) of $(stat -c %s "$clip") bytes"
		fi
		wait "$pid" || media_fail "$name: a GStreamer receiver failed: $(cat "$MDW_MEDIA_DIR"/recv*.txt)"
	done
	gst_pids=()
	media_log "$name: GStreamer receivers done"
	media_recv_wait || media_fail "$name: a receiver failed: $(cat "$MDW_MEDIA_DIR"/recv*.txt)"
	for ((i = 0; i < receivers; i++)); do
		cmp -s "$clip" "$MDW_MEDIA_DIR/out$i.ts" ||
			media_fail "$name: receiver $i: the payload differs from the clip ($(stat -c %s "$MDW_MEDIA_DIR/out$i.ts") bytes)"
	done
	echo "ok: $name ($sink): $receivers receivers ($((receivers / 2)) GStreamer, $((receivers / 2)) mdwrite recv), clip byte-exact, ${elapsed}s"
}

# While it plays, the module cannot be unloaded (the element holds
# /dev/mdwrite open) and the stream goes on whole.
# Once the pipeline has opened /dev/mdwrite (gst-launch-1.0 takes seconds
# to start under TCG).
unload_refused() {
	media_until 120 'media_holds "$sender" /dev/mdwrite' \
		'the pipeline did not open /dev/mdwrite: $(cat "$MDW_MEDIA_DIR/send.txt")'
	if rmmod mdwrite 2>/dev/null; then
		media_fail "rmmod succeeded while mdwritesink played"
	fi
	grep -q '^mdwrite ' /proc/modules || media_fail "the module is gone"
	echo "rmmod refused while playing"
}
during=
[ "$backend" != module ] || during=unload_refused
run realtime mdwritesink sync=true
during=
# Paced: fq on the sender's link; with sync=false each call is paced over
# the stream time its buffers cover (at least 20 ms) and returns once its
# window is over, so the 3 s clip takes about 3 s although nothing syncs to
# the clock.
[ "$backend" != module ] || ip netns exec "$(media_snd_ns)" tc qdisc replace dev s0 root fq
run paced mdwritesink sync=false pace=true interval=20000000
[ "$backend" != module ] || [ "$(echo "$elapsed >= 2.5" | bc)" = 1 ] || media_fail "paced: the clip took ${elapsed}s, less than its 3 s"
echo "ok: mdwritesink through the module, sync=true and paced"
[ "$backend" != module ] || ip netns exec "$(media_snd_ns)" tc qdisc del dev s0 root

# What the mdwritesink run delivered, kept for the comparison and ffprobe.
for ((i = 0; i < receivers; i++)); do
	mv "$MDW_MEDIA_DIR/out$i.ts" "$MDW_MEDIA_DIR/mdw$i.ts"
done
# The same pipeline into multiudpsink: the module must not be used, i.e.
# nothing holds it (its refcount, sampled every 0.1 s while the pipeline
# runs, stays at what it was before).
module_unused() {
	local r0 r
	read -r r0 </sys/module/mdwrite/refcnt
	while kill -0 "$sender" 2>/dev/null; do
		read -r r </sys/module/mdwrite/refcnt
		[ "$r" = "$r0" ] || media_fail "multiudpsink: the module's refcount went from $r0 to $r while it played"
		if media_holds "$sender" /dev/mdwrite; then
			media_fail "multiudpsink: the pipeline opened /dev/mdwrite"
		fi
		sleep 0.1
	done
	echo "multiudpsink: the module was not used (refcount $r0 throughout)"
}
during=
[ "$backend" != module ] || during=module_unused
run multiudpsink multiudpsink sync=false
during=
for ((i = 0; i < receivers; i++)); do
	cmp -s "$MDW_MEDIA_DIR/mdw$i.ts" "$MDW_MEDIA_DIR/out$i.ts" ||
		media_fail "receiver $i: multiudpsink's payload differs from mdwritesink's"
done
echo "ok: multiudpsink delivered the same payloads as mdwritesink"

# ffprobe: one GStreamer receiver's (0) and one mdwrite recv's (1) file of
# the mdwritesink run, in parallel, against the clip's.
probe "$MDW_MEDIA_DIR/mdw0.ts" >"$MDW_MEDIA_DIR/probe0.txt" 2>&1 &
probe_pids+=($!)
probe "$MDW_MEDIA_DIR/mdw1.ts" >"$MDW_MEDIA_DIR/probe1.txt" 2>&1 &
probe_pids+=($!)
for pid in "${probe_pids[@]}"; do
	wait "$pid" || media_fail "ffprobe failed: $(cat "$MDW_MEDIA_DIR"/probe*.txt)"
done
probe_pids=()
want=$(cat "$MDW_MEDIA_DIR/probe-clip.txt")
codecs=$(sed -n 's/^streams\.stream\.[0-9]*\.codec_name="\(.*\)"$/\1/p' <<<"$want" | tr '\n' ' ')
media_log "ffprobe of the clip: streams $codecs"
grep -qx 'format.format_name="mpegts"' <<<"$want" && grep -qx 'format.nb_programs=2' <<<"$want" &&
	[ "$codecs" = "mpeg2video mp2 mpeg2video mp2 " ] ||
	media_fail "ffprobe does not read the clip as MPEG-TS with 2 programs of an MPEG-2 video and an MP2 audio: $want"
for i in 0 1; do
	[ "$(cat "$MDW_MEDIA_DIR/probe$i.txt")" = "$want" ] ||
		media_fail "receiver $i: ffprobe reads other streams than the clip's: $(cat "$MDW_MEDIA_DIR/probe$i.txt")"
done
echo "ok: ffprobe reads receivers 0 (GStreamer) and 1 (mdwrite recv) as the clip: MPEG-TS, 2 programs, 2 MPEG-2 videos, 2 MP2 audios"
