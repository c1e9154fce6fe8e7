"""Domain classes receive values, not settings: only the composition root reads app settings.

`gatekeeper/settings.py` parses them (`Settings.from_environ`) and `gatekeeper/tenancy/secrets.py` resolves
tenants' `env:NAME` secret references (its job); `gatekeeper/services.py` hands the parsed values to what it
builds and needs no exemption, so it gets none. Nothing else in the product calls `settings.get` or
`settings.require` or touches `os.environ`/`getenv`: a module that did would read a value the root never
validated, or a different one from the rest of the process. The checker is also run on a planted tree to
show it reports each form of the violation.
"""

from __future__ import annotations

from pathlib import Path

from tests.architecture import settings_reads
from tests.architecture.layers import PRODUCT_ROOTS

ROOT = Path(__file__).resolve().parents[2]
# gatekeeper/client/environment.py reads CLIENT-side variables (GATEKEEPER_URL, the caller's credential, the CI
# run asking) on a build agent or an automation host, never app settings: `python -m gatekeeper request` and
# the client run outside the Function App, where there is no Settings to read.
ALLOWED = ("gatekeeper/settings.py", "gatekeeper/tenancy/secrets.py", "gatekeeper/client/environment.py")


def test_only_the_composition_root_reads_settings_or_the_environment() -> None:
    found = settings_reads.settings_reads(ROOT, PRODUCT_ROOTS, ALLOWED)
    assert found == [], "settings read outside the composition root:\n" + "\n".join(found)


def test_the_allowed_modules_are_the_ones_that_read() -> None:
    """The exemptions are real: each allowed module does read, so the list cannot hide a renamed file."""
    for allowed in ALLOWED:
        assert settings_reads.reads_in(ROOT / allowed), f"{allowed} reads nothing: drop it from ALLOWED"
    assert (ROOT / "gatekeeper/audit/log.py").is_file()  # the scan covers the library itself


VIOLATIONS = {
    "plain.py": "from gatekeeper import settings\n\ndef f(env):\n    return settings.require('X', env)\n",
    "renamed.py": "from gatekeeper import settings as s\n\nclass C:\n    def m(self):\n        return s.get('X')\n",
    "dotted.py": "import gatekeeper.settings\n\nEVERY = gatekeeper.settings.get('X')\n",
    "module_alias.py": "import gatekeeper.settings as cfg\n\nEVERY = cfg.require('X')\n",
    "from_import.py": "from gatekeeper.settings import require\n",
    "environ.py": "import os\n\ndef f():\n    return os.environ.get('X')\n",
    "getenv.py": "import os as o\n\nVALUE = o.getenv('X')\n",
    "from_os.py": "from os import environ\n",
    "subscript.py": "import os\n\ndef f():\n    return dict(os.environ)['X']\n",
}
CLEAN = {
    "values.py": (
        "import os\nfrom gatekeeper.settings import Settings\n\n"
        "def f(settings: Settings, mapping: dict) -> object:\n"
        "    os.path.join('a', 'b')\n"
        "    return settings.max_body_bytes, mapping.get('x'), Settings.from_environ({})\n"
    ),
    "other_get.py": "class Thing:\n    def get(self, name):\n        return name\n\nTHING = Thing().get('x')\n",
}


def plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / "product" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_reports_every_planted_read(tmp_path: Path) -> None:
    plant(tmp_path, {**VIOLATIONS, **CLEAN})
    found = settings_reads.settings_reads(tmp_path, ["product"], [])
    reported = {line.split(":", 1)[0].removeprefix("product/") for line in found}
    assert reported == set(VIOLATIONS), found
    assert "product/plain.py:4 calls settings.require()" in found
    assert "product/renamed.py:5 calls s.get()" in found


def test_the_checker_honours_the_allowed_files_only(tmp_path: Path) -> None:
    plant(tmp_path, {"settings.py": VIOLATIONS["environ.py"], "service.py": VIOLATIONS["plain.py"]})
    found = settings_reads.settings_reads(tmp_path, ["product"], ["product/settings.py"])
    assert found == ["product/service.py:4 calls settings.require()"]
