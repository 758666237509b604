#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# mdwritesink through the module in a live pipeline, and its errors:
#
# 1. `gst-mdwrite-live` (userspace/gst-mdwrite/src/bin) plays
#    videotestsrc is-live=true ! x264enc ! mpegtsmux ! rtpmp2tpay !
#    mdwritesink backend=module in real time from a sender namespace to
#    receiver namespaces behind a bridge (`mdwrite recv --rtp`): client A
#    from the start, B added, C added, B removed while it plays, an
#    unreachable host and a neighbour that never answers ARP added (element
#    warnings, the stream goes on), then a bad clients string set while
#    playing (an element error). Checks: every receiver's stream has no
#    loss, duplicate, reordering or sequence error (no gap while the others
#    change), A and C got exactly what get-stats counted for them, B got
#    nothing newer than what A had been sent when `remove` returned.
# 2. At start, with the module: a bad clients string, an unreachable host
#    (ENETUNREACH) and a neighbour that never answers (EHOSTUNREACH after
#    the element's 5 s wait) are element errors, not crashes.
#
# Unloading the module while a pipeline plays is t_gst_sink.sh's (refused).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../media/lib.sh"
trap media_cleanup EXIT

# MDW_MEDIA_BACKEND=fallback runs it without the module (on the host); the
# neighbour that never answers is then not an error (no ARP wait).
backend=${MDW_MEDIA_BACKEND:-module}
[ "$backend" != module ] || test -c /dev/mdwrite || media_fail "the module is not loaded"
command -v gst-mdwrite-live >/dev/null || media_fail "no gst-mdwrite-live in $MDW_BINDIR"
# Only the plugins the pipelines use (a full registry scan takes minutes
# under TCG). gst-mdwrite-live registers mdwritesink itself; gst-launch-1.0
# finds it in the second directory.
sysdir=/usr/lib/x86_64-linux-gnu/gstreamer-1.0
mkdir -p "$MDW_MEDIA_DIR/live" "$MDW_MEDIA_DIR/launch"
for p in coreelements videotestsrc x264 mpegtsmux rtp; do
	ln -s "$sysdir/libgst$p.so" "$MDW_MEDIA_DIR/live/"
done
ln -s "$sysdir/libgstcoreelements.so" "$MDW_BINDIR/libgstmdwrite.so" "$MDW_MEDIA_DIR/launch/"
export GST_PLUGIN_PATH_1_0= GST_PLUGIN_PATH=
live_env=(env GST_PLUGIN_SYSTEM_PATH_1_0="$MDW_MEDIA_DIR/live" GST_REGISTRY_1_0="$MDW_MEDIA_DIR/live.bin")
launch_env=(env GST_PLUGIN_SYSTEM_PATH_1_0="$MDW_MEDIA_DIR/launch" GST_REGISTRY_1_0="$MDW_MEDIA_DIR/launch.bin")

media_setup 3
snd=$(media_snd_ns)
a=$(media_rx_addr 0):5000 b=$(media_rx_addr 1):5000 c=$(media_rx_addr 2):5000
# On the receivers' subnet, but nobody has it: ARP never answers.
silent=10.98.0.200:5000
media_recv_start --idle-timeout 60
media_log "receivers bound"

# 1. Live, clients changing while it plays.
arp=()
[ "$backend" != module ] || arp=(add="$silent" expect-warning="client $silent")
if ! ip netns exec "$snd" "${live_env[@]}" gst-mdwrite-live "$backend" "$a" \
	wait=3000 add="$b" wait=3000 add="$c" wait=2000 \
	stats="$b" remove="$b" stats="$a" stats="$b" wait=2000 \
	add=10.99.0.1:5000 expect-warning="client 10.99.0.1:5000" \
	"${arp[@]}" wait=1000 stats="$a" stats="$c" \
	clients="$a,nonsense" expect-error='bad client "nonsense"' \
	>"$MDW_MEDIA_DIR/live.txt" 2>&1; then
	media_fail "the live pipeline failed: $(cat "$MDW_MEDIA_DIR/live.txt")"
