#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The benchmark inside the VM (started by scripts/bench.sh through
# scripts/vm-run.sh, one vCPU, QEMU -icount shift=0,sleep=off).
#
#   guest-bench.sh OUTDIR [full|quick]
#   guest-bench.sh OUTDIR profile METHOD[,METHOD...] [DESTS KIB PAYLOAD TIMES]
#   guest-bench.sh OUTDIR run ARGS...   (one `mdwrite-bench run ARGS...`)
#   guest-bench.sh OUTDIR pace [ARGS...] (`mdwrite-bench pace`, veth pair)
#   guest-bench.sh OUTDIR relay [ARGS...] (`mdwrite-bench relay`, namespaces)
#   guest-bench.sh OUTDIR sender        (`mdwrite send`, whole program)
#   guest-bench.sh OUTDIR pipeline      (GStreamer: multiudpsink, mdwritesink)
#   guest-bench.sh OUTDIR xprof METHOD DESTS PACKETS [PAYLOAD [TIMES [fanout]]]
#
# Sets up dummy0 like a NIC (checksum offload on, UDP segmentation offload
# off, so GSO is done in software), a permanent neighbour entry per
# destination, loads mdwrite.ko, checks that the clock counts instructions,
# then runs every method over every workload with checksum offload on, and
# a second table with it off. Writes OUTDIR/results.csv, OUTDIR/calibrate.txt
# and OUTDIR/setup.txt.
#
# profile: where METHOD's instructions go. Sends the workload (default the
# headline, 64 destinations x 256 KiB of 1472-byte packets; KIB "1p" is one
# full packet per destination) TIMES times
# under `perf record -e cpu-clock` (timer samples, so proportional to
# instructions under -icount; one sample per tick, hence the repetitions)
# and writes OUTDIR/profile-METHOD.txt.
set -eu

out=$1 mode=${2:-full}
dev=dummy0
maxdests=512

ip link show "$dev" >/dev/null 2>&1 || ip link add "$dev" type dummy
# Nothing but the benchmark may transmit on the device (its counter checks
# every row): no IPv6 (router solicitations, MLD), and no ARP (permanent
# neighbour entries below).
sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1"
ip link set "$dev" up
ip addr add 10.0.0.1/8 dev "$dev"
# Room for a permanent neighbour entry per destination.
sysctl -qw net.ipv4.neigh.default.gc_thresh1=4096 net.ipv4.neigh.default.gc_thresh2=8192 \
	net.ipv4.neigh.default.gc_thresh3=16384
mdwrite-bench neigh "$dev" "$maxdests" | ip -batch -
ethtool -K "$dev" tx-checksumming on tx-udp-segmentation off >/dev/null
insmod "$MDW_MODDIR/mdwrite.ko"

{
	echo "kernel: $(uname -r) ($(uname -v))"
	echo "cpus: $(nproc), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n1)," \
		"string-copy flags: $(grep -m1 -ow -E 'erms|fsrm' /proc/cpuinfo | sort -u | paste -sd' ')"
	echo "mdwrite: $(mdwrite info | grep -E 'abi_version|features' | paste -sd' ')"
	ethtool -k "$dev" | grep -E '^(tx-checksumming|scatter-gather|tx-udp-segmentation|generic-segmentation-offload):'
} >"$out/setup.txt"
cat "$out/setup.txt"

mdwrite-bench calibrate | tee "$out/calibrate.txt"

# Kernel (and module) symbol of every frame of every sample: reads the
# output of `perf script -F ip` (frames, samples separated by blank lines)
# and prints "sample frame symbol", from /proc/kallsyms, which also has the
# module's symbols (perf finds no mdwrite.ko file to read them from).
resolve_samples() {
	{
		awk '$2 ~ /^[tT]$/ { print $1, "S", $3 }' /proc/kallsyms
		awk 'NF == 0 { if (f) { s++; f = 0 }; next }
			{ x = $1; while (length(x) < 16) x = "0" x; print x, "F", s, f++ }'
	} | LC_ALL=C sort -k1,1 -k2,2r |
		awk '$2 == "S" { cur = $3; next } { print $3, $4, (cur == "" ? "[user]" : cur) }'
}

