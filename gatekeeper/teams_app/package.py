"""Write the Teams app package: manifest.json and the two icons at the root of a zip, the same bytes every time.

Deterministic on purpose: the same inputs give the same zip (fixed timestamps and attributes, sorted entries,
one compression level), so a package can be rebuilt and compared before an admin uploads it. The zip is
written to a temporary file beside the target and renamed over it, so a failure leaves no half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatekeeper.errors import InvalidInput
from gatekeeper.teams_app.manifest import TeamsAppInputs, build_manifest, load_template, manifest_problems

FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold
MAX_ICON_BYTES = 1_048_576


@dataclass(frozen=True)
class TeamsAppPackage:
    manifest: dict[str, Any]
    files: dict[str, bytes]  # name in the zip -> content, manifest.json included

    def zip_bytes(self) -> bytes:
        return zip_bytes(self.files)


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    """The zip of `files`, entries sorted by name, with fixed timestamps and attributes."""
    with tempfile.SpooledTemporaryFile() as buffer:
        with zipfile.ZipFile(buffer, "w") as archive:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # the same on every OS (zipfile picks 0 on Windows)
                info.external_attr = 0o644 << 16
                archive.writestr(info, files[name], compresslevel=9)
        buffer.seek(0)
        return buffer.read()


def _icon(source: Path, name: str) -> bytes:
    path = source / name
    if "/" in name or "\\" in name or name in ("", ".", "..") or not path.is_file():
        raise InvalidInput(f"{path}: icon file not found", field=str(path), code="usage", title="Invalid input")
    if path.stat().st_size > MAX_ICON_BYTES:
        raise InvalidInput(f"{path}: larger than {MAX_ICON_BYTES} bytes", field=str(path), code="usage")
    return path.read_bytes()


def build_teams_app(source: Path, inputs: TeamsAppInputs) -> TeamsAppPackage:
    """The package built from the template folder `source` (infra/teams/); InvalidInput naming the setting,
    option or manifest path at fault, and nothing built, when a check fails."""
    manifest = build_manifest(load_template(source), inputs)
    found = manifest.get("icons")
    icons: dict[str, Any] = found if isinstance(found, dict) else {}
    files = {str(name): _icon(source, str(name)) for name in sorted({str(v) for v in icons.values()})}
    problems = manifest_problems(manifest, files)
    if problems:
        raise InvalidInput(
            f"{source / 'manifest.json'}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if problems[1:] else ""),
            field=problems[0].split(":", 1)[0],
            code="usage",
            title="Invalid input",
            errors=[{"detail": p} for p in problems],
        )
    files["manifest.json"] = manifest_bytes(manifest)
    return TeamsAppPackage(manifest=manifest, files=files)


def write_zip(package: TeamsAppPackage, target: Path) -> None:
    """Write the zip to `target` atomically (temporary file in the same folder, then rename)."""
    data = package.zip_bytes()
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode a plain open would
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
