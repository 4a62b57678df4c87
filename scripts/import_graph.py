#!/usr/bin/env python3
"""afbr's import graph, read from the source with `ast` (nothing is imported).

Prints the graph between afbr's subpackages (afbr.bgp, afbr.ipsec, ...; top-level modules such
as afbr.config stand for themselves), the import cycles between them and between modules, the
four floors every module sits on, and the imports that go up a floor:

  1 codecs      wire formats and constants: bytes in, values out (tunnel_encap*, ike_message, ...)
  2 pure cores  state machines and diffs: values and `now` in, actions out; no I/O
  3 adapters    sockets, netlink, subprocesses, asyncio, and what needs them
  4 top         daemon, CLI, labs: the composition roots

Imports under `if TYPE_CHECKING:` are left out (they do not run).  Function-local imports are
counted as edges and listed.  Usage: scripts/import_graph.py [--root DIR]
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "afbr"

# floor 1: codecs and constant modules (import nothing of afbr beyond this floor)
CODECS = (
    "afbr.bgp.tunnel_encap*",
    "afbr.bgp.wire_buffer",
    "afbr.ipsec.ike_constants",
    "afbr.ipsec.ike_errors",
    "afbr.ipsec.ike_buffer",
    "afbr.ipsec.ike_payloads",
    "afbr.ipsec.ike_message",
    "afbr.ipsec.ike_proposals",
    "afbr.ipsec.ike_crypto",
    "afbr.dataplane.*_wire",
)
# floor 4: composition roots; the pure cores that live among them are named below
TOP = ("afbr.daemon.*", "afbr.commands.*", "afbr.lab.*", "afbr.cli", "afbr.__main__")
PURE_IN_TOP = ("afbr.daemon.sync_scheduler", "afbr.daemon.ipsec_keeper")
# a module importing one of these (or calling socket.socket) is an adapter
IO_MODULES = frozenset(
    {
        "asyncio",
        "concurrent",
        "multiprocessing",
        "pyroute2",
        "selectors",
        "socketserver",
        "subprocess",
        "threading",
    }
)
FLOORS = {1: "codecs", 2: "pure cores", 3: "adapters", 4: "daemon/CLI/lab"}


@dataclass
class Module:
    name: str
    path: Path
    imports: set[str] = field(default_factory=set)  # afbr modules, run at import or call time
    external: set[str] = field(default_factory=set)  # top-level names of other packages
    local_imports: list[str] = field(default_factory=list)  # imports inside functions
    opens_sockets: bool = False


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: Module, known: set[str], is_package: bool) -> None:
        self.module = module
        self.known = known
        self.is_package = is_package
        self.depth = 0  # inside a function

    def _add(self, target: str, lineno: int) -> None:
        top = target.split(".", maxsplit=1)[0]
        if top != PACKAGE:
            self.module.external.add(top)
            return
        while target not in self.known and "." in target:
            target = target.rsplit(".", 1)[0]
        if target == self.module.name:
            return
        self.module.imports.add(target)
        local = f"{self.module.name}:{lineno} -> {target}"
        if self.depth and local not in self.module.local_imports:
            self.module.local_imports.append(local)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.module.name.split(".")
            keep = len(parts) - node.level + (1 if self.is_package else 0)
            base = ".".join(parts[:keep] + ([base] if base else []))
        if base.split(".")[0] == "socket" and any(a.name == "socket" for a in node.names):
            self.module.opens_sockets = True
        for alias in node.names:
            full = f"{base}.{alias.name}"
            self._add(full if full in self.known else base, node.lineno)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and (node.value.id, node.attr) == ("socket", "socket"):
            self.module.opens_sockets = True
        self.generic_visit(node)


def read_modules(root: Path) -> dict[str, Module]:
    """Every module of the afbr package under `root`, with its imports."""
    paths = sorted((root / PACKAGE).rglob("*.py"))
    modules = {_module_name(root, p): Module(_module_name(root, p), p) for p in paths}
    known = set(modules)
    for module in modules.values():
        tree = ast.parse(module.path.read_text(), str(module.path))
        _Visitor(module, known, module.path.name == "__init__.py").visit(tree)
    return modules


def package_of(module: str) -> str:
    """afbr.ipsec.ike_sa -> afbr.ipsec; afbr.config -> afbr.config; afbr -> afbr."""
    return ".".join(module.split(".")[:2])


def package_graph(modules: Mapping[str, Module]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {package_of(m): set() for m in modules}
    for module in modules.values():
        for target in module.imports:
            if package_of(target) != package_of(module.name):
                graph[package_of(module.name)].add(package_of(target))
    graph.pop(PACKAGE, None)  # afbr/__init__.py: only the version
    for targets in graph.values():
        targets.discard(PACKAGE)
    return graph


def module_graph(modules: Mapping[str, Module]) -> dict[str, set[str]]:
    return {name: set(m.imports) for name, m in modules.items()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def floor_of(module: Module) -> int:
    if _matches(module.name, CODECS):
        return 1
    if _matches(module.name, TOP) and not _matches(module.name, PURE_IN_TOP):
        return 4
    if module.external & IO_MODULES or module.opens_sockets:
        return 3
    return 2


def floors(modules: Mapping[str, Module]) -> dict[str, int]:
    """Each module's floor; a module that needs an adapter (at any depth) is one, unless it
    is declared a codec or a pure core (then the import is listed as going up a floor)."""
    floor = {name: floor_of(m) for name, m in modules.items() if m.path.name != "__init__.py"}
    changed = True
    while changed:
        changed = False
        for name, module in modules.items():
            if floor.get(name) != 2 or _matches(name, PURE_IN_TOP):
                continue
            if any(floor.get(t) == 3 for t in module.imports):
                floor[name] = 3
                changed = True
    return floor


def upward_imports(modules: Mapping[str, Module]) -> list[str]:
    """Imports from a module to one on a higher floor."""
    floor = floors(modules)
    found = []
    for name, module in sorted(modules.items()):
        for target in sorted(module.imports):
            if name in floor and target in floor and floor[target] > floor[name]:
                found.append(f"{name} ({floor[name]}) -> {target} ({floor[target]})")
    return found


def report(root: Path) -> str:
    modules = read_modules(root)
    graph = package_graph(modules)
    lines = ["package import graph:"]
    lines += [f"  {p} -> {', '.join(sorted(t)) or '-'}" for p, t in sorted(graph.items())]
    lines.append("cycles between packages:")
    lines += [f"  {' <-> '.join(c)}" for c in cycles(graph)] or ["  none"]
    lines.append("cycles between modules:")
    lines += [f"  {' <-> '.join(c)}" for c in cycles(module_graph(modules))] or ["  none"]
    floor = floors(modules)
    for number, title in FLOORS.items():
        names = sorted(n for n, f in floor.items() if f == number)
        lines.append(f"floor {number}, {title} ({len(names)}):")
        lines += [f"  {n}" for n in names]
    lines.append("imports up a floor:")
    lines += [f"  {u}" for u in upward_imports(modules)] or ["  none"]
    local = sorted(i for m in modules.values() for i in m.local_imports)
    lines.append("function-local imports of afbr modules:")
    lines += [f"  {i}" for i in local] or ["  none"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    print(report(args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