# Share of samples per symbol, self and inclusive, biggest first, as
# instructions per packet ($1 per packet in all); Rust symbols demangled.
summarise() {
	awk -v pp="$1" '
	{ n[$1] = 1; if ($2 == 0) self[$3]++; if (!seen[$1, $3]++) incl[$3]++ }
	END {
		total = length(n)
		printf "# %d samples\n", total
		for (k in self) printf "self %6.2f%% %6.0f instr/pkt  %s\n", 100 * self[k] / total, pp * self[k] / total, k
		for (k in incl) if (incl[k] / total >= 0.02)
			printf "incl %6.2f%% %6.0f instr/pkt  %s\n", 100 * incl[k] / total, pp * incl[k] / total, k
	}' | sort -k1,1r -k2,2nr | mdwrite-bench demangle
}

if [ "$mode" = profile ]; then
	methods=$3 dests=${4:-64} kib=${5:-256} payload=${6:-1472} times=${7:-200}
	# KIB, or "Np" for N full packets per destination (the live regime).
	case "$kib" in
	*p) size="--packets ${kib%p}" ;;
	*) size="--kib $kib" ;;
	esac
	sysctl -qw kernel.kptr_restrict=0 kernel.perf_event_paranoid=-1
	export HOME=$out
	for method in ${methods//,/ }; do
		perf record -q -N -e cpu-clock -g -o "$out/perf.data" -- \
			mdwrite-bench repeat --ifname "$dev" --method "$method" --dests "$dests" \
			$size --payload "$payload" --times "$times" 2>&1 | tee "$out/profile-run.txt"
		per_packet=$(sed -n 's/.* \([0-9]*\) instructions\/packet$/\1/p' "$out/profile-run.txt")
		{
			echo "# $method, $dests destinations x $kib KiB, payload $payload, $times calls; $(uname -r)"
			cat "$out/profile-run.txt"
			echo "# timer samples (one per 4M guest instructions); instr/pkt = share x $per_packet"
			echo "# self: where the instructions are executed; incl: in the function or its callees"
			perf script -i "$out/perf.data" -F ip 2>/dev/null | resolve_samples | summarise "$per_packet"
		} >"$out/profile-$method.txt"
	done
	rmmod mdwrite
	exit 0
fi

csv=$out/results.csv
rm -f "$csv"
status=0

# The live regime (issue 13): one call per interval carrying 1 to 16 full
# packets per destination, one payload fanned out to many destinations,
# and a real driver with deferred TX completion (virtio-net).
live() {
	mdwrite-bench run --ifname "$dev" --table "live, offload on" --csv "$csv" \
		--dests 8,64,512 --packets 1,2,4,8,16 || status=1
	mdwrite-bench run --ifname "$dev" --table "live fan-out, offload on" --csv "$csv" \
		--payloads 1316+rtp --dests 8,64,512 --packets 1 --fanout || status=1
	virtio_up || return 0
	mdwrite-bench run --ifname "$vdev" --table "live virtio-net" --csv "$csv" \
		--payloads 1472 --dests 64 --packets 1 || status=1
	mdwrite-bench run --ifname "$vdev" --table "virtio-net" --csv "$csv" \
		--payloads 1472 --dests 64 --kib 256 --extra "" || status=1
	virtio_down
}

# The first of the VM's two virtio-net NICs (scripts/vm-run.sh), set up in
# place of dummy0: its name in $vdev. The other is up, in a namespace of
# its own: QEMU's hub holds what the first sends for a peer that cannot
# receive, and with the peer down the first's TX queue stalled after one
# packet (NETDEV WATCHDOG, no row in 8 minutes). Up, the peer's device
# filters the frames by MAC (none is its own), so the guest receives
# nothing. Fails (status 1) without those NICs.
virtio_up() {
	local peer
	vdev=$(ip -o link | awk -F': ' '/52:54:00:00:00:10/ { print $2; exit }')
	peer=$(ip -o link | awk -F': ' '/52:54:00:00:00:11/ { print $2; exit }')
	if [ -z "$vdev" ] || [ -z "$peer" ]; then
		echo "no virtio-net NICs: virtio rows skipped" | tee -a "$out/setup.txt"
		return 1
	fi
	ip netns add mdw-sink
	ip link set "$peer" netns mdw-sink
	ip -n mdw-sink link set "$peer" up
	ip addr del 10.0.0.1/8 dev "$dev"
	# Only the benchmark transmits there, as on dummy0 (a router
	# solicitation once counted one packet more in a row).
	sysctl -qw "net.ipv6.conf.$vdev.disable_ipv6=1"
	ip link set "$vdev" up
	ip addr add 10.0.0.1/8 dev "$vdev"
	mdwrite-bench neigh "$vdev" "$maxdests" | ip -batch -
	ethtool -k "$vdev" | grep -E '^(tx-checksumming|scatter-gather):' |
		sed "s/^/virtio-net $vdev: /" | tee -a "$out/setup.txt"
}

# Back to dummy0.
virtio_down() {
	ip addr del 10.0.0.1/8 dev "$vdev"
	ip link set "$vdev" down
	ip netns del mdw-sink
	ip addr add 10.0.0.1/8 dev "$dev"
}

# Paced release (issue 14): mixed-bitrate streams through a veth pair into
# a receiving namespace, time-stamped there; paced by the module, through
# fq, and unpaced. Writes OUTDIR/pace.md and OUTDIR/pace.csv.
pace() {
	ip netns add rx
	ip link add pv0 type veth peer name pv1 netns rx
	sysctl -qw net.ipv6.conf.pv0.disable_ipv6=1
	ip netns exec rx sysctl -qw net.ipv6.conf.pv1.disable_ipv6=1
	ip link set pv0 up
	ip -n rx link set pv1 up
	tc qdisc replace dev pv0 root fq flow_limit 1000
	mdwrite-bench pace --ifname pv0 --rx-netns rx --rx-ifname pv1 \
		--csv "$out/pace.csv" "$@" | tee "$out/pace.md" || status=1
	ip link del pv0
	ip netns del rx
}

# Relaying (issue 15): a source namespace sends an RTP stream over a veth
# pair into the relay's namespace, whose relay sends each packet on to N
# destinations on a dummy device there (permanent neighbour entries);
# `mdwrite relay` and the stock recvmmsg + sendmmsg relay in turn. Writes
# OUTDIR/relay.md and OUTDIR/relay.csv.
relay() {
	local mac
	ip netns add rsrc
	ip netns add relay
	ip -n rsrc link add sv0 type veth peer name sv1 netns relay
	ip -n relay link add fan0 type dummy
	for l in rsrc:sv0 relay:sv1 relay:fan0; do
		ip netns exec "${l%%:*}" sysctl -qw "net.ipv6.conf.${l#*:}.disable_ipv6=1"
		ip -n "${l%%:*}" link set "${l#*:}" up
	done
	ip -n relay link set lo up
	ip -n rsrc addr add 192.168.77.1/24 dev sv0
	ip -n relay addr add 192.168.77.2/24 dev sv1
	ip -n relay addr add 10.0.0.1/8 dev fan0
	# (The neighbour table's gc thresholds are global: raised above.)
	ip netns exec relay sysctl -qw net.ipv4.ip_forward=0
	ip netns exec relay ethtool -K fan0 tx-checksumming on tx-udp-segmentation off >/dev/null
	mdwrite-bench neigh fan0 64 | ip -n relay -batch -
	# The relay's address and the baseline's (not the relay namespace's
	# own: dropped at routing there, forwarding off) both reach sv1
	# without ARP.
	mac=$(ip -n relay -o link show sv1 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
	ip -n rsrc neigh replace 192.168.77.2 lladdr "$mac" dev sv0 nud permanent
	ip -n rsrc neigh replace 192.168.77.3 lladdr "$mac" dev sv0 nud permanent
	# The relays ask for 8 MiB receive buffers (the cap is global).
	local rmem_max
	rmem_max=$(sysctl -n net.core.rmem_max)
	sysctl -qw net.core.rmem_max=$((16 << 20))
	mdwrite-bench relay --src-netns rsrc --relay-netns relay --out-ifname fan0 \
		--listen 192.168.77.2:5000 --drop-addr 192.168.77.3 \
		--csv "$out/relay.csv" "$@" | tee "$out/relay.md" || status=1
	sysctl -qw net.core.rmem_max="$rmem_max"
	ip netns del rsrc
	ip netns del relay
}

# The whole sender (issue 14): `mdwrite send --rtp` of 64 streams at 1 to
# 20 Mb/s (1316-byte payloads) to 64 destinations on dummy0 for 2 s,
# paced by the module (kernel), by sleeping between small unpaced calls
# (user), and unpaced (off: each stream's due packets at once, every tick
# of the slowest stream's packet time); the whole guest's busy
# instructions per packet over each run (`mdwrite-bench busy`). Writes
# OUTDIR/sender.md.
sender() {
	local f=/tmp/mdw-sender.bin args=() d pace line busy pkts calls
	# 3 s of the fastest stream; every stream reads the same file.
	head -c $((20000000 / 8 * 3)) /dev/urandom >"$f"
	for ((d = 0; d < 64; d++)); do
		args+=("$f" --to "10.1.0.$((d + 1)):5000" --bitrate "$(((1000000 + d * 19000000 / 63) / 1000))k")
	done
	{
		echo "sender: mdwrite send --rtp of 64 streams at 1 to 20 Mb/s (1316-byte payloads) to 64 destinations on dummy0, 2 s, --latency 20ms"
		echo
		echo "| --pace | packets | calls | packets per call | busy guest instr / packet |"
		echo "| --- | ---: | ---: | ---: | ---: |"
	} | tee "$out/sender.md"
	for pace in kernel user off; do
		if ! line=$(mdwrite-bench busy -- mdwrite send --rtp --backend module --pace "$pace" \
			--duration 2 "${args[@]}"); then
			echo "| $pace | failed | | | |" | tee -a "$out/sender.md"
			status=1
			continue
		fi
		busy=$(sed -n 's/^busy_ns=\([0-9]*\) .*/\1/p' <<<"$line")
		pkts=$(sed -n 's/^total .* packets=\([0-9]*\) .*/\1/p' <<<"$line")
		calls=$(sed -n 's/^total .* calls=\([0-9]*\) .*/\1/p' <<<"$line")
		echo "| $pace | $pkts | $calls | $((pkts / (calls ? calls : 1))) | $((busy / (pkts ? pkts : 1))) |" |
			tee -a "$out/sender.md"
	done
	rm -f "$f"
}

# The GStreamer pipeline (issue 16): `filesrc ! tsparse ! rtpmp2tpay` of
# the clip scripts/bench.sh made (OUTDIR/clip.ts) into multiudpsink and into
# mdwritesink, 64 clients on dummy0, sync=false; the whole guest's busy
# instructions over each gst-launch-1.0 run (`mdwrite-bench busy`: the
# process's user and kernel work, from its start to its exit) per packet
# sent, and the same above the pipeline into fakesink (what sending costs).
# Each row runs once untimed first (page cache, dentries). dummy0's
# tx_packets must grow by the clip's RTP packets x 64 in every sending row.
# Writes OUTDIR/pipeline.md.
pipeline() {
	local clip=/tmp/mdw-clip.ts plugins=/tmp/mdw-gst-plugins p clients="" d rtp want name sink
	local line busy tx0 tx1 sent base="" per above
	[ -s "$out/clip.ts" ] || { echo "pipeline: no clip in $out" >&2; status=1; return; }
	cp "$out/clip.ts" "$clip"
	# Only the plugins the pipelines use: a full registry scan takes
	# minutes under TCG.
	mkdir -p "$plugins"
	for p in coreelements udp rtp mpegtsdemux; do
		ln -sf "/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgst$p.so" "$plugins/"
	done
	ln -sf "$MDW_BINDIR/libgstmdwrite.so" "$plugins/"
	export GST_PLUGIN_SYSTEM_PATH_1_0=$plugins GST_PLUGIN_PATH_1_0= GST_PLUGIN_PATH=
	export GST_REGISTRY_1_0=/tmp/mdw-gst-registry.bin
	gst-inspect-1.0 mdwritesink >/dev/null || { echo "pipeline: no mdwritesink" >&2; status=1; return; }
	for ((d = 0; d < 64; d++)); do
		clients+="${clients:+,}10.1.0.$((d + 1)):5000"
	done
	# The RTP packets the payloader makes of the clip.
	rtp=$(gst-launch-1.0 -v filesrc location="$clip" ! tsparse ! rtpmp2tpay ! \
		fakesink silent=false 2>&1 | grep -c 'last-message = chain')
	want=$((rtp * 64))
	{
		echo "pipeline: gst-launch-1.0 filesrc ! tsparse ! rtpmp2tpay ! SINK sync=false, 64 clients on dummy0;" \
			"clip $(stat -c %s "$clip") bytes, $rtp RTP packets (1316-byte payloads), $want packets per sending row"
		echo
		echo "| sink | packets sent | busy guest instr | instr / packet | above fakesink / packet |"
		echo "| --- | ---: | ---: | ---: | ---: |"
	} | tee "$out/pipeline.md"
	for name in fakesink multiudpsink mdwritesink mdwritesink-interval0 mdwritesink-fallback; do
		case $name in
		fakesink) sink=(fakesink sync=false) ;;
		multiudpsink) sink=(multiudpsink sync=false clients="$clients") ;;
		mdwritesink) sink=(mdwritesink backend=module sync=false clients="$clients") ;;
		mdwritesink-interval0) sink=(mdwritesink backend=module sync=false interval=0 clients="$clients") ;;
		mdwritesink-fallback) sink=(mdwritesink backend=fallback sync=false clients="$clients") ;;
		esac
		# Untimed first: the same run, so both are measured warm.
		gst-launch-1.0 -q filesrc location="$clip" ! tsparse ! rtpmp2tpay ! "${sink[@]}" >/dev/null 2>&1
		tx0=$(cat /sys/class/net/$dev/statistics/tx_packets)
		if ! line=$(mdwrite-bench busy -- gst-launch-1.0 -q filesrc location="$clip" ! tsparse ! \
			rtpmp2tpay ! "${sink[@]}" 2>&1); then
			echo "| $name | failed: $(tr '\n' ' ' <<<"$line") | | | |" | tee -a "$out/pipeline.md"
			status=1
			continue
		fi
		tx1=$(cat /sys/class/net/$dev/statistics/tx_packets)
		sent=$((tx1 - tx0))
		busy=$(sed -n 's/^busy_ns=\([0-9]*\) .*/\1/p' <<<"$line")
		if [ "$name" = fakesink ]; then
			base=$busy
			echo "| $name | $sent | $busy | | |" | tee -a "$out/pipeline.md"
			continue
		fi
		if [ "$sent" != "$want" ]; then
			echo "| $name | $sent, not $want | $busy | | |" | tee -a "$out/pipeline.md"
			status=1
			continue
		fi
		per=$((busy / sent))
		above=$(((busy - base) / sent))
		echo "| $name | $sent | $busy | $per | $above |" | tee -a "$out/pipeline.md"
	done
	rm -f "$clip"
}

