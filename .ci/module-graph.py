#!/usr/bin/env python3
"""Imports between the modules of src/ at a git revision (default HEAD): for the top level and
inside `concur/`, the edge count, `use crate::` lines, circles (strongly connected components)
and imports from one edge module (source, concur, store) into another; then the source files
over 600 lines and the cycle files that name a User v1 wire type. Test modules (after
`#[cfg(test)]`, and `tests.rs` files) are not counted.

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
    if f.endswith(".rs") and f not in ("src/main.rs", "src/lib.rs") and not f.endswith("/tests.rs")
]
texts = {f: subprocess.check_output(["git", "show", f"{rev}:{f}"], text=True) for f in files}
code = {f: t.split("#[cfg(test)]")[0] for f, t in texts.items()}


def module_of(path, parts):
    """The module a file belongs to, `parts` levels below src/ (folder or file stem)."""
    segs = path[len("src/"):].removesuffix(".rs").split("/")
    segs = [s for s in segs if s != "mod"]
    return "/".join(segs[:parts]) if len(segs) >= parts else None


def graph(prefix, parts):
    """Edges between the modules `parts` levels deep under `prefix` (`crate::a::b` names)."""
    edges = collections.defaultdict(set)
    nodes = set()
    uses = 0
    for f, text in code.items():
        me = module_of(f, parts)
        if me is None or not me.startswith(prefix):
            continue
        nodes.add(me)
        uses += len(re.findall(r"use crate::", text))
        # Absolute paths, plus `super::x` / `self::x` relative to the file's own module.
        names = [
            m.replace("::", "/") for m in re.findall(r"crate::((?:[a-z_0-9]+::)*[a-z_0-9]+)(?![a-z_0-9]*!)", text)
        ]
        for m in re.findall(r"\bsuper::([a-z_0-9]+)", text):
            here = f[len("src/"):].removesuffix(".rs").split("/")
            base = here[:-1] if here[-1] != "mod" else here[:-2]
            names.append("/".join(base + [m]))
        for name in names:
            segs = name.split("/")
            if len(segs) < parts:
                continue
            target = "/".join(segs[:parts])
            if target != me and target.startswith(prefix):
                edges[me].add(target)
    return nodes, edges, uses


def circles(nodes, edges):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

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
                found.append(sorted(comp))

    for v in sorted(nodes | {m for vs in edges.values() for m in vs}):
        if v not in index:
            visit(v)
    return found


nodes, edges, uses = graph("", 1)
edge_modules = {"source", "concur", "store"}
print(f"{rev}: {sum(len(v) for v in edges.values())} imports between top-level modules, {uses} `use crate::` lines")
print("circles:", circles(nodes, edges) or "none")
print("edge → edge:", sorted((a, b) for a in edge_modules for b in edges.get(a, ()) if b in edge_modules) or "none")
for a in sorted(edges):
    print(f"  {a} → {', '.join(sorted(edges[a]))}")

c_nodes, c_edges, _ = graph("concur/", 2)
print(f"inside concur/: {sum(len(v) for v in c_edges.values())} imports; circles:", circles(c_nodes, c_edges) or "none")

long = sorted((len(t.splitlines()), f) for f, t in texts.items() if len(t.splitlines()) > 600)
print("files over 600 lines:", [f"{f} ({n})" for n, f in long] or "none")
v1_words = re.compile(r"\b(BatchRecord|BatchResult|xml::|v1::)")
cycle = [f for f in code if module_of(f, 1) in ("cycle", "sync") and v1_words.search(code[f])]
print("cycle files naming User v1 wire types:", cycle or "none")
