#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Exact per-function guest instruction counts from a QEMU TCG exec log.

Run a guest with (scripts/vm-run.sh --cpus 1 --qemu-opts ...):
  -icount shift=0,sleep=off -d in_asm,exec,nochain -dfilter LO..HI -D LOG
where LO..HI covers the code to profile (0xffffffffa0000000..0xffffffffff000000
is the module area), and print the module's symbols from the guest as lines
"SYM <addr> <type> <name>" (grep '\\[mdwrite\\]' /proc/kallsyms | sed 's/^/SYM /').
Then: exec-profile.py LOG SYMBOL-OUTPUT PACKETS
prints instructions per packet for each function: every executed translation
block counted with its instruction count, so the figures add up to what
-icount measures for that code.

MDW_XPROF_DETAIL=NAME[,NAME...] also lists the translation blocks of the
functions whose symbol contains a NAME; with MDW_XPROF_KO=the profiled
mdwrite.ko built with line tables (MDW_KRUSTFLAGS=-Cdebuginfo=2
scripts/build-module.sh release), their instructions by source line, each
with the lines it was inlined into (llvm-addr2line-19 -i).
"""
import bisect
import collections
import os
import re
import subprocess
import sys


def by_line(ko, tbs, per):
    """Prints the instructions of `tbs` ((symbol, offset) -> count) by
    source line and inline chain, resolved in the module file `ko`."""
    base = {}
    nm = subprocess.run(["llvm-nm-19", ko], capture_output=True, text=True, check=True)
    for line in nm.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            base[parts[2]] = int(parts[0], 16)
    keys = [k for k in tbs if k[0] in base]
    query = "\n".join(hex(base[name] + off) for name, off in keys)
    out = subprocess.run(["llvm-addr2line-19", "-e", ko, "-i", "-f", "-C", "-a"],
                         input=query, capture_output=True, text=True, check=True).stdout
    chains, frames = [], None
    for line in out.splitlines():
        if line.startswith("0x"):
            frames = []
            chains.append(frames)
        elif frames is not None:
            frames.append(line)
    lines = collections.Counter()
    for key, lines_of in zip(keys, chains):
        pairs = list(zip(lines_of[0::2], lines_of[1::2]))
        chain = " < ".join(f"{fn.split('::')[-1][:28]}@{loc.split('/')[-1]}"
                           for fn, loc in pairs[:4])
        lines[chain] += tbs[key]
    for chain, v in lines.most_common(80):
        print(f"src {v / per:8.1f} {chain}")


def main():
    log, symf = sys.argv[1], sys.argv[2]
    per = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    # With MDW_XPROF_KSYMS (kernel functions in the log too, as "SYM" lines):
    # only what runs from the module's first ioctl to its last counts, not
    # the boot or what the guest does after the calls.
    ksymf = os.environ.get("MDW_XPROF_KSYMS")
    files = [symf] + ([ksymf] if ksymf else [])
    syms = sorted((int(p[1], 16), p[3]) for f in files for p in
                  (l.split() for l in open(f) if l.startswith("SYM ")))
    ioctl = [a for a, name in syms if name == "mdw_fop_ioctl"]
    trace = []
    addrs = [a for a, _ in syms]
    tbsize, execs = {}, collections.Counter()
    cur, n = None, 0
    for line in open(log, errors="replace"):
        if line.startswith("IN:"):
            cur, n = None, 0
        elif re.match(r"0x[0-9a-f]+:", line):
            cur = cur if cur is not None else int(line.split(":")[0], 16)
            n += 1
        elif line.startswith("Trace") or (not line.strip() and cur is not None):
            if cur is not None:
                tbsize[cur], cur = n, None
            if line.startswith("Trace"):
                trace.append(int(line.split("[")[1].split("/")[1], 16))
    if ksymf and ioctl:
        calls = [i for i, pc in enumerate(trace) if pc == ioctl[0]]
        # MDW_XPROF_SKIP=N: from the N-th ioctl on (past the set-up).
        skip = int(os.environ.get("MDW_XPROF_SKIP", "0"))
        print(f"ioctls {len(calls)}, counted from number {skip}")
        trace = trace[calls[skip]:calls[-1] + 1] if len(calls) > skip else []
        # Past the set-up every ioctl is a send and the window ends at the
        # last one's entry: it holds len(calls) - 1 - skip whole sends,
        # not all of them. With MDW_XPROF_PER_CALL (packets per send) the
        # figures are per packet of those.
        per_call = float(os.environ.get("MDW_XPROF_PER_CALL", "0"))
        if skip > 0 and per_call > 0 and len(calls) - 1 > skip:
            per = per_call * (len(calls) - 1 - skip)
            print(f"sends counted {len(calls) - 1 - skip}, {per:.0f} packets")
    execs.update(trace)
    total = collections.Counter()
    tbs = collections.Counter()
    detail = [d for d in os.environ.get("MDW_XPROF_DETAIL", "").split(",") if d]
    for pc, count in execs.items():
        i = bisect.bisect_right(addrs, pc) - 1
        name = syms[i][1] if i >= 0 else "?"
        total[name] += count * tbsize.get(pc, 1)
        if any(d in name for d in detail):
            tbs[(name, pc - syms[i][0])] += count * tbsize.get(pc, 1)
    print(f"total {sum(total.values()) / per:.1f} per packet")
    for name, v in total.most_common(30):
        print(f"{v / per:8.1f} {name}")
    # With MDW_XPROF_DETAIL=NAME[,NAME...]: the translation blocks of the
    # functions whose symbol contains a NAME, by offset in the function, for
    # addr2line on a module built with debug info.
    for (name, off), v in sorted(tbs.items(), key=lambda kv: -kv[1])[:160]:
        print(f"tb {v / per:8.1f} {name}+{off:#x}")
    if tbs and os.environ.get("MDW_XPROF_KO"):
        by_line(os.environ["MDW_XPROF_KO"], tbs, per)


if __name__ == "__main__":
    main()
