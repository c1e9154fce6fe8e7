"""checkov's Bicep checks: nothing fails except the reviewed skips in infra/checks/checkov-skips.json.

checkov runs once for the real infra/ (about 10 s) with no skips applied, so the test sees every failing
check and can also tell when a reviewed skip no longer fails (a stale skip to delete).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import CHECKOV, INFRA, INFRA_PYTHON, SKIP_REASON, copy_infra, load_json

SKIPS = load_json(INFRA / "checks" / "checkov-skips.json")["skips"]


def run_checkov(folder: Path, *extra: str) -> list[dict[str, Any]]:
    """checkov's failed checks for the Bicep files under `folder` (JSON output, no download, no network)."""
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(
        [
            str(CHECKOV),
            "--framework",
            "bicep",
            "--skip-download",
            "--quiet",
            "--compact",
            "-o",
            "json",
            "-d",
            str(folder),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode in (0, 1), f"checkov crashed ({result.returncode}):\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout) if result.stdout.strip() else []
    reports = report if isinstance(report, list) else [report]
    failed = []
    for entry in reports:
        assert entry.get("summary", {}).get("parsing_errors", 0) == 0, f"checkov could not parse: {entry}"
        failed += entry.get("results", {}).get("failed_checks", [])
    return failed


@pytest.fixture(scope="module")
def failed_checks() -> list[dict[str, Any]]:
    if not INFRA_PYTHON.exists():
        pytest.skip(SKIP_REASON)
    return run_checkov(INFRA)


def _key(check: dict[str, Any]) -> tuple[str, str]:
    return check["check_id"], f"{check['file_path']}::{check['resource']}"


def test_every_skip_names_resources_and_a_reason():
    for skip in SKIPS:
        assert skip["check"].startswith("CKV"), skip
        assert skip["resources"], f"{skip['check']}: name the resources the skip covers"
        assert len(skip["reason"].strip()) >= 40, f"{skip['check']}: give a real reason"


def test_no_failing_check_except_reviewed_skips(failed_checks):
    allowed = {(s["check"], r) for s in SKIPS for r in s["resources"]}
    unexpected = sorted({_key(c) for c in failed_checks} - allowed)
    details = [f"{cid} {where}" for cid, where in unexpected]
    assert unexpected == [], "checkov failures not covered by infra/checks/checkov-skips.json:\n" + "\n".join(details)


def test_no_stale_skip(failed_checks):
    allowed = {(s["check"], r) for s in SKIPS for r in s["resources"]}
    stale = sorted(allowed - {_key(c) for c in failed_checks})
    assert stale == [], f"these reviewed skips no longer fail; delete them: {stale}"


def test_checkov_catches_a_broken_copy(tmp_path):
    """The gate can fail: a copy that lets clients fall back to TLS 1.0 is reported."""
    if not INFRA_PYTHON.exists():
        pytest.skip(SKIP_REASON)
    broken = copy_infra(
        tmp_path, {"modules/storage.bicep": ("    minimumTlsVersion: 'TLS1_2'\n", "    minimumTlsVersion: 'TLS1_0'\n")}
    )
    failed = run_checkov(broken / "modules", "--check", "CKV_AZURE_44")
    assert {(c["check_id"], c["resource"]) for c in failed} == {
        ("CKV_AZURE_44", "Microsoft.Storage/storageAccounts.storage")
    }
