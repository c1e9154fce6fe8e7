"""The Function App package the Marketplace offer installs (the template's packageUri, onedeploy).

The offer runs no remote build, so the zip carries the app's Python dependencies in
`.python_packages/lib/site-packages`, installed for Linux x86_64 and CPython 3.11 (the Flex Consumption
runtime in infra/modules/functionapp.bicep). The app's own files are exactly those `.funcignore` lets through,
the same set `azd deploy` and Core Tools ship (tests/architecture/test_deployed_files.py). The zip is
deterministic (sorted names, fixed times), and its SHA-256 is written next to it for the release page.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatekeeper.marketplace.package import FIXED_ZIP_TIME, PackageError

SITE_PACKAGES = ".python_packages/lib/site-packages"
PYTHON_TAG = "cp311"
VERSION = re.compile(r"^\d+\.\d+\.\d+(?:[-.][0-9A-Za-z.]+)?$")
# A compiled extension names its interpreter and platform: foo.cpython-311-x86_64-linux-gnu.so, foo.abi3.so.
EXTENSION_SUFFIX = re.compile(r"\.(?:cpython-(?P<py>\d+)-(?P<platform>[^.]+)|abi3)\.so$")
WINDOWS_OR_MAC = (".pyd", ".dll", ".dylib")
# Files that hold secrets in a developer's or an operator's folder: dotenv files (azd keeps its environment
# in .azure/<env>/.env), Core Tools' local.settings.json, private keys and certificates with their keys.
# .funcignore excludes them; should an edit of .funcignore let one through, the package is refused rather
# than shipping a secret to every Marketplace buyer.
SECRET_FILES = (
    ".env",
    ".env.*",
    "*.env",
    ".azure/",
    "local.settings.json",
    "*.pem",
    "*.key",
    "*.pfx",
    "*.p12",
    "id_rsa*",
    "id_ed25519*",
    ".netrc",
    ".git-credentials",
)


@dataclass(frozen=True)
class AppPackage:
    zip_path: Path
    sha256_path: Path
    sha256: str
    files: int


def package_name(version: str) -> str:
    """The release asset's name; main.bicep's packageUri default and the release workflow use the same one."""
    return f"gatekeeper-functionapp-{version}.zip"


def _funcignore(root: Path) -> Any:
    import pathspec  # release tooling only (requirements-dev.txt); imported here, not at app start

    funcignore = root / ".funcignore"
    if not funcignore.is_file():
        raise PackageError(f"{funcignore}: not found; the package is the files .funcignore lets through")
    return pathspec.GitIgnoreSpec.from_lines(funcignore.read_text(encoding="utf-8").splitlines())


def deployed_files(root: Path, candidates: Iterable[str]) -> list[str]:
    """The candidates (paths relative to `root`, '/'-separated) that `.funcignore` does not exclude."""
    spec = _funcignore(root)
    return sorted(name for name in candidates if not spec.match_file(name))


def secret_files(names: Iterable[str]) -> list[str]:
    """The names (relative, '/'-separated) that look like a secret-bearing file (SECRET_FILES)."""
    import pathspec

    spec = pathspec.GitIgnoreSpec.from_lines(SECRET_FILES)
    return sorted(name for name in names if spec.match_file(name))


def folder_files(root: Path) -> list[str]:
    """Every file under `root` as the packer sees the folder (azd and Core Tools pack it the same way),
    without descending into folders `.funcignore` excludes (.git, virtualenvs, node_modules) or into
    .python_packages, which build_app_package adds itself."""
    spec = _funcignore(root)
    found = []
    for folder, subfolders, files in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        prefix = "" if relative == "." else f"{relative}/"
        subfolders[:] = sorted(
            d for d in subfolders if not spec.match_file(f"{prefix}{d}/") and f"{prefix}{d}" != ".python_packages"
        )
        found += [f"{prefix}{name}" for name in files]
    return sorted(found)


def _wheel_tags(text: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def _tag_fits(tag: str) -> bool:
    """A wheel tag (python-abi-platform) that runs on CPython 3.11 on Linux x86_64."""
    parts = tag.split("-")
    if len(parts) != 3:
        return False
    python, abi, platform = parts
    pythons = python.split(".")
    if abi == "none" and platform == "any":
        return any(p in ("py3", "py2", PYTHON_TAG) or p.startswith("py3") for p in pythons)
    # glibc Linux on x86_64 (the Flex Consumption workers); musllinux wheels do not load there
    platform_ok = any(p.startswith(("manylinux", "linux_")) and p.endswith("x86_64") for p in platform.split("."))
    if abi == "abi3":
        return platform_ok and any(p.startswith("cp3") and int(p[3:] or 0) <= 11 for p in pythons)
    return platform_ok and PYTHON_TAG in pythons


def foreign_dependencies(root: Path) -> list[str]:
    """Installed files under .python_packages that do not run on Linux x86_64 with CPython 3.11, each named
    with the reason; empty when every dependency fits."""
    site = root / SITE_PACKAGES
    problems = []
    for path in sorted(site.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        if path.name.endswith(WINDOWS_OR_MAC):
            problems.append(f"{relative}: a Windows or macOS binary")
        elif path.name.endswith(".so") and (match := EXTENSION_SUFFIX.search(path.name)):
            if match.group("py") and (match.group("py") != "311" or "linux" not in match.group("platform")):
                problems.append(f"{relative}: built for cpython-{match.group('py')}-{match.group('platform')}")
        elif path.name == "WHEEL" and path.parent.name.endswith(".dist-info"):
            tags = _wheel_tags(path.read_text(encoding="utf-8", errors="replace"))
            if not tags or not any(_tag_fits(tag) for tag in tags):
                problems.append(f"{relative}: wheel tags {tags} do not fit CPython 3.11 on Linux x86_64")
    return problems


def build_app_package(root: Path, candidates: Iterable[str], version: str, out_dir: Path) -> AppPackage:
    """Write `gatekeeper-functionapp-<version>.zip` and its `.sha256` into `out_dir`; refuse (nothing written)
    when the dependencies are missing or built for another platform or Python."""
    if not VERSION.match(version):
        raise PackageError(f"command line: --version: {version!r} is not a release version such as 1.2.0")
    site = root / SITE_PACKAGES
    if not site.is_dir() or not any(site.iterdir()):
        raise PackageError(
            f"{site}: no dependencies installed; the offer runs no remote build, so install them first "
            "(pip install --target .python_packages/lib/site-packages --platform manylinux2014_x86_64 "
            "--python-version 3.11 --only-binary=:all: -r requirements.txt)"
        )
    foreign = foreign_dependencies(root)
    if foreign:
        raise PackageError("dependencies that will not run on the Function App:\n  " + "\n  ".join(foreign))
    names = deployed_files(root, [c for c in candidates if not c.startswith(".python_packages/")])
    secrets = secret_files(names)
    if secrets:
        raise PackageError(
            f"{root / '.funcignore'}: lets through files that hold secrets, which must never ship: "
            + ", ".join(secrets)
        )
    if "function_app.py" not in names or "host.json" not in names:
        raise PackageError(f"{root}: function_app.py and host.json must be in the package (check .funcignore)")
    dependencies = sorted(p.relative_to(root).as_posix() for p in site.rglob("*") if p.is_file())
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / package_name(version)
    with zipfile.ZipFile(target, "w") as archive:
        for name in names + dependencies:
            info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, (root / name).read_bytes())
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    checksum = out_dir / f"{target.name}.sha256"
    checksum.write_text(f"{digest}  {target.name}\n", encoding="ascii")  # the format `sha256sum -c` reads
    return AppPackage(target, checksum, digest, len(names) + len(dependencies))
