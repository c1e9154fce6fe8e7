"""matplotlib stays off every request path: only the report's renderer imports it, and only inside a function;
only the `report` command imports the report package. A cold start of the Function App never loads either."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.architecture import layers

ROOT = Path(__file__).resolve().parents[2]
RENDERER = "gatekeeper.report.render"
MAY_IMPORT_REPORT = {"gatekeeper.report.metrics", "gatekeeper.report.render", "gatekeeper.commands.report"}


def test_only_the_renderer_imports_matplotlib_and_only_on_first_use() -> None:
    found = layers.all_imports(ROOT, layers.PRODUCT_ROOTS)
    users = sorted({i.importer for i in found if layers.top_of(i.target) == "matplotlib"})
    assert users == [RENDERER]
    tree = ast.parse((ROOT / "gatekeeper/report/render.py").read_text())
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in top_level if isinstance(n, ast.ImportFrom)]
    assert not any(name.startswith("matplotlib") for name in names)


def test_only_the_report_command_imports_the_report_package() -> None:
    found = layers.all_imports(ROOT, layers.PRODUCT_ROOTS)
    importers = {i.importer for i in found if i.target.startswith("gatekeeper.report")}
    assert importers <= MAY_IMPORT_REPORT
    assert "gatekeeper.commands.report" in importers
