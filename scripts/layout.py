#!/usr/bin/env python3
"""The shape of src/ (ARCHITECTURE.md, "The tree"): checked by scripts/test, printed by hand.

    python3 scripts/layout.py          check; on success print the graph of units, lowest first
    python3 scripts/layout.py --quiet  check only

A *unit* is a top-level folder of src/ (a subsystem) or a top-level file (a leaf used across
folders). Every `crate::` path in a file's non-test code is an edge from its unit to the unit the
path names. The checks:

- no cycle between units (each unit only imports units below it);
- at most 18 top-level entries in src/, at least five of them folders;
- `error.rs` names no module of the crate but the error types of the store, TLS and location
  validation (it describes failures; the log funnel logs them);
- `Hub` has at most 17 methods (the hub keeps the lock, the wakes and the condvar; reports have
  their own handle).

Standard library only: it runs before any tool is installed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
MAX_ENTRIES = 18
MIN_FOLDERS = 5
MAX_HUB_METHODS = 17
# What error.rs may name: the error types of the store, of TLS and of location validation.
ERROR_MAY_NAME = {"outbox", "tls", "location"}


def module_of(path: Path) -> list[str]:
    """src/outbox/store/schema.rs -> ["outbox", "store", "schema"]; mod.rs names its folder."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def production_code(text: str) -> str:
    """The file without comments, string literals and its `#[cfg(test)]` items (an item ends at
    its first `;`, or at the `}` matching its first `{`, whichever comes first)."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    out, i = [], 0
    while True:
        j = text.find("#[cfg(test)]", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        semi, brace = text.find(";", j), text.find("{", j)
        if brace < 0 or (0 <= semi < brace):
            i = (semi + 1) if semi >= 0 else len(text)
            continue
        depth, k = 0, brace
        while k < len(text):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            k += 1
            if depth == 0:
                break
        i = k


def crate_paths(code: str) -> set[str]:
    """First segments of every `crate::` path, `crate::{a::x, b}` groups included."""
    heads: set[str] = set()
    for m in re.finditer(r"\bcrate::(\{|[A-Za-z_][A-Za-z0-9_]*)", code):
        if m.group(1) != "{":
            heads.add(m.group(1))
            continue
        depth, j = 1, m.end()
        start = j
        items = []
        while j < len(code) and depth:
            if code[j] == "{":
                depth += 1
            elif code[j] == "}":
                depth -= 1
            elif code[j] == "," and depth == 1:
                items.append(code[start:j])
                start = j + 1
            j += 1
        items.append(code[start : j - 1])
        for item in items:
            name = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", item)
            if name:
                heads.add(name.group(1))
    return heads


def units() -> tuple[dict[str, set[str]], list[Path]]:
    entries = sorted(SRC.iterdir())
    names = {p.stem if p.is_file() else p.name for p in entries if p.name != "lib.rs"}
    graph: dict[str, set[str]] = {n: set() for n in names}
    for path in SRC.rglob("*.rs"):
        if path.name == "lib.rs" and path.parent == SRC:
            continue
        unit = module_of(path)[0]
        code = production_code(path.read_text())
        for head in crate_paths(code):
            if head in names and head != unit:
                graph[unit].add(head)
    return graph, entries


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layers(graph: dict[str, set[str]]) -> list[list[str]]:
    """Units by height: a unit sits one above the highest unit it imports."""
    height: dict[str, int] = {}

    def h(v: str, seen: tuple[str, ...] = ()) -> int:
        if v not in height:
            height[v] = 1 + max((h(w, seen + (v,)) for w in graph[v] if w not in seen), default=-1)
        return height[v]

    for v in graph:
        h(v)
    return [sorted(v for v in graph if height[v] == k) for k in range(max(height.values()) + 1)]


def hub_methods() -> int | None:
    hub = SRC / "hub" / "hub.rs"
    if not hub.exists():
        hub = SRC / "hub" / "mod.rs" if (SRC / "hub" / "mod.rs").exists() else SRC / "hub.rs"
    if not hub.exists():
        return None
    code = production_code(hub.read_text())
    count = 0
    for m in re.finditer(r"\bimpl\s+Hub\s*\{", code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        count += len(re.findall(r"\bfn\s+[a-z_0-9]+", code[m.end() : j]))
    return count


def main() -> int:
    quiet = "--quiet" in sys.argv
    graph, entries = units()
    problems = []
    for comp in cycles(graph):
        edges = [f"{a} -> {b}" for a in comp for b in sorted(graph[a]) if b in comp]
        problems.append(f"import cycle between {', '.join(comp)}: {'; '.join(edges)}")
    folders = [p.name for p in entries if p.is_dir()]
    if len(entries) > MAX_ENTRIES:
        problems.append(f"src/ has {len(entries)} top-level entries (at most {MAX_ENTRIES})")
    if len(folders) < MIN_FOLDERS:
        problems.append(f"src/ has {len(folders)} folders (at least {MIN_FOLDERS})")
    error = SRC / "error.rs"
    if error.exists():
        named = crate_paths(production_code(error.read_text())) - ERROR_MAY_NAME
        if named:
            problems.append(f"error.rs names {', '.join(sorted(named))} (only the error types of the store, TLS and location validation)")
    methods = hub_methods()
    if methods is not None and methods > MAX_HUB_METHODS:
        problems.append(f"Hub has {methods} methods (at most {MAX_HUB_METHODS})")
    if problems:
        for p in problems:
            print(f"layout: {p}", file=sys.stderr)
        return 1
    if not quiet:
        print(f"src/: {len(entries)} entries, folders {', '.join(folders)}; Hub methods: {methods}")
        for k, layer in enumerate(layers(graph)):
            print(f"  {k}: " + ", ".join(f"{u}{'/' if u in folders else ''}" for u in layer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
