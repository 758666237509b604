#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# mdwritesink on the host, with the fallback backend, inside a network
# namespace of its own (only lo: nothing leaves the machine):
#
#   1. filesrc ! tsparse ! rtpmp2tpay ! mdwritesink to 8 receivers on
#      127.0.0.1: 4 GStreamer receivers (udpsrc ! rtpmp2tdepay ! filesink)
#      and 4 `mdwrite recv --rtp`; every receiver's payload equals the clip
#      byte for byte and ffprobe reads it. Twice: in real time (tsparse
#      set-timestamps, sync=true) and as fast as it goes (sync=false).
#   2. The same pipeline into multiudpsink gives the same payloads.
#   3. Bad clients strings and an unreachable client are element errors
#      (gst-launch-1.0 exits non-zero with the element's message).
#
#   tests/gst/host.sh [PLUGIN_DIR]    (default: userspace/target/release)
#
# Needs root (ip netns), gst-launch-1.0, ffmpeg/ffprobe, and `mdwrite` from
# the same target directory. Prints "ok - NAME" per check, exits non-zero if
# one failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
plugins=${1:-$root/userspace/target/release}
mdwrite=$plugins/mdwrite
[ -f "$plugins/libgstmdwrite.so" ] || { echo "no $plugins/libgstmdwrite.so (cargo build --release -p gst-mdwrite)" >&2; exit 1; }
[ -x "$mdwrite" ] || { echo "no $mdwrite (cargo build --release -p mdwrite-cli)" >&2; exit 1; }
export GST_PLUGIN_PATH=$plugins
# A registry of its own: the plugin is rescanned, never a stale entry.
dir=$(mktemp -d /tmp/mdw-gst.XXXXXX)
export GST_REGISTRY=$dir/registry.bin
ns=mdwgst$$
rmem_max=$(sysctl -n net.core.rmem_max)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	sysctl -qw net.core.rmem_max="$rmem_max"
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
# Receivers ask for 16 MiB socket buffers: with sync=false the whole clip
# arrives in a few milliseconds.
sysctl -qw net.core.rmem_max=$((32 << 20))
ip netns add "$ns"
ip -n "$ns" link set lo up
inns() { ip netns exec "$ns" "$@"; }

passed=0 failed=0
ok() {
	echo "ok - $1"
	passed=$((passed + 1))
}
notok() {
	echo "not ok - $1"
	failed=$((failed + 1))
}

clip=$dir/clip.ts
bash "$root/tests/media/gen-clip.sh" "$clip" 3 1500000
size=$(stat -c %s "$clip")
gst-inspect-1.0 mdwritesink >/dev/null || { echo "gst-inspect-1.0 finds no mdwritesink in $plugins" >&2; exit 1; }

# gst-inspect-1.0 documents every property and signal.
gst-inspect-1.0 mdwritesink >"$dir/inspect.txt"
missing=""
for p in clients ttl ttl-mc qos-dscp bind-address bind-port sync backend interval pace rtp-rewrite \
	'"add"' '"remove"' '"clear"' '"get-stats"'; do
	grep -qE "^  $p +(: [A-Z]|:  )" "$dir/inspect.txt" || missing+=" $p"
done
[ -z "$missing" ] && ok "gst-inspect-1.0 documents every property and signal" ||
	notok "gst-inspect-1.0 lacks:$missing"

caps='application/x-rtp,media=video,clock-rate=90000,encoding-name=MP2T,payload=33'
receivers=8
base=5000

# count ELEMENTS...: the RTP packets the clip gives through ELEMENTS (the
# payloader sends what tsparse hands it at once: not always 7 TS packets).
count() {
	gst-launch-1.0 -v filesrc location="$clip" ! "$@" ! fakesink silent=false 2>&1 |
		grep -c 'last-message = chain'
}

