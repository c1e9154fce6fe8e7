"""docs/security.md names the tests that prove its controls; a name that no longer exists proves nothing.

Every ``tests/<path>.py::test_name`` in the document (and the ``::test_name`` shorthand, which reuses the
last file named on the same line) must be a function defined in that file. Pure file parsing: the test
modules are read with ``ast``, never imported.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"

# A file path (optional: absent means "the file last named on this line") and a test name. The lookahead
# keeps text such as GitHub's ``::add-mask::`` command from reading as a reference.
REFERENCE = re.compile(r"(?<![\w/.])(tests/[\w/]+\.py)?::([A-Za-z_]\w*)(?![\w-])")


@cache
def functions_in(path: str) -> frozenset[str] | None:
    """Names of every function defined in the file (classes and nested scopes included); None if absent."""
    file = ROOT / path
    if not file.is_file():
        return None
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=path)
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef))


def references(text: str) -> list[tuple[int, str | None, str]]:
    """(line number, file or None, test name) for every reference, shorthand resolved within its line."""
    found: list[tuple[int, str | None, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        last: str | None = None
        for match in REFERENCE.finditer(line):
            last = match.group(1) or last
            found.append((number, last, match.group(2)))
    return found


def unresolved(text: str) -> list[str]:
    problems = []
    for number, path, name in references(text):
        if path is None:
            problems.append(f"line {number}: ::{name} names no file before it on the line")
            continue
        names = functions_in(path)
        if names is None:
            problems.append(f"line {number}: {path} does not exist")
        elif name not in names:
            problems.append(f"line {number}: {path} has no test {name}")
    return problems


def test_every_test_the_security_document_names_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert len(references(text)) > 300  # the parser still finds the references at all
    assert unresolved(text) == []


def test_every_threat_model_row_names_a_test() -> None:
    table = DOC.read_text(encoding="utf-8").split("\n# Threat model\n", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| **")]
    data = [row for row in rows[2:]]  # after the header and its rule
    assert data, "the threat model table is gone"
    bare = [row[:100] for row in data if not references(row.split(" | ")[-1])]
    assert bare == []


def test_the_check_fails_on_a_missing_file_a_missing_test_and_an_orphan_shorthand() -> None:
    existing = "tests/unit/test_security_doc_refs.py"
    text = (
        f"| a | b | c | d | {existing}::test_every_test_the_security_document_names_exists, "
        f"::test_every_threat_model_row_names_a_test |\n"
        f"| a | b | c | d | {existing}::test_that_was_renamed; tests/unit/test_gone.py::test_x |\n"
        "the `::add-mask::` command is no reference; ::test_orphan is one without a file\n"
    )
    assert unresolved(text) == [
        f"line 2: {existing} has no test test_that_was_renamed",
        "line 2: tests/unit/test_gone.py does not exist",
        "line 3: ::test_orphan names no file before it on the line",
    ]
