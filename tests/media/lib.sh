# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# Media streaming through network namespaces, shared by the VM test
# tests/vm/t_media_rtp.sh and the main job tests/vm/demo.sh. Source it; run
# as root with `mdwrite` on PATH.
#
#   media_setup N          sender namespace, a bridge in a "switch"
#                          namespace, N receiver namespaces (10.98.0.10+i);
#                          removed by media_cleanup (set as an EXIT trap)
#   media_clip FILE S R    a two-program MPEG-TS clip of S seconds at R b/s
#   media_recv_start ARGS  one `mdwrite recv --rtp` per receiver, port 5000,
#                          payload to $MDW_MEDIA_DIR/outI.ts; returns once bound
#   media_packets FILE     the number of 1316-byte packets of FILE
#   media_recv_wait        waits for them; 0 if all exited 0
#   media_capture_start    tcpdump on the sender's link into cap.pcap
#   media_capture_stop
#   media_check FILE       ffprobe/ffmpeg/tshark/byte checks of every receiver
#   media_warm_tshark      start loading tshark in the background (slow in a VM)
#
# Files go to $MDW_MEDIA_DIR (a new temporary directory).

MDW_MEDIA_DIR=$(mktemp -d /tmp/mdw-media.XXXXXX)
media_ns=mdwm$$
media_n=0
media_recv_pids=()
media_cap_pid=

media_log() { echo "[${SECONDS}s] $*"; }
media_fail() {
	echo "FAIL: $*" >&2
	exit 1
}

media_cleanup() {
	local ns
	[ -n "$media_cap_pid" ] && kill "$media_cap_pid" 2>/dev/null
	for pid in "${media_recv_pids[@]}"; do kill "$pid" 2>/dev/null; done
	for ns in $(ip netns list | awk '{print $1}' | grep "^$media_ns-"); do
		ip netns del "$ns"
	done
	rm -rf "$MDW_MEDIA_DIR"
}

media_rx_ns() { echo "$media_ns-r$1"; }
media_rx_addr() { echo "10.98.0.$((10 + $1))"; }
media_snd_ns() { echo "$media_ns-snd"; }

# media_setup N
media_setup() {
	local sw="$media_ns-sw" snd i ns
	media_n=$1
	snd=$(media_snd_ns)
	ip netns add "$snd"
	ip netns add "$sw"
	ip -n "$sw" link add br0 type bridge
	ip -n "$sw" link set br0 up
	ip -n "$snd" link add s0 type veth peer name p-snd netns "$sw"
	ip -n "$sw" link set p-snd master br0 up
	ip -n "$snd" addr add 10.98.0.1/24 dev s0
	ip -n "$snd" link set s0 up
	ip -n "$snd" link set lo up
	for ((i = 0; i < media_n; i++)); do
		ns=$(media_rx_ns "$i")
		ip netns add "$ns"
		ip -n "$ns" link add r0 type veth peer name "p-r$i" netns "$sw"
		ip -n "$sw" link set "p-r$i" master br0 up
		ip -n "$ns" addr add "$(media_rx_addr "$i")/24" dev r0
		ip -n "$ns" link set r0 up
		ip -n "$ns" link set lo up
	done
}

# media_clip FILE SECONDS RATE
media_clip() {
	bash "$(dirname "${BASH_SOURCE[0]}")/gen-clip.sh" "$@"
}

# media_recv_start [mdwrite recv options...]
media_recv_start() {
	local i ns
	for ((i = 0; i < media_n; i++)); do
		ns=$(media_rx_ns "$i")
		ip netns exec "$ns" mdwrite recv --rtp --listen "$(media_rx_addr "$i"):5000" \
			--output "$MDW_MEDIA_DIR/out$i.ts" "$@" \
			>"$MDW_MEDIA_DIR/recv$i.txt" 2>"$MDW_MEDIA_DIR/recv$i.err" &
		media_recv_pids+=($!)
	done
	for ((i = 0; i < media_n; i++)); do
		local t=0
		until grep -q "listening on" "$MDW_MEDIA_DIR/recv$i.err" 2>/dev/null; do
			((t++ < 600)) || media_fail "receiver $i did not start: $(cat "$MDW_MEDIA_DIR/recv$i.err")"
			sleep 0.1
		done
	done
}

media_recv_wait() {
	local pid rc=0
	for pid in "${media_recv_pids[@]}"; do
		wait "$pid" || rc=1
	done
	media_recv_pids=()
	return $rc
}

media_capture_start() {
	ip netns exec "$(media_snd_ns)" tcpdump -q -U --immediate-mode -B 16384 -i s0 -w "$MDW_MEDIA_DIR/cap.pcap" \
		udp dst port 5000 2>"$MDW_MEDIA_DIR/tcpdump.err" &
	media_cap_pid=$!
	local t=0
	until grep -q "listening on" "$MDW_MEDIA_DIR/tcpdump.err" 2>/dev/null; do
		((t++ < 600)) || media_fail "tcpdump did not start: $(cat "$MDW_MEDIA_DIR/tcpdump.err")"
		sleep 0.1
	done
}

media_capture_stop() {
	sleep 0.5
	kill -INT "$media_cap_pid"
	wait "$media_cap_pid" || true
	media_cap_pid=
}

# The number of 1316-byte payloads of FILE.
media_packets() { echo $((($(stat -c %s "$1") + 1315) / 1316)); }