case "$mode" in
pipeline)
	pipeline
	rmmod mdwrite
	exit $status
	;;
sender)
	sender
	rmmod mdwrite
	exit $status
	;;
relay)
	relay "${@:3}"
	rmmod mdwrite
	exit $status
	;;
pace)
	pace "${@:3}"
	rmmod mdwrite
	exit $status
	;;
quick)
	on=(--dests 1,8 --kib 64 --extra 64x256)
	off=(--payloads 1472 --dests 8 --kib 64 --extra 64x256)
	;;
full)
	on=() off=()
	;;
live)
	live
	rmmod mdwrite
	exit $status
	;;
xprof)
	# Under QEMU's exec log (scripts/bench.sh --exec-profile): the calls,
	# then the module's symbols for scripts/exec-profile.py. The last
	# argument: `fanout`, `virtio` (on the virtio-net NIC), or both
	# (`fanout,virtio`).
	set -- "${@:3}"
	sysctl -qw kernel.kptr_restrict=0
	ifname=$dev fanout=
	case ",${6:-}," in *,virtio,*) virtio_up && ifname=$vdev ;; esac
	case ",${6:-}," in *,fanout,*) fanout=--fanout ;; esac
	mdwrite-bench repeat --ifname "$ifname" --method "$1" --dests "$2" --packets "$3" \
		--payload "${4:-1472}" --times "${5:-100}" $fanout 2>&1 | tee "$out/xprof-run.txt"
	grep '\[mdwrite\]' /proc/kallsyms | sed 's/^/SYM /' >"$out/syms.txt"
	rmmod mdwrite
	exit 0
	;;
