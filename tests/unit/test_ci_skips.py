"""CI cannot pass on skipped checks (issue 21): under CI=true an infrastructure test that skips fails the run.

The demonstration runs the real infrastructure tests in a copy of the project that has no .venv-infra and no
../shared/fixtures beside it, once as a developer (the tests skip, with their reason) and once as CI (they fail).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(
    ".git", ".venv-infra", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", ".mutation", "demo-output"
)
EXTRA = """
import pytest


def test_skips_for_a_missing_tool():
    pytest.skip("tool X is absent")


@pytest.mark.allow_skip(reason="only meaningful on Windows; nothing is missing")
def test_allowed_skip():
    pytest.skip("not on this platform")


def test_passes():
    assert True
"""


@pytest.fixture(scope="module")
def bare_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project without .venv-infra, and with no ../shared beside it."""
    repo = tmp_path_factory.mktemp("ci-skips") / "repo"
    shutil.copytree(ROOT, repo, symlinks=True, ignore=IGNORE)
    assert not (repo / ".venv-infra").exists() and not (repo.parent / "shared").exists()
    (repo / "tests" / "unit" / "test_ci_skip_demo.py").write_text(EXTRA, encoding="utf-8")
    return repo


def _pytest(repo: Path, ci: str | None, *paths: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"COLUMNS": "400"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", *paths],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


INFRA_TESTS = ("tests/infra/test_checkov.py", "tests/infra/test_create_ui_definition.py")


def test_without_ci_missing_infrastructure_skips_with_its_reason(bare_copy: Path):
    result = _pytest(bare_copy, None, *INFRA_TESTS)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "skipped" in out and ".venv-infra is absent" in out
    assert "schemas are not at" in out


def test_under_ci_a_skipped_infrastructure_test_fails_the_run(bare_copy: Path):
    result = _pytest(bare_copy, "true", *INFRA_TESTS)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]
    assert "skipped under CI=true" in out
    assert ".venv-infra is absent" in out  # the original reason is kept, so CI says what to install
    assert "schemas are not at" in out  # ../shared/fixtures missing fails too
    assert " skipped" not in out.splitlines()[-1], out.splitlines()[-1]


def test_under_ci_only_a_skip_with_an_allowed_reason_passes(bare_copy: Path):
    result = _pytest(bare_copy, "true", "tests/unit/test_ci_skip_demo.py")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]
    assert "FAILED tests/unit/test_ci_skip_demo.py::test_skips_for_a_missing_tool" in out
    assert "SKIPPED" in out and "test_allowed_skip" not in [
        line for line in out.splitlines() if line.startswith("FAILED")
    ]
    assert "1 failed, 1 passed, 1 skipped" in out.splitlines()[-1]


def test_ci_false_is_not_ci(bare_copy: Path):
    result = _pytest(bare_copy, "false", "tests/unit/test_ci_skip_demo.py")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
