"""Fixtures for the infrastructure checks: the separate .venv-infra (pycep, checkov), parsed Bicep, copies.

pycep and checkov pin libraries of their own, so they live in .venv-infra (requirements-infra.txt) and the
tests call them in subprocesses. Tests that need them are skipped, with the reason, only when .venv-infra
is absent; `make bootstrap` creates it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.marketplace.template_model import Template, from_pycep

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
INFRA_VENV = ROOT / ".venv-infra"
INFRA_PYTHON = INFRA_VENV / "bin" / "python"
CHECKOV = INFRA_VENV / "bin" / "checkov"
PARSE_SCRIPT = Path(__file__).with_name("parse_bicep.py")
SCHEMA_DIR = ROOT.parent / "shared" / "fixtures" / "arm"
SKIP_REASON = (
    ".venv-infra is absent (create it: python3 -m venv .venv-infra && "
    ".venv-infra/bin/pip install -r requirements-infra.txt)"
)

needs_infra_venv = pytest.mark.skipif(not INFRA_PYTHON.exists(), reason=SKIP_REASON)


def parse_bicep_dir(folder: Path) -> dict[str, Any]:
    """Every .bicep file under `folder`, parsed by pycep: {relative path: parsed JSON}."""
    result = subprocess.run(
        [str(INFRA_PYTHON), str(PARSE_SCRIPT), str(folder)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"Bicep does not parse:\n{result.stderr}")
    return json.loads(result.stdout)


def templates_of(parsed: dict[str, Any]) -> list[Template]:
    """The main template first, then every module."""
    main = [from_pycep(path, data, is_main=True) for path, data in parsed.items() if path == "main.bicep"]
    modules = [from_pycep(path, data, is_main=False) for path, data in sorted(parsed.items()) if path != "main.bicep"]
    return main + modules


def copy_infra(destination: Path, edits: dict[str, tuple[str, str]]) -> Path:
    """A copy of infra/ with `edits` {relative file: (old text, new text)} applied; each must apply once."""
    target = destination / "infra"
    shutil.copytree(INFRA, target)
    for relative, (old, new) in edits.items():
        path = target / relative
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{relative}: the edit's anchor must occur exactly once: {old!r}"
        path.write_text(text.replace(old, new), encoding="utf-8")
    return target


@pytest.fixture(scope="session")
def parsed_infra() -> dict[str, Any]:
    if not INFRA_PYTHON.exists():
        pytest.skip(SKIP_REASON)
    return parse_bicep_dir(INFRA)


@pytest.fixture(scope="session")
def infra_templates(parsed_infra: dict[str, Any]) -> list[Template]:
    return templates_of(parsed_infra)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def run_gatekeeper(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gatekeeper", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
