"""The static import graph of the project (grimp; imports inside functions counted).

    python -m bench.import_graph

prints the import cycles that span more than one app (strongly connected components of the
module graph whose modules belong to different top-level packages) and the modules of each.
The layering holds only if there are none; tests/test_architecture.py asserts that.
"""
from __future__ import annotations

import configparser
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
APPS = ("core", "qtweb", "trading", "risk", "ai", "analytics")


def _outside_contract(module: str) -> bool:
    parts = module.split(".")
    return "tests" in parts or "migrations" in parts


def build_graph() -> grimp.ImportGraph:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return grimp.build_graph(*APPS, cache_dir=None)


def _components(graph: grimp.ImportGraph, modules: set[str]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively (the graph is a few hundred nodes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    counter = 0
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & modules) for m in modules}
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            for j in range(i, len(edges[node])):
                nxt = edges[node][j]
                if nxt not in index:
                    work.append((node, j + 1))
                    work.append((nxt, 0))
                    recurse = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if recurse:
                continue
            if low[node] == index[node]:
                comp = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.add(m)
                    if m == node:
                        break
                out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def cross_app_cycles(graph: grimp.ImportGraph | None = None) -> list[set[str]]:
    """Import cycles whose modules belong to more than one app (tests and migrations left out)."""
    graph = graph or build_graph()
    modules = {m for m in graph.modules if m.split(".")[0] in APPS and not _outside_contract(m)}
    return [c for c in _components(graph, modules) if len({m.split(".")[0] for m in c}) > 1]


def layered_modules() -> list[str]:
    """Every module named in the layers contract of .importlinter."""
    config = configparser.ConfigParser(inline_comment_prefixes=None)
    config.read(ROOT / ".importlinter")
    raw = config["importlinter:contract:layers"]["layers"]
    names: list[str] = []
    for line in raw.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.extend(part.strip() for part in line.replace("|", ":").split(":"))
    return names


def modules_outside_layers(graph: grimp.ImportGraph | None = None) -> list[str]:
    """Modules (tests, migrations and the apps' package __init__s aside) in no layer."""
    graph = graph or build_graph()
    layers = layered_modules()
    return sorted(
        m for m in graph.modules
        if m.split(".")[0] in APPS and m not in APPS and not _outside_contract(m)
        and not any(m == layer or m.startswith(layer + ".") for layer in layers)
    )


def main() -> int:
    graph = build_graph()
    cycles = cross_app_cycles(graph)
    print(f"modules: {len([m for m in graph.modules if m.split('.')[0] in APPS])}")
    print(f"import cycles between apps: {len(cycles)}")
    for c in cycles:
        print(f"  {len(c)} modules: {', '.join(sorted(c))}")
    outside = modules_outside_layers(graph)
    print(f"modules in no layer: {len(outside)}")
    for m in outside:
        print(f"  {m}")
    return 1 if cycles or outside else 0


if __name__ == "__main__":
    raise SystemExit(main())
