#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The benchmark: guest instructions per packet of mdwrite and of every stock
# Linux UDP send path (see Documentation/benchmarks.md).
#
#   scripts/bench.sh [--quick]      # or: make bench
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
# the pipeline: it writes bench/results/quick.csv and leaves the docs alone).
set -euo pipefail

. "$(dirname "$0")/lib.sh"

mode=full
case "${1:-}" in
"") ;;
--quick) mode=quick ;;
*) die "usage: $0 [--quick]" ;;
esac

"$MDW_ROOT/scripts/install-deps.sh"
start=$(date +%s)
results=$MDW_ROOT/bench/results
doc=$MDW_ROOT/Documentation/benchmarks.md
mkdir -p "$results"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

log "benchmark ($mode): booting the release kernel, 1 vCPU, -icount shift=0,sleep=off"
status=0
MDW_VM_TIMEOUT=${MDW_VM_TIMEOUT:-3600} "$MDW_ROOT/scripts/vm-run.sh" --kernel release --cpus 1 \
	--qemu-opts "-icount shift=0,sleep=off" --rwdir "$out" \
	"$MDW_ROOT/tests/bench/guest-bench.sh" "$out" "$mode" || status=$?
[ -s "$out/results.csv" ] || die "the guest wrote no results (status $status)"
((status == 0)) || log "some rows failed (guest status $status); they are marked in the tables"

cat "$out/setup.txt" "$out/calibrate.txt" >&2
bindir=$MDW_ROOT/userspace/target/release
kernel=$(sed -n 's/^kernel: \([^ ]*\).*/\1/p' "$out/setup.txt")
if [ "$mode" = quick ]; then
	cp "$out/results.csv" "$results/quick.csv"
	"$bindir/mdwrite-bench" report "$results/quick.csv"
	log "quick run done in $(($(date +%s) - start)) s: bench/results/quick.csv"
	exit 0
fi

cp "$out/results.csv" "$results/$(date -u +%Y-%m-%d)-$kernel.csv"
cp "$out/results.csv" "$results/latest.csv"
tables=$("$bindir/mdwrite-bench" report "$results/latest.csv")
"$MDW_ROOT/scripts/bench-plot.sh" "$results/latest.csv" "$results/instr-per-packet.png"

# Regenerate the results section of the docs: everything between the markers.
{
	sed -n '1,/^<!-- bench-results:begin -->$/p' "$doc"
	echo
	echo "Run of $(date -u +%Y-%m-%d), kernel $kernel, one vCPU under QEMU/TCG with"
	echo "\`-icount shift=0,sleep=off\`; calibration (the same 10M-iteration loop, twice):"
	echo "$(sed 's/^10M-iteration loop: //' "$out/calibrate.txt" | paste -sd/ | sed 's|/| and |') ns."
	echo
	printf '%s\n' "$tables"
	echo
	sed -n '/^<!-- bench-results:end -->$/,$p' "$doc"
} >"$doc.new"
mv "$doc.new" "$doc"

printf '%s\n' "$tables"
log "benchmark done in $(($(date +%s) - start)) s: bench/results/latest.csv, Documentation/benchmarks.md, bench/results/instr-per-packet.png"