fi
media_log "live pipeline done"
cat "$MDW_MEDIA_DIR/live.txt"
# The pipeline is done: the receivers stop once their sockets are empty
# (not 60 s after their last packet, their idle timeout).
media_recv_stop || media_fail "a receiver failed: $(cat "$MDW_MEDIA_DIR"/recv*.txt "$MDW_MEDIA_DIR"/recv*.err)"
# stat_of NAME N: packets-sent of the Nth "stats NAME" line (final: of the
# line printed once the pipeline had stopped).
stat_of() {
	if [ "$2" = final ]; then
		sed -n "s/^final $1 packets-sent=\([0-9]*\)\$/\1/p" "$MDW_MEDIA_DIR/live.txt"
	else
		grep "^stats $1 packets-sent=" "$MDW_MEDIA_DIR/live.txt" |
			sed -n 's/.* packets-sent=\([0-9]*\) .*/\1/p' | sed -n "$2p"
	fi
}
declare -A got first last
for i in 0 1 2; do
	mapfile -t lines <"$MDW_MEDIA_DIR/recv$i.txt"
	line=${lines[*]}
	[ "${#lines[@]}" = 1 ] || media_fail "receiver $i: not one stream: $line"
	media_expect "receiver $i" "$line" lost=0 duplicates=0 reordered=0 seq_errors=0 not_rtp=0
	got[$i]=$(media_field "$line" packets)
	first[$i]=$(media_field "$line" first_seq)
	last[$i]=$(media_field "$line" last_seq)
	((got[$i] > 0)) || media_fail "receiver $i got nothing"
	echo "receiver $i: ${got[$i]} packets, sequence ${first[$i]}..${last[$i]}, no loss or gap"
done
grep -q "^stats $b none" "$MDW_MEDIA_DIR/live.txt" || media_fail "B still has statistics after remove"
a_end=$(stat_of "$a" final) c_end=$(stat_of "$c" final) a_at_remove=$(stat_of "$a" 1) b_at_remove=$(stat_of "$b" 1)
[ "${got[0]}" = "$a_end" ] || media_fail "A received ${got[0]} packets, get-stats says $a_end"
[ "${got[2]}" = "$c_end" ] || media_fail "C received ${got[2]} packets, get-stats says $c_end"
((got[1] >= b_at_remove)) || media_fail "B received ${got[1]} packets, get-stats said $b_at_remove before remove"
# Sequence numbers are the payloader's, the same for every client (16 bits;
# a few hundred packets do not wrap more than once).
seqdiff() { echo $((($1 - $2 + 65536) % 65536)); }
(($(seqdiff "${last[1]}" "${first[0]}") < a_at_remove)) ||
	media_fail "B got sequence ${last[1]}, newer than A's ${a_at_remove} packets from ${first[0]} when remove returned"
(($(seqdiff "${first[1]}" "${first[0]}") > 0 && $(seqdiff "${first[2]}" "${first[1]}") > 0)) ||
	media_fail "B and C did not start after A and B"
(($(seqdiff "${last[0]}" "${last[1]}") > 0)) || media_fail "A's stream did not go on after B left"
echo "ok: live pipeline: clients added and removed while playing, no gap for the others; warnings for unreachable clients, an error for a bad clients string"

# 2. Errors at start, with the module.
# start_error NAME PATTERN CLIENTS: the pipeline fails with an element error
# from mdwritesink matching PATTERN.
start_error() {
	local name=$1 pattern=$2 clients=$3
	if ip netns exec "$snd" "${launch_env[@]}" gst-launch-1.0 fakesrc num-buffers=1 ! \
		mdwritesink backend="$backend" clients="$clients" >"$MDW_MEDIA_DIR/err.txt" 2>&1; then
		media_fail "$name: the pipeline ran"
	fi
	grep -q "ERROR: from element .*mdwritesink" "$MDW_MEDIA_DIR/err.txt" && grep -qE "$pattern" "$MDW_MEDIA_DIR/err.txt" ||
		media_fail "$name: no element error matching '$pattern': $(cat "$MDW_MEDIA_DIR/err.txt")"
	echo "ok: $name: $(grep -E "$pattern" "$MDW_MEDIA_DIR/err.txt" | head -n 1)"
}
start_error "bad clients string" 'bad client "a b:5000"' "$a,a b:5000"
start_error "unreachable host" "client 10.99.0.1:5000: .*(unreachable|ENETUNREACH)" "$a,10.99.0.1:5000"
[ "$backend" != module ] || start_error "no ARP answer" "client $silent: " "$a,$silent"
echo "ok: mdwritesink ($backend): live, clients changing, errors"