# run NAME SINK...: the clip through SINK to the 8 receivers; checks each.
run() {
	local name=$1 i port rpids=() clients="" packets
	shift
	# The elements before the sink.
	local pre=() a
	for a in "$@"; do
		case $a in mdwritesink | multiudpsink) break ;; esac
		pre+=("$a")
	done
	unset 'pre[-1]' # the "!" before the sink
	packets=$(count "${pre[@]}")
	for ((i = 0; i < receivers; i++)); do
		port=$((base + 2 * i))
		clients+="${clients:+,}127.0.0.1:$port"
		if ((i % 2 == 0)); then
			inns gst-launch-1.0 -q udpsrc address=127.0.0.1 port=$port buffer-size=$((16 << 20)) \
				caps="$caps" num-buffers=$packets timeout=20000000000 ! rtpmp2tdepay ! \
				filesink location="$dir/$name-$i.ts" >"$dir/$name-$i.log" 2>&1 &
		else
			inns "$mdwrite" recv --rtp --listen 127.0.0.1:$port --output "$dir/$name-$i.ts" \
				--packets $packets --idle-timeout 20 >"$dir/$name-$i.log" 2>&1 &
		fi
		rpids+=($!)
		pids+=($!)
	done
	# The receivers are bound once their ports show.
	for ((t = 0; t < 100; t++)); do
		[ "$(inns ss -uln | grep -c '127.0.0.1:50[01][0-9] ')" -ge $receivers ] && break
		sleep 0.1
	done
	if ! inns gst-launch-1.0 -q filesrc location="$clip" ! "$@" clients="$clients" \
		>"$dir/$name-send.log" 2>&1; then
		notok "$name: the sending pipeline failed"
		sed 's/^/#   /' "$dir/$name-send.log"
	fi
	local bad=0
	for ((i = 0; i < receivers; i++)); do
		if ! wait "${rpids[$i]}"; then
			echo "#   receiver $i failed:"
			sed 's/^/#   /' "$dir/$name-$i.log"
			bad=1
		elif ! cmp -s "$clip" "$dir/$name-$i.ts"; then
			echo "#   receiver $i: payload differs from the clip ($(stat -c %s "$dir/$name-$i.ts") of $size bytes)"
			bad=1
		elif ! ffprobe -v error -show_entries stream=codec_name -of csv=p=0 \
			"$dir/$name-$i.ts" >"$dir/probe.txt" || ! grep -q mpeg2video "$dir/probe.txt"; then
			echo "#   receiver $i: ffprobe does not read it"
			bad=1
		fi
	done
	if ((bad)); then
		notok "$name: $receivers receivers got the clip byte for byte"
	else
		ok "$name: $receivers receivers got the clip byte for byte ($packets packets each)"
	fi
}

run mdwritesink-realtime tsparse set-timestamps=true ! rtpmp2tpay ! \
	mdwritesink backend=fallback sync=true
run mdwritesink-fast tsparse ! rtpmp2tpay ! mdwritesink backend=fallback sync=false
run mdwritesink-interval0 tsparse ! rtpmp2tpay ! \
	mdwritesink backend=fallback sync=false interval=0
# pace: the fallback sends at once (the module's paced release needs it).
run mdwritesink-pace tsparse ! rtpmp2tpay ! \
	mdwritesink backend=fallback sync=false pace=true interval=20000000
run multiudpsink tsparse ! rtpmp2tpay ! multiudpsink sync=false
same=1
for ((i = 0; i < receivers; i++)); do
	cmp -s "$dir/multiudpsink-$i.ts" "$dir/mdwritesink-fast-$i.ts" || same=0
done
((same)) && ok "multiudpsink and mdwritesink: the same payloads" ||
	notok "multiudpsink and mdwritesink: the same payloads"

# error NAME PATTERN CLIENTS [PROPS]: the pipeline fails with an element
# error from mdwritesink whose text matches PATTERN.
error() {
	local name=$1 pattern=$2 clients=$3
	shift 3
	if inns gst-launch-1.0 fakesrc num-buffers=1 ! mdwritesink backend=fallback \
		clients="$clients" "$@" >"$dir/err.log" 2>&1; then
		notok "$name: the pipeline ran"
	elif ! grep -q "ERROR: from element .*mdwritesink" "$dir/err.log" ||
		! grep -qE "$pattern" "$dir/err.log"; then
		notok "$name: no element error matching '$pattern'"
		sed 's/^/#   /' "$dir/err.log"
	else
		ok "$name: element error ($(grep -E "$pattern" "$dir/err.log" | head -n 1))"
	fi
}
error "no port" 'bad client "127.0.0.1": no port' "127.0.0.1"
error "port 0" 'bad client "127.0.0.1:0"' "127.0.0.1:5000,127.0.0.1:0"
error "port too large" 'port is not 1 to 65535' "127.0.0.1:65536"
error "not a host" 'bad client "a b:5000"' "a b:5000"
error "bad IPv6" 'bad client "\[zz\]:5000"' "[zz]:5000"
error "unreachable" 'client 10.99.0.1:5000: .*(unreachable|ENETUNREACH)' "127.0.0.1:5000,10.99.0.1:5000"
error "unresolvable" 'client no-such-host.invalid:5000: cannot resolve' "no-such-host.invalid:5000"
error "bind-address of another family" 'bind-address ::1 is not of the family' \
	"127.0.0.1:5000" bind-address=::1

echo "gst host: $passed passed, $failed failed"
((failed == 0))