# Why OUT differs from CLIP, both in 1316-byte payloads: the first payload
# that differs, and whether it is another of the clip's payloads (the
# stream arrived reordered) or none of them (the bytes changed).
media_diff_packets() {
	local clip=$1 out=$2 b k j n
	b=$(cmp "$clip" "$out" 2>&1 | sed -n 's/.* differ: byte \([0-9]*\),.*/\1/p')
	[ -n "$b" ] || { cmp "$clip" "$out" 2>&1; return; }
	k=$(((b - 1) / 1316))
	n=$(media_packets "$clip")
	for ((j = 0; j < n; j++)); do
		if cmp -s -n 1316 -i $((j * 1316)):$((k * 1316)) "$clip" "$out"; then
			echo "payload $k of $n is the clip's payload $j (reordered)"
			return
		fi
	done
	echo "payload $k of $n is none of the clip's (changed bytes)"
}

# The value of KEY in a line of key=value fields.
media_field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

# ffprobe's programs and streams of FILE on stdout; reads every packet and
# fails if the demuxer reports a continuity error.
media_probe() {
	local log
	log=$(mktemp)
	ffprobe -v debug -count_packets -show_entries \
		program=program_id,nb_streams:stream=index,codec_name,codec_type -of compact "$1" 2>"$log" ||
		media_fail "ffprobe $1: $(grep -v '^\[' "$log" | tail -3)"
	if grep "Continuity check failed" "$log" >&2; then
		media_fail "ffprobe reports continuity errors in $1"
	fi
	rm -f "$log"
}

# Starts loading tshark in the background: under TCG its first start reads
# ~100 MB of libraries over 9p and takes a minute or two.
media_warm_tshark() {
	tshark -v >/dev/null 2>&1 &
}

# media_check CLIP: every receiver got CLIP over RTP: its report, byte for
# byte, and unless MDW_MEDIA_TOOLS=0, ffprobe, ffmpeg and tshark (if a
# capture was made).
media_check() {
	local clip=$1 i line packets want f inputs=() maps=() probes=()
	packets=$(media_packets "$clip")
	for ((i = 0; i < media_n; i++)); do
		line=$(cat "$MDW_MEDIA_DIR/recv$i.txt")
		[ "$(wc -l <<<"$line")" = 1 ] || media_fail "receiver $i: not one stream: $line"
		[ "$(media_field "$line" pt)" = 33 ] || media_fail "receiver $i: payload type: $line"
		[ "$(media_field "$line" packets)" = "$packets" ] || media_fail "receiver $i: $packets packets expected: $line"
		for f in lost duplicates reordered seq_errors ts_errors not_rtp; do
			[ "$(media_field "$line" $f)" = 0 ] || media_fail "receiver $i: $f: $line"
		done
		cmp -s "$clip" "$MDW_MEDIA_DIR/out$i.ts" || media_fail "receiver $i: the payload differs from the clip"
	done
	[ "${MDW_MEDIA_TOOLS:-1}" != 0 ] || return 0
	# ffprobe the clip and every received file in parallel (each ffprobe
	# start costs seconds in a VM).
	media_probe "$clip" >"$MDW_MEDIA_DIR/probe-clip.txt" &
	probes+=($!)
	for ((i = 0; i < media_n; i++)); do
		media_probe "$MDW_MEDIA_DIR/out$i.ts" >"$MDW_MEDIA_DIR/probe$i.txt" &
		probes+=($!)
	done
	for f in "${probes[@]}"; do
		wait "$f" || media_fail "ffprobe failed (see above)"
	done
	want=$(cat "$MDW_MEDIA_DIR/probe-clip.txt")
	grep -q "program_id=2|nb_streams=2" <<<"$want" || media_fail "the clip lacks its second program: $want"
	for ((i = 0; i < media_n; i++)); do
		f=$(cat "$MDW_MEDIA_DIR/probe$i.txt")
		[ "$f" = "$want" ] || media_fail "receiver $i: ffprobe sees other programs: $f"
		inputs+=(-i "$MDW_MEDIA_DIR/out$i.ts")
		maps+=(-map "$i")
	done
	media_log "ffprobe done; decoding with ffmpeg"
	# One ffmpeg decodes every received file (each start costs seconds in a VM).
	f=$(ffmpeg -nostdin -v error "${inputs[@]}" "${maps[@]}" -f null - 2>&1) || media_fail "ffmpeg failed: $f"
	[ -z "$f" ] || media_fail "ffmpeg decoding errors: $f"
	[ -e "$MDW_MEDIA_DIR/cap.pcap" ] || return 0
	media_log "RTP analysis with tshark"
	# Wireshark's RTP stream analysis: one stream per receiver, all packets,
	# none lost, no problem flagged (wrong sequence, timestamp, ...).
	tshark -r "$MDW_MEDIA_DIR/cap.pcap" -d udp.port==5000,rtp -q -z rtp,streams \
		>"$MDW_MEDIA_DIR/rtp-streams.txt" 2>/dev/null || media_fail "tshark failed"
	for ((i = 0; i < media_n; i++)); do
		line=$(awk -v a="$(media_rx_addr "$i")" '$5 == a && $6 == 5000' "$MDW_MEDIA_DIR/rtp-streams.txt")
		[ -n "$line" ] || media_fail "tshark found no RTP stream to receiver $i: $(cat "$MDW_MEDIA_DIR/rtp-streams.txt")"
		read -r -a cols <<<"$line"
		[ "${cols[9]}" = "$packets" ] || media_fail "tshark: receiver $i: $packets packets expected: $line"
		[ "${cols[10]}" = 0 ] || media_fail "tshark: receiver $i: lost packets: $line"
		[ "${line: -1}" != X ] || media_fail "tshark: receiver $i: problems flagged: $line"
	done
}
