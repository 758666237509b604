#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The benchmark: guest instructions per packet of mdwrite and of every stock
# Linux UDP send path (see Documentation/benchmarks.md).
#
#   scripts/bench.sh [--quick | --live]      # or: make bench
#   scripts/bench.sh --profile METHOD[,METHOD...] [DESTS KIB PAYLOAD TIMES]
#   scripts/bench.sh --run ARGS...         # one `mdwrite-bench run ARGS...`
#   scripts/bench.sh --virtio [ARGS...]    # the same on the virtio-net NIC (default: its rows)
#   scripts/bench.sh --pace [ARGS...]      # the pacing benchmark only (`mdwrite-bench pace`)
#   scripts/bench.sh --relay [ARGS...]     # the relay benchmark only (`mdwrite-bench relay`)
#   scripts/bench.sh --sender              # `mdwrite send` as a whole, per pace mode
#   scripts/bench.sh --pipeline            # GStreamer: multiudpsink and mdwritesink, whole process
#   scripts/bench.sh --exec-profile METHOD DESTS PACKETS [PAYLOAD [TIMES [fanout]]]
#
# Boots the release kernel under QEMU/TCG with one vCPU and
# -icount shift=0,sleep=off, so the guest's CLOCK_MONOTONIC advances one ns
# per executed guest instruction, and runs tests/bench/guest-bench.sh there.
# Then:
#   bench/results/<date>-<kernel>.csv   this run's rows (history)
#   bench/results/latest.csv            the same, the one the docs show
#   bench/results/instr-per-packet.png  instructions per packet against N
#   Documentation/benchmarks.md         its results section regenerated
# and prints the Markdown tables. --quick runs a small subset (a check of
# the pipeline: it writes bench/results/quick.csv and leaves the docs alone);
# --live only the live-regime tables (bench/results/live.csv, docs left
# alone), which the full run includes.
# --run passes its arguments to one `mdwrite-bench run` on dummy0 (offload
# on) and prints its table; nothing is written (a developer's measurement:
# `--run --dests 64 --packets 1 --payloads 1472 --methods mdwrite`).
# --virtio [ARGS...] does the same on the VM's virtio-net NIC (no
# scatter-gather, no checksum offload, late TX completion); without ARGS
# it runs the two virtio-net rows of the full run.
# --exec-profile counts the module's own instructions exactly, per function
# (QEMU exec log, scripts/exec-profile.py) over TIMES (default 100) calls of
# DESTS x PACKETS full packets (PAYLOAD default 1472; `fanout`: one
# payload for every destination; `virtio`: on the virtio-net NIC;
# `fanout,virtio`: both); prints them per packet, next to the
# whole call's instructions per packet. MDW_XPROF_DETAIL=NAME[,NAME...]
# lists the translation blocks of the functions named; with
# MDW_KRUSTFLAGS=-Cdebuginfo=2 (a module with line tables, same code) also
# their instructions by source line.
# --profile samples where METHOD's instructions go (perf, timer samples) over
# TIMES sends of a workload (default: the headline 64 x 256 KiB, 1472 B, 200
# times; KIB "Np" is N full packets per destination) and writes bench/results/profile-METHOD.txt for each.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

# plot CSV PNG: instructions per packet against destinations (log x), one
# line per method, checksum offload on, 1472-byte payload; one panel per
# size of the per-destination chunk.
plot() {
	local csv=$1 png=$2 dir kib methods=() i m
	local colors=('#1f77b4' '#d62728' '#2ca02c' '#ff7f0e' '#9467bd' '#8c564b' '#e377c2' '#7f7f7f' '#bcbd22' '#17becf')
	dir=$(mktemp -d)
	mapfile -t methods < <(awk -F, 'NR > 1 && $1 == "offload on" && !seen[$5]++ { print $5 }' "$csv")
	local script="set terminal pngcairo size 1400,600 font 'sans,10' noenhanced
set output '$png'
set multiplot layout 1,2 title 'mdwrite benchmark: guest instructions per packet, dummy0, checksum offload on, 1472-byte payload'
set logscale x 2
set xtics (1, 8, 64, 512)
set xrange [0.8:640]
set yrange [0:*]
set grid
set key outside right
set xlabel 'destinations'
set ylabel 'guest instructions per packet'"
	for kib in 64 1024; do
		local plots=()
		for i in "${!methods[@]}"; do
			m=${methods[i]}
			awk -F, -v m="$m" -v k="$kib" 'NR > 1 && $1 == "offload on" && $2 == "1472" &&
				$4 == k && $5 == m && $13 == "ok" { print $3, $10 }' "$csv" >"$dir/$m-$kib.dat"
			[ -s "$dir/$m-$kib.dat" ] && plots+=("'$dir/$m-$kib.dat' using 1:2 with linespoints lw 2 pt $((i + 1)) lc rgb '${colors[i % 10]}' title '$m'")
		done
		script+="
set title '$kib KiB per destination per call'
plot $(IFS=,; echo "${plots[*]}")"
	done
	gnuplot <<<"$script
unset multiplot"
	rm -rf "$dir"
}