run)
	mdwrite-bench run --ifname "$dev" --table "run: offload on" --csv "$csv" "${@:3}" || status=1
	rmmod mdwrite
	exit $status
	;;
virtio)
	# scripts/bench.sh --virtio [ARGS...]: the virtio-net rows, or one
	# `mdwrite-bench run` with ARGS on that NIC.
	virtio_up || exit 1
	if (($# > 2)); then
		mdwrite-bench run --ifname "$vdev" --table "run: virtio-net" --csv "$csv" "${@:3}" || status=1
	else
		mdwrite-bench run --ifname "$vdev" --table "live virtio-net" --csv "$csv" \
			--payloads 1472 --dests 64 --packets 1 || status=1
		mdwrite-bench run --ifname "$vdev" --table "virtio-net" --csv "$csv" \
			--payloads 1472 --dests 64 --kib 256 --extra "" || status=1
	fi
	virtio_down
	rmmod mdwrite
	exit $status
	;;
*) echo "unknown mode '$mode'" >&2; exit 2 ;;
esac

mdwrite-bench run --ifname "$dev" --table "offload on" --csv "$csv" "${on[@]}" || status=1
[ "$mode" = full ] && live
[ "$mode" = full ] && pace
[ "$mode" = full ] && relay
[ "$mode" = full ] && sender
[ "$mode" = full ] && pipeline

# Checksum offload off: the stack and mdwrite checksum in software (reading
# the payload), except mdwrite with a zero UDP checksum.
ethtool -K "$dev" tx-checksumming off >/dev/null
ethtool -k "$dev" | grep -E '^(tx-checksumming|scatter-gather):' | tee -a "$out/setup.txt"
mdwrite-bench run --ifname "$dev" --table "offload off" --csv "$csv" "${off[@]}" \
	--methods mdwrite,mdwrite-regbuf,mdwrite-csum0,sendto,sendmmsg,gso,gso-zerocopy,io_uring-sendzc,af_packet-ring,pktgen || status=1

rmmod mdwrite
exit $status
