"""The deployed file set: what the Functions package holds, computed from `.funcignore` the way Core Tools
and azd read it (gitignore patterns, via pathspec's GitIgnoreSpec) over the files of the working tree that
git would ship (tracked, plus untracked files that are not git-ignored).

It must hold every product file and no development code: not devstack/, tests/, demo/ or bench/, and no
deployed module that imports them. Local artefacts that may sit in a developer's folder (keys, caches,
virtualenvs) must be excluded too, since `func azure functionapp publish` packs the folder as it is.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pathspec
import pytest

from tests.architecture import layers

ROOT = Path(__file__).resolve().parents[2]

# What the package holds at the top level. A new entry here is a decision: deploy it on purpose or ignore it.
EXPECTED_TOP_LEVEL = {
    ".funcignore",
    "README.md",
    "function_app.py",
    "functions",
    "gatekeeper",
    "host.json",
    "orchestrators",
    "pyproject.toml",
    "requirements.txt",
}
PRODUCT_FILES = ("function_app.py", "host.json", "requirements.txt")
PRODUCT_PACKAGES = ("gatekeeper", "functions", "orchestrators")

# Files a developer's folder may hold that must never reach Azure (local keys, outbox, caches, tools).
LOCAL_ARTEFACTS = (
    ".venv/bin/python",
    ".venv-infra/bin/python",
    "node_modules/.bin/azurite",
    ".gatekeeper/keys/tenant-contoso.json",
    ".gatekeeper/outbox/contoso/notification.json",
    ".hypothesis/constants/abc",
    ".azurite/__azurite_db_table__.json",
    ".pytest_cache/v/cache/lastfailed",
    ".mypy_cache/3.11/cache.db",
    ".ruff_cache/0.17.6/1",
    "gatekeeper/__pycache__/settings.cpython-311.pyc",
    "gatekeeper.egg-info/PKG-INFO",
    "local.settings.json",
    "demo-output/timeline.txt",
    ".git/HEAD",
    ".github/workflows/ci.yml",
    ".ci/run",
    ".vscode/settings.json",
    "actions/request-approval/request.py",  # the drop-in CI clients run on build agents, not in the app
    "pipelines/templates/request-approval.yml",
)


def funcignore() -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines((ROOT / ".funcignore").read_text(encoding="utf-8").splitlines())


def source_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(name for name in listed.split("\0") if name and (ROOT / name).is_file())


def deployed_files(spec: pathspec.GitIgnoreSpec, files: list[str]) -> list[str]:
    return [name for name in files if not spec.match_file(name)]


@pytest.fixture(scope="module")
def deployed() -> list[str]:
    files = deployed_files(funcignore(), source_files())
    print("deployed file set (.funcignore):", *files, sep="\n  ")
    return files


def test_deployed_file_set_is_the_product_and_nothing_else(deployed: list[str]) -> None:
    assert {name.split("/", 1)[0] for name in deployed} == EXPECTED_TOP_LEVEL
    for name in PRODUCT_FILES:
        assert name in deployed
    for package in PRODUCT_PACKAGES:
        assert f"{package}/__init__.py" in deployed


def test_every_product_file_is_deployed(deployed: list[str]) -> None:
    product = [n for n in source_files() if n in PRODUCT_FILES or n.split("/", 1)[0] in PRODUCT_PACKAGES]
    assert len(product) > 100  # the whole library, not an empty listing
    assert sorted(set(product) - set(deployed)) == []


def test_no_development_code_is_deployed(deployed: list[str]) -> None:
    development = [n for n in deployed if n.split("/", 1)[0] in layers.DEVELOPMENT_ROOTS]
    assert development == []
    offenders = [
        f"{imp.path.relative_to(ROOT)}:{imp.line} imports {imp.target}"
        for name in deployed
        if name.endswith(".py")
        for imp in layers.imports_of(ROOT, ROOT / name)
        if layers.top_of(imp.target) in layers.DEVELOPMENT_ROOTS
    ]
    assert offenders == []


def test_no_local_server_or_process_starter_is_deployed(deployed: list[str]) -> None:
    """A local fake serves HTTP itself and the Azurite starter spawns a process; in Azure the Functions host
    does the serving, so no deployed module may import a server or process library (the old
    gatekeeper/local/ did, from inside the product)."""
    marks = {"http.server", "socketserver", "subprocess", "wsgiref"}
    offenders = [
        f"{imp.path.relative_to(ROOT)}:{imp.line} imports {imp.target}"
        for name in deployed
        if name.endswith(".py")
        for imp in layers.imports_of(ROOT, ROOT / name)
        if any(imp.target == m or imp.target.startswith(f"{m}.") for m in marks)
    ]
    assert offenders == []


@pytest.mark.parametrize("path", LOCAL_ARTEFACTS)
def test_local_artefacts_are_never_deployed(path: str) -> None:
    assert funcignore().match_file(path), f"{path} would be deployed: add it to .funcignore"


def test_the_listing_catches_a_development_module_left_out_of_funcignore() -> None:
    """Without its devstack line, .funcignore would ship the local fakes: the check above would see them."""
    lines = [line for line in (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines() if line != "devstack"]
    leaky = deployed_files(pathspec.GitIgnoreSpec.from_lines(lines), source_files())
    assert "devstack/server.py" in leaky
    assert [n for n in leaky if n.split("/", 1)[0] in layers.DEVELOPMENT_ROOTS]
