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
#   media_recv_stop        stops them once their sockets are drained, waits
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
	local ns dels=()
	[ -n "$media_cap_pid" ] && kill "$media_cap_pid" 2>/dev/null
	for pid in "${media_recv_pids[@]}"; do kill "$pid" 2>/dev/null; done
	for ns in /run/netns/"$media_ns"-*; do
		[ -e "$ns" ] && dels+=("netns del ${ns##*/}")
	done
	((${#dels[@]} == 0)) || printf '%s\n' "${dels[@]}" | ip -force -batch -
	rm -rf "$MDW_MEDIA_DIR"
}

media_rx_ns() { echo "$media_ns-r$1"; }
media_rx_addr() { echo "10.98.0.$((10 + $1))"; }
media_snd_ns() { echo "$media_ns-snd"; }

# media_setup N: one `ip -batch` makes the namespaces, one in the switch's
# the bridge and every veth pair, one in each host's its address (an exec
# costs ~0.5-1 s in the debug guest; one `ip` per command took a minute
# for 10 receivers).
media_setup() {
	local sw="$media_ns-sw" snd i
	media_n=$1
	snd=$(media_snd_ns)
	{
		echo "netns add $snd"
		echo "netns add $sw"
		for ((i = 0; i < media_n; i++)); do echo "netns add $(media_rx_ns "$i")"; done
	} | ip -batch -
	{
		echo "link add br0 type bridge"
		echo "link set br0 up"
		echo "link add p-snd type veth peer name s0 netns $snd"
		echo "link set p-snd master br0 up"
		for ((i = 0; i < media_n; i++)); do
			echo "link add p-r$i type veth peer name r0 netns $(media_rx_ns "$i")"
			echo "link set p-r$i master br0 up"
		done
	} | ip -n "$sw" -batch -
	printf '%s\n' "addr add 10.98.0.1/24 dev s0" "link set s0 up" "link set lo up" | ip -n "$snd" -batch -
	for ((i = 0; i < media_n; i++)); do
		printf '%s\n' "addr add $(media_rx_addr "$i")/24 dev r0" "link set r0 up" "link set lo up" |
			ip -n "$(media_rx_ns "$i")" -batch -
	done
}

# media_has FILE TEXT: FILE exists and holds TEXT (no process started).
media_has() {
	local content=
	[ -r "$1" ] || return 1
	IFS= read -r -d '' content <"$1" || true
	[[ $content == *"$2"* ]]
}

# media_count FILE TEXT: how many of FILE's lines hold TEXT, in $media_n_lines.
media_count() {
	local line
	media_n_lines=0
	[ -r "$1" ] || return 0
	while IFS= read -r line; do
		[[ $line != *"$2"* ]] || media_n_lines=$((media_n_lines + 1))
	done <"$1"
}

# media_until SECONDS CONDITION MESSAGE: evaluates CONDITION every 0.1 s
# until it holds; after SECONDS, fails with MESSAGE (evaluated then, so it
# can show a file's content at that time).
media_until() {
	local end=$((SECONDS + $1))
	until eval "$2"; do
		((SECONDS < end)) || media_fail "$(eval "echo \"$3\"")"
		sleep 0.1
	done
}

# media_holds PID FILE: process PID has FILE open (no process started).
media_holds() {
	local fd
	for fd in "/proc/$1/fd/"*; do
		[[ $fd -ef $2 ]] && return 0
	done
	return 1
}

# media_udp PID PORT: the process PID (in its own network namespace) has a
# UDP socket bound to PORT; its receive queue's bytes (hex) in
# $media_udp_rxq. Reads /proc/PID/net/udp without starting a process
# (`ip netns exec NS ss` per receiver per poll took seconds).
media_udp() {
	local hex line f
	printf -v hex '%04X' "$2"
	[ -r "/proc/$1/net/udp" ] || return 1
	while read -r -a f; do
		[[ ${f[1]} == *":$hex" ]] || continue
		media_udp_rxq=${f[4]#*:}
		return 0
	done <"/proc/$1/net/udp"
	return 1
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
		media_until 60 'media_has "$MDW_MEDIA_DIR/recv$i.err" "listening on"' \
			'receiver $i did not start: $(cat "$MDW_MEDIA_DIR/recv$i.err")'
	done
}

# media_recv_stop: once every receiver's socket has been empty for a
# second (the senders are done), stops the receivers with SIGTERM (each
# prints its report) and waits for them; 0 if all exited 0. Instead of
# their --idle-timeout, a wait of that long.
media_recv_stop() {
	local pid round
	for round in 1 2; do
		media_until 60 'media_recv_drained' 'receiver process $media_undrained does not drain its socket: $(cat /proc/$media_undrained/net/udp)'
		((round == 2)) || sleep 1
	done
	for pid in "${media_recv_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	media_recv_wait
}

# Every running receiver's socket on port 5000 is empty (one that has
# exited is left to media_recv_wait's status); otherwise the first that is
# not, its pid in $media_undrained.
media_recv_drained() {
	local pid
	for pid in "${media_recv_pids[@]}"; do
		kill -0 "$pid" 2>/dev/null || continue
		media_udp "$pid" 5000 && [ "$((16#$media_udp_rxq))" = 0 ] && continue
		media_undrained=$pid
		return 1
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
	media_until 60 'media_has "$MDW_MEDIA_DIR/tcpdump.err" "listening on"' \
		'tcpdump did not start: $(cat "$MDW_MEDIA_DIR/tcpdump.err")'
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
media_field() {
	local w
	for w in $1; do
		[[ $w != "$2="* ]] || {
			printf '%s\n' "${w#*=}"
			return
		}
	done
}

# media_expect CONTEXT LINE KEY=VALUE...: fails, naming CONTEXT, the key and
# LINE, unless LINE's key=value fields hold each KEY=VALUE. In bash, without
# a subshell per field (dozens of fields are checked per test).
media_expect() {
	local ctx=$1 line=$2 kv w got
	shift 2
	for kv in "$@"; do
		got=
		for w in $line; do
			[[ $w != "${kv%%=*}="* ]] || {
				got=${w#*=}
				break
			}
		done
		[ "$got" = "${kv#*=}" ] || media_fail "$ctx: ${kv%%=*} is '$got', expected ${kv#*=}: $line"
	done
}

# The fields a receiver's stream report has at 0 when nothing went wrong.
media_clean_stream=(lost=0 duplicates=0 reordered=0 seq_errors=0 ts_errors=0 not_rtp=0)

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
	local clip=$1 i line lines packets want f inputs=() maps=() probes=()
	packets=$(media_packets "$clip")
	for ((i = 0; i < media_n; i++)); do
		mapfile -t lines <"$MDW_MEDIA_DIR/recv$i.txt"
		line=${lines[*]}
		[ "${#lines[@]}" = 1 ] || media_fail "receiver $i: not one stream: $line"
		media_expect "receiver $i" "$line" pt=33 packets="$packets" "${media_clean_stream[@]}"
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
