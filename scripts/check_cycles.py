#!/usr/bin/env python3
"""Reports import cycles between the source files of the crate (file level)."""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else "src"
files = {}
for dp, _, fns in os.walk(root):
    for fn in fns:
        if fn.endswith(".rs"):
            p = os.path.join(dp, fn)
            rel = os.path.relpath(p, root)[:-3]
            parts = rel.split(os.sep)
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            files[tuple(parts)] = p
def resolve(mod, path):
    # mod: tuple of the file's module path; path: list of segments after use
    if path[0] == "crate":
        base = []; path = path[1:]
    elif path[0] == "super":
        base = list(mod[:-1]); path = path[1:]
        while path and path[0] == "super":
            base = base[:-1]; path = path[1:]
    elif path[0] == "self":
        base = list(mod); path = path[1:]
    else:
        return None
    cur = tuple(base)
    best = cur if cur in files else None
    for seg in path:
        cur = cur + (seg,)
        if cur in files:
            best = cur
        else:
            break
    return best
edges = {m: set() for m in files}
use_re = re.compile(r"\b(?:use|pub\s*(?:\([^)]*\))?\s*use)\s+((?:crate|super|self)(?:::\w+)*)(?:::\{([^;]*)\})?", re.S)
path_re = re.compile(r"\b((?:crate|super)(?:::\w+)+)")
for m, p in files.items():
    src = open(p).read()
    src = re.sub(r"//[^\n]*", "", src)
    # only non-test code
    src = re.split(r"#\[cfg\(test\)\]\s*mod tests", src)[0]
    for mt in path_re.finditer(src):
        segs = mt.group(1).split("::")
        t = resolve(m, segs)
        if t is not None and t != m and not (len(t) < len(m) and m[:len(t)] == t):
            edges[m].add(t)
    for mt in use_re.finditer(src):
        if mt.group(2):
            base = mt.group(1).split("::")
            for item in re.split(r",", mt.group(2)):
                item = item.strip().split(" ")[0].split("::")
                if item and item[0] and item[0] not in ("self",):
                    t = resolve(m, base + item)
                    if t is not None and t != m and not (len(t) < len(m) and m[:len(t)] == t):
                        edges[m].add(t)
# find SCCs (Tarjan)
idx = {}; low = {}; st = []; on = set(); sccs = []; c = [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in idx:
            sc(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
for v in files:
    if v not in idx: sc(v)
for comp in sccs:
    print("cycle:", ", ".join("::".join(x) or "crate" for x in sorted(comp)))
    for a in comp:
        for b in edges[a]:
            if b in comp: print("   ", "::".join(a), "->", "::".join(b))
print(f"{len(sccs)} cycles among {len(files)} files")
sys.exit(1 if sccs else 0)