mode=full args=()
case "${1:-}" in
"") ;;
--quick) mode=quick ;;
--live) mode=live ;;
--profile)
	(($# >= 2)) || die "usage: $0 --profile METHOD [DESTS KIB PAYLOAD TIMES]"
	mode=profile args=("${@:2}")
	;;
--run) mode=run args=("${@:2}") ;;
--virtio) mode=virtio args=("${@:2}") ;;
--pace) mode=pace args=("${@:2}") ;;
--relay) mode=relay args=("${@:2}") ;;
--sender) mode=sender ;;
--pipeline) mode=pipeline ;;
--exec-profile)
	(($# >= 4)) || die "usage: $0 --exec-profile METHOD DESTS PACKETS [PAYLOAD [TIMES [fanout]]]"
	mode=xprof args=("${@:2}")
	;;
*) die "usage: $0 [--quick | --live | --profile METHOD [DESTS KIB PAYLOAD TIMES] | --run ARGS... | --virtio [ARGS...] | --pace [ARGS...] | --relay [ARGS...] | --sender | --pipeline | --exec-profile METHOD DESTS PACKETS [PAYLOAD [TIMES [fanout|virtio|fanout,virtio]]]]" ;;
esac

"$MDW_ROOT/scripts/install-deps.sh"
start=$(date +%s)
results=$MDW_ROOT/bench/results
doc=$MDW_ROOT/Documentation/benchmarks.md
mkdir -p "$results"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The pipeline benchmark's clip, made here (ffmpeg under TCG is slow): 10 s
# at 4 Mb/s, about 3,800 RTP packets.
if [ "$mode" = pipeline ] || [ "$mode" = full ]; then
	bash "$MDW_ROOT/tests/media/gen-clip.sh" "$out/clip.ts" 10 4000000
fi

log "benchmark ($mode): booting the release kernel, 1 vCPU, -icount shift=0,sleep=off"
# Through a pipe (the VM's console output would otherwise truncate a log
# file that stdout is redirected to), noting when the guest's first line
# came: the run's own time, without the wait for another VM's lock.
status=0
qemu_opts="-icount shift=0,sleep=off"
# The module area only: the log stays small. MDW_XPROF_KERNEL=FN[,FN...]
# adds those kernel functions, MDW_XPROF_KERNEL=all the whole kernel (a
# large log: few TIMES), counted from the module's first ioctl to its last
# (so the boot does not count), or from its MDW_XPROF_SKIP-th (past the
# set-up's ioctls).
if [ "$mode" = xprof ]; then
	ranges=0xffffffffa0000000..0xffffffffff000000
	if [ "${MDW_XPROF_KERNEL:-}" = all ]; then
		map=$("$MDW_ROOT/scripts/build-kernel.sh" release)/System.map
		ranges=0xffffffff80000000..0xffffffffff000000
		awk '$2 ~ /^[tT]$/ { print "SYM", $1, $2, $3 }' "$map" >"$out/ksyms.txt"
		export MDW_XPROF_KSYMS=$out/ksyms.txt
	elif [ -n "${MDW_XPROF_KERNEL:-}" ]; then
		map=$("$MDW_ROOT/scripts/build-kernel.sh" release)/System.map
		for fn in ${MDW_XPROF_KERNEL//,/ }; do
			read -r lo hi < <(sort "$map" | awk -v fn="$fn" '
				found { print "0x" lo, "0x" $1; exit }
				$3 == fn { found = 1; lo = $1 }') || die "no kernel function $fn"
			ranges+=",$lo..$hi"
			echo "SYM ${lo#0x} t $fn" >>"$out/ksyms.txt"
		done
		export MDW_XPROF_KSYMS=$out/ksyms.txt
	fi
	qemu_opts+=" -d in_asm,exec,nochain -dfilter $ranges -D $out/exec.log"
fi
MDW_VM_TIMEOUT=${MDW_VM_TIMEOUT:-3600} "$MDW_ROOT/scripts/vm-run.sh" --kernel release --cpus 1 \
	--qemu-opts "$qemu_opts" --rwdir "$out" \
	"$MDW_ROOT/tests/bench/guest-bench.sh" "$out" "$mode" "${args[@]}" 2>&1 |
	while IFS= read -r line; do
		[[ -e $out/t0 || $line != kernel:* ]] || date +%s >"$out/t0"
		printf '%s\n' "$line"
	done || status=${PIPESTATUS[0]}
if [ "$mode" = xprof ]; then
	[ -s "$out/syms.txt" ] || die "the guest wrote no symbols (status $status)"
	run=$(cat "$out/xprof-run.txt")
	packets=$(sed -n 's/.*: \([0-9]*\) x \([0-9]*\) packets.*/\1 \2/p' <<<"$run" | awk '{ print $1 * $2 }')
	# Packets per send: the figures of a window past the set-up
	# (MDW_XPROF_SKIP) are per packet of the sends in it.
	MDW_XPROF_PER_CALL=$(sed -n 's/.*: \([0-9]*\) x \([0-9]*\) packets.*/\2/p' <<<"$run")
	export MDW_XPROF_PER_CALL
	echo "# ${args[*]}: $run"
	# A module built with line tables (MDW_KRUSTFLAGS=-Cdebuginfo=2): the
	# detailed functions' instructions by source line too.
	if [[ ${MDW_KRUSTFLAGS:-} == *debuginfo* ]]; then
		MDW_XPROF_KO=$("$MDW_ROOT/scripts/build-module.sh" release)/mdwrite.ko
		export MDW_XPROF_KO
	fi
	"$MDW_ROOT/scripts/exec-profile.py" "$out/exec.log" "$out/syms.txt" "$packets" |
		"$MDW_ROOT/userspace/target/release/mdwrite-bench" demangle
	exit 0
fi
if [ "$mode" = sender ] || [ "$mode" = pipeline ]; then
	[ -s "$out/$mode.md" ] || die "the guest wrote no $mode results (status $status)"
	cp "$out/$mode.md" "$results/"
	log "$mode run done in $(($(date +%s) - start)) s: bench/results/$mode.md"
	exit "$status"
fi
if [ "$mode" = pace ] || [ "$mode" = relay ]; then
	[ -s "$out/$mode.md" ] || die "the guest wrote no $mode results (status $status)"
	cp "$out/$mode.md" "$out/$mode.csv" "$results/"
	log "$mode run done in $(($(date +%s) - start)) s: bench/results/$mode.md, bench/results/$mode.csv"
	exit "$status"
fi
if [ "$mode" = profile ]; then
	for m in ${args[0]//,/ }; do
		[ -s "$out/profile-$m.txt" ] || die "the guest wrote no profile of $m (status $status)"
		cp "$out/profile-$m.txt" "$results/"
		cat "$out/profile-$m.txt"
	done
	log "profile done in $(($(date +%s) - start)) s: bench/results/profile-*.txt"
	exit 0
fi
[ -s "$out/results.csv" ] || die "the guest wrote no results (status $status)"
((status == 0)) || log "some rows failed (guest status $status); they are marked in the tables"

cat "$out/setup.txt" "$out/calibrate.txt" >&2
bindir=$MDW_ROOT/userspace/target/release
kernel=$(sed -n 's/^kernel: \([^ ]*\).*/\1/p' "$out/setup.txt")
if [ "$mode" = run ] || [ "$mode" = virtio ]; then
	"$bindir/mdwrite-bench" report "$out/results.csv"
	log "run done in $(($(date +%s) - start)) s"
	exit 0
fi
if [ "$mode" = quick ] || [ "$mode" = live ]; then
	cp "$out/results.csv" "$results/$mode.csv"
	"$bindir/mdwrite-bench" report "$results/$mode.csv"
	log "$mode run done in $(($(date +%s) - start)) s: bench/results/$mode.csv"
	exit 0
fi

cp "$out/results.csv" "$results/$(date -u +%Y-%m-%d)-$kernel.csv"
cp "$out/results.csv" "$results/latest.csv"
tables=$("$bindir/mdwrite-bench" report "$results/latest.csv")
if [ -s "$out/pace.md" ]; then
	cp "$out/pace.md" "$results/pace.md"
	cp "$out/pace.csv" "$results/pace.csv"
	tables+=$'\n\n### Paced release\n\n'$(cat "$out/pace.md")
fi
if [ -s "$out/relay.md" ]; then
	cp "$out/relay.md" "$results/relay.md"
	cp "$out/relay.csv" "$results/relay.csv"
	tables+=$'\n\n### Relaying\n\n'$(cat "$out/relay.md")
fi
if [ -s "$out/sender.md" ]; then
	cp "$out/sender.md" "$results/sender.md"
	tables+=$'\n\n### The whole sender\n\n'$(cat "$out/sender.md")
fi
if [ -s "$out/pipeline.md" ]; then
	cp "$out/pipeline.md" "$results/pipeline.md"
	tables+=$'\n\n### The GStreamer pipeline\n\n'$(cat "$out/pipeline.md")
fi
plot "$results/latest.csv" "$results/instr-per-packet.png"

# Regenerate the results section of the docs: everything between the markers.
secs=$(($(date +%s) - $(cat "$out/t0" 2>/dev/null || echo "$start")))
{
	sed -n '1,/^<!-- bench-results:begin -->$/p' "$doc"
	echo
	echo "Run of $(date -u +%Y-%m-%d) by \`make bench\`: $((secs / 60)) min $((secs % 60)) s from the booted guest's first"
	echo "line to the end (boot and any wait for another VM not counted), $(nproc) host cores."
	echo "The guest's setup and calibration:"
	echo
	echo '```text'
	cat "$out/setup.txt" "$out/calibrate.txt"
	echo '```'
	echo
	printf '%s\n' "$tables"
	sed -n '/^<!-- bench-results:end -->$/,$p' "$doc"
} >"$doc.new"
mv "$doc.new" "$doc"

printf '%s\n' "$tables"
log "benchmark done in $(($(date +%s) - start)) s: bench/results/latest.csv, Documentation/benchmarks.md, bench/results/instr-per-packet.png"
