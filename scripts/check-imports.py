#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Checks that the module's files import each other without a cycle.

Each top-level file of rust/ (rust/foo.rs is module `foo`) may use
another's items (`use crate::foo::...`, `crate::foo::` in a path); no file
may depend, directly or through others, on one that depends on it.
Prints every cycle (a strongly connected group of files, with the
references that make it) and exits 1 when there is one.

Usage: check-imports.py [RUST_DIR]   (default: rust/ next to scripts/)
"""

import os
import re
import sys


def strip_comments(text):
    """The text without // comments (doc comments name other files)."""
    return re.sub(r"//[^\n]*", "", text)


def references(text, modules):
    """The modules of `modules` that `text` refers to, through `crate::`."""
    found = set()
    for name in re.findall(r"\bcrate::(\w+)", text):
        found.add(name)
    for block in re.findall(r"\buse\s+crate::\{(.*?)\};", text, re.S):
        depth = 0
        start = 0
        for i, ch in enumerate(block + ","):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                head = block[start:i].strip().split("::")[0].strip()
                start = i + 1
                if head:
                    found.add(head)
    return found & modules


def cycles(graph):
    """The strongly connected groups of more than one node (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    rust = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "rust")
    files = sorted(f for f in os.listdir(rust) if f.endswith(".rs"))
    modules = {f[:-3] for f in files}
    graph = {}
    for f in files:
        with open(os.path.join(rust, f), encoding="utf-8") as src:
            text = strip_comments(src.read())
        graph[f[:-3]] = references(text, modules) - {f[:-3]}
    groups = cycles(graph)
    for group in groups:
        print("import cycle: " + ", ".join(g + ".rs" for g in group))
        for a in group:
            for b in sorted(graph[a] & set(group)):
                print(f"  {a}.rs uses crate::{b}")
    edges = sum(len(v) for v in graph.values())
    print(f"{len(graph)} files, {edges} imports, {len(groups)} cycles")
    return 1 if groups else 0


if __name__ == "__main__":
    sys.exit(main())
