"""A checker over the source's AST for "domain classes receive values, not settings": who reads app settings
or the process environment directly. No import is executed, so a read inside a function body or behind a
deferred import counts as much as one at module level.

A read is any of:
- a call of `get` or `require` on the settings module (`settings.get(...)`, `gatekeeper.settings.require(...)`,
  the module under another name), or an import of those two functions from `gatekeeper.settings`;
- `os.environ`, `os.environb`, `os.getenv`, `os.getenvb` (on `os` under any name), or importing one of them
  from `os`.

Used by tests/architecture/test_settings_reads.py. Kept free of project imports so it can check any tree,
including the small planted trees its own tests build.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SETTINGS_MODULE = "gatekeeper.settings"
SETTINGS_READERS = frozenset({"get", "require"})
ENVIRONMENT_NAMES = frozenset({"environ", "environb", "getenv", "getenvb"})


@dataclass(frozen=True)
class Read:
    path: Path
    line: int
    what: str

    def describe(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line} {self.what}"


def _dotted(node: ast.expr) -> str | None:
    """`a.b.c` for a chain of names and attributes, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _aliases(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(names bound to gatekeeper.settings, names bound to os) anywhere in the file."""
    settings_names, os_names = {"settings", SETTINGS_MODULE}, {"os"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == SETTINGS_MODULE:
                    settings_names.add(alias.asname or SETTINGS_MODULE)
                elif alias.name == "os":
                    os_names.add(alias.asname or "os")
        elif isinstance(node, ast.ImportFrom) and node.module == "gatekeeper" and not node.level:
            settings_names.update(a.asname or a.name for a in node.names if a.name == "settings")
    return settings_names, os_names


def reads_in(path: Path) -> list[Read]:
    """Every direct read of a setting or of the process environment in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    settings_names, os_names = _aliases(tree)
    found: list[Read] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level:
            names = {a.name for a in node.names}
            if node.module == SETTINGS_MODULE and names & SETTINGS_READERS:
                found.append(Read(path, node.lineno, f"imports {sorted(names & SETTINGS_READERS)} from settings"))
            if node.module == "os" and names & ENVIRONMENT_NAMES:
                found.append(Read(path, node.lineno, f"imports {sorted(names & ENVIRONMENT_NAMES)} from os"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = _dotted(node.func.value) or ""
            is_settings = owner in settings_names or (owner.startswith("gatekeeper.") and owner.endswith(".settings"))
            if node.func.attr in SETTINGS_READERS and is_settings:
                found.append(Read(path, node.lineno, f"calls {owner}.{node.func.attr}()"))
        if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_NAMES and _dotted(node.value) in os_names:
            found.append(Read(path, node.lineno, f"reads {_dotted(node.value)}.{node.attr}"))
    return sorted(set(found), key=lambda r: (str(r.path), r.line, r.what))


def settings_reads(root: Path, tops: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """Reads in the .py files of `tops` (packages or `name.py` modules under `root`), except the `allowed`
    paths (relative to `root`, posix style)."""
    exempt = set(allowed)
    found: list[str] = []
    for top in tops:
        single = root / f"{top}.py"
        files = [single] if single.is_file() else []
        folder = root / top
        if folder.is_dir():
            files += sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
        for path in files:
            if path.relative_to(root).as_posix() in exempt:
                continue
            found.extend(read.describe(root) for read in reads_in(path))
    return found
