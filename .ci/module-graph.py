#!/usr/bin/env python3
"""Imports between the top-level modules of src/ at a git revision (default HEAD): edge count,
`use crate::` lines, circles (strongly connected components) and imports from one edge module
(source, concur, store) into another. Test modules after `#[cfg(test)]` are not counted.

    python3 .ci/module-graph.py [REV]
"""
import collections
import re
import subprocess
import sys

rev = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
files = [
    f
    for f in subprocess.check_output(["git", "ls-tree", "-r", "--name-only", rev, "src"], text=True).split()
    if f.endswith(".rs") and f not in ("src/main.rs", "src/lib.rs")
]
edges = collections.defaultdict(set)
uses = 0
for f in files:
    text = subprocess.check_output(["git", "show", f"{rev}:{f}"], text=True).split("#[cfg(test)]")[0]
    me = f[len("src/"):].removesuffix(".rs").split("/")[0]
    uses += len(re.findall(r"use crate::", text))
    for m in re.findall(r"crate::([a-z_0-9]+)", text):
        if m != me:
            edges[me].add(m)

index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            circles.append(sorted(comp))


for v in sorted(set(edges) | {m for vs in edges.values() for m in vs}):
    if v not in index:
        visit(v)
edge_modules = {"source", "concur", "store"}
print(f"{rev}: {sum(len(v) for v in edges.values())} imports between top-level modules, {uses} `use crate::` lines")
print("circles:", circles or "none")
print("edge → edge:", sorted((a, b) for a in edge_modules for b in edges.get(a, ()) if b in edge_modules) or "none")
