"""`gatekeeper package functionapp`: the app package the offer installs (no remote build), and its SHA-256."""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import pytest

from gatekeeper.marketplace.app_package import (
    SITE_PACKAGES,
    _tag_fits,
    build_app_package,
    deployed_files,
    foreign_dependencies,
    package_name,
    secret_files,
)
from gatekeeper.marketplace.package import PackageError
from tests.architecture.test_deployed_files import EXPECTED_TOP_LEVEL, source_files
from tests.infra.conftest import ROOT, run_gatekeeper

LINUX_311 = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"


def _tree(
    root: Path, wheel_tag: str = LINUX_311, extension: str = "_speed.cpython-311-x86_64-linux-gnu.so"
) -> list[str]:
    files = {
        ".funcignore": "tests\ndocs\n*.md\n",
        "function_app.py": "app = None\n",
        "host.json": "{}\n",
        "gatekeeper/__init__.py": "",
        "tests/test_x.py": "",
        "docs/x.md": "",
        "README.md": "",
        f"{SITE_PACKAGES}/fast/__init__.py": "",
        f"{SITE_PACKAGES}/fast/{extension}": "ELF",
        f"{SITE_PACKAGES}/fast-1.0.dist-info/WHEEL": f"Wheel-Version: 1.0\nTag: {wheel_tag}\n",
        f"{SITE_PACKAGES}/pure-2.0.dist-info/WHEEL": "Wheel-Version: 1.0\nTag: py3-none-any\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return [name for name in files if not name.startswith(".python_packages/")]


def test_builds_the_app_files_and_the_dependencies_with_a_checksum(tmp_path):
    root = tmp_path / "src"
    candidates = _tree(root)
    package = build_app_package(root, candidates, "1.2.0", tmp_path / "out")
    assert package.zip_path == tmp_path / "out" / "gatekeeper-functionapp-1.2.0.zip"
    with zipfile.ZipFile(package.zip_path) as archive:
        names = archive.namelist()
    assert names == [
        ".funcignore",
        "function_app.py",
        "gatekeeper/__init__.py",
        "host.json",
        f"{SITE_PACKAGES}/fast-1.0.dist-info/WHEEL",
        f"{SITE_PACKAGES}/fast/__init__.py",
        f"{SITE_PACKAGES}/fast/_speed.cpython-311-x86_64-linux-gnu.so",
        f"{SITE_PACKAGES}/pure-2.0.dist-info/WHEEL",
    ]
    digest = hashlib.sha256(package.zip_path.read_bytes()).hexdigest()
    assert package.sha256 == digest
    assert package.sha256_path.read_text() == f"{digest}  gatekeeper-functionapp-1.2.0.zip\n"


def test_the_package_is_reproducible(tmp_path):
    root = tmp_path / "src"
    candidates = _tree(root)
    first = build_app_package(root, candidates, "1.2.0", tmp_path / "a")
    second = build_app_package(root, candidates, "1.2.0", tmp_path / "b")
    assert first.sha256 == second.sha256


def test_refuses_without_installed_dependencies(tmp_path):
    root = tmp_path / "src"
    candidates = _tree(root)
    for path in sorted((root / ".python_packages").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    with pytest.raises(PackageError, match=r"site-packages: no dependencies installed"):
        build_app_package(root, candidates, "1.2.0", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("tag", "extension", "reason"),
    [
        (LINUX_311, "_speed.cpython-312-x86_64-linux-gnu.so", "built for cpython-312"),
        (LINUX_311, "_speed.cpython-311-darwin.so", "built for cpython-311-darwin"),
        (LINUX_311, "_speed.pyd", "a Windows or macOS binary"),
        ("cp311-cp311-win_amd64", "_speed.abi3.so", "do not fit CPython 3.11 on Linux x86_64"),
        ("cp312-cp312-manylinux2014_x86_64", "_speed.abi3.so", "do not fit"),
        ("cp311-cp311-musllinux_1_1_x86_64", "_speed.abi3.so", "do not fit"),
        ("cp311-cp311-manylinux2014_aarch64", "_speed.abi3.so", "do not fit"),
    ],
)
def test_refuses_dependencies_for_another_platform_or_python(tmp_path, tag, extension, reason):
    root = tmp_path / "src"
    candidates = _tree(root, tag, extension)
    assert any(reason in problem for problem in foreign_dependencies(root))
    with pytest.raises(PackageError, match="will not run on the Function App"):
        build_app_package(root, candidates, "1.2.0", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("tag", "fits"),
    [
        ("py3-none-any", True),
        ("py2.py3-none-any", True),
        ("cp38-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64", True),
        (LINUX_311, True),
        ("cp311-cp311-linux_x86_64", True),
        ("cp312-abi3-manylinux2014_x86_64", False),
        ("cp311-cp311-macosx_11_0_arm64", False),
        ("cp310-cp310-manylinux2014_x86_64", False),
        ("garbage", False),
    ],
)
def test_wheel_tags_that_run_on_the_function_app(tag, fits):
    assert _tag_fits(tag) is fits


def test_refuses_a_version_that_is_not_a_release(tmp_path):
    root = tmp_path / "src"
    candidates = _tree(root)
    with pytest.raises(PackageError, match="--version"):
        build_app_package(root, candidates, "latest", tmp_path / "out")


def test_the_real_checkout_ships_what_the_architecture_test_expects():
    """Same .funcignore reading as the deployed-files check: the release zip and azd deploy the same files."""
    names = deployed_files(ROOT, source_files())
    assert {name.split("/", 1)[0] for name in names} == EXPECTED_TOP_LEVEL
    assert package_name("0.1.0") == "gatekeeper-functionapp-0.1.0.zip"


def test_command_refuses_a_version_other_than_the_projects(tmp_path):
    result = run_gatekeeper("package", "functionapp", "--version", "9.9.9", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "--version: '9.9.9' differs from pyproject.toml's" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_folder_walk_sees_what_git_tracks_in_this_checkout():
    """The release packs the checkout folder (as azd does): the walk, filtered by .funcignore, gives the same
    files as git's list of tracked files, so no untracked local file reaches the package unnoticed."""
    from gatekeeper.marketplace.app_package import folder_files

    walked = deployed_files(ROOT, folder_files(ROOT))
    tracked = deployed_files(ROOT, source_files())
    assert walked == tracked


def test_command_builds_from_a_checkout_folder(tmp_path):
    root = tmp_path / "src"
    _tree(root)
    (root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.2.0"\n')
    (root / ".funcignore").write_text("tests\ndocs\n*.md\npyproject.toml\n")
    result = run_gatekeeper(
        "package", "functionapp", "--version", "1.2.0", "--out", str(tmp_path / "out"), "--root", str(root)
    )
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(tmp_path / "out" / "gatekeeper-functionapp-1.2.0.zip") as archive:
        assert "function_app.py" in archive.namelist() and "tests/test_x.py" not in archive.namelist()


@pytest.mark.parametrize(
    "secret",
    [
        ".env",
        ".env.production",
        "prod.env",
        ".azure/prod/.env",
        "local.settings.json",
        "certs/signing.pem",
        "keys/app.key",
        "cert.pfx",
        "id_rsa",
        ".netrc",
    ],
)
def test_a_secret_bearing_file_that_funcignore_lets_through_refuses_the_package(tmp_path, secret):
    """A developer's folder holds .env files, azd's .azure/<env>/.env, Core Tools' local.settings.json and
    keys; if .funcignore lets one through, nothing is written and the error names the file."""
    root = tmp_path / "src"
    candidates = _tree(root)
    (root / secret).parent.mkdir(parents=True, exist_ok=True)
    (root / secret).write_text("AZURE_CLIENT_SECRET=do-not-ship\n")
    with pytest.raises(PackageError, match=re.escape(secret)) as raised:
        build_app_package(root, [*candidates, secret], "1.2.0", tmp_path / "out")
    assert "do-not-ship" not in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_the_projects_funcignore_keeps_every_secret_bearing_file_out(tmp_path):
    """The real .funcignore excludes what a working folder may hold: the package built from such a folder
    simply leaves those files out (and secret_files agrees with the patterns)."""
    names = [
        ".env",
        ".env.local",
        "dev.env",
        ".azure/dev/.env",
        "local.settings.json",
        "a.pem",
        "b.key",
        "c.pfx",
        "d.p12",
        ".netrc",
        "gatekeeper/x.py",
    ]
    assert secret_files(names) == sorted(n for n in names if n != "gatekeeper/x.py")
    assert deployed_files(ROOT, names) == ["gatekeeper/x.py"]
