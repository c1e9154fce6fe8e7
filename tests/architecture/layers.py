"""An import checker over the source tree's AST (no import is executed): which module imports which, at
module level, inside functions and under `if TYPE_CHECKING:` alike, so a deferred import cannot hide a
layering violation or a cycle.

Used by tests/architecture/test_layers.py (the rules of the house) and test_deployed_files.py (no deployed
module imports development code). Kept free of project imports so it can check any tree, including the
small planted trees its own tests build.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PRODUCT_ROOTS = ("gatekeeper", "functions", "orchestrators", "function_app")
DEVELOPMENT_ROOTS = ("devstack", "tests", "demo", "bench")


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted name as written (resolved if relative); may name an attribute, not a module
    line: int
    path: Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files(root: Path, tops: Iterable[str]) -> Iterator[Path]:
    """The .py files of the given top-level packages or modules (`name` for `name/` or `name.py`)."""
    for top in tops:
        single = root / f"{top}.py"
        if single.is_file():
            yield single
        folder = root / top
        if folder.is_dir():
            yield from sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def imports_of(root: Path, path: Path) -> list[Import]:
    """Every import statement anywhere in the file (ast.walk reaches function bodies and TYPE_CHECKING)."""
    name = module_name(root, path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(Import(name, alias.name, node.lineno, path) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = f"{base}.{alias.name}" if alias.name != "*" else base
                found.append(Import(name, target, node.lineno, path))
    return found


def all_imports(root: Path, tops: Iterable[str]) -> list[Import]:
    return [imp for path in python_files(root, tops) for imp in imports_of(root, path)]


def top_of(dotted: str) -> str:
    return dotted.split(".", 1)[0]


def forbidden_imports(root: Path, importers: Iterable[str], forbidden: Iterable[str]) -> list[str]:
    """`path:line importer -> target` for every import of a forbidden top-level package or module."""
    banned = set(forbidden)
    return [
        f"{imp.path.relative_to(root)}:{imp.line} {imp.importer} -> {imp.target}"
        for imp in all_imports(root, importers)
        if top_of(imp.target) in banned
    ]


def resolve_module(target: str, modules: set[str]) -> str | None:
    """The longest known module that `target` names or lies in (`from a import b` may name attribute b of a)."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def unit_of(module: str) -> str:
    """The layering unit of a module: `gatekeeper.<first level>` inside the library, else its top level."""
    parts = module.split(".")
    if parts[0] == "gatekeeper" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def module_graph(root: Path, tops: Iterable[str]) -> dict[str, set[str]]:
    """module -> the modules of the checked tree it imports (imports of other code are dropped)."""
    files = list(python_files(root, tops))
    modules = {module_name(root, p) for p in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in files:
        for imp in imports_of(root, path):
            target = resolve_module(imp.target, modules)
            if target is not None and target != imp.importer:
                graph[imp.importer].add(target)
    return graph


def package_graph(root: Path, tops: Iterable[str]) -> dict[str, set[str]]:
    """unit -> the units it imports, built from module_graph (an edge inside one unit is dropped)."""
    graph: dict[str, set[str]] = {}
    for module, targets in module_graph(root, tops).items():
        source = unit_of(module)
        graph.setdefault(source, set())
        for target in targets:
            if unit_of(target) != source:
                graph[source].add(unit_of(target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one node (Tarjan), i.e. every import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def edges_within(graph: dict[str, set[str]], component: frozenset[str]) -> set[tuple[str, str]]:
    return {(a, b) for a in component for b in graph.get(a, ()) if b in component}
