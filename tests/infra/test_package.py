"""`gatekeeper package marketplace`: the offer zip, and refusals for a missing or inconsistent template.

The Bicep CLI cannot run here, so the tests build a small compiled-looking template from main.bicep's own
parameters, the way `bicep build` lays one out (a nested deployment per module, inner-scope templates).
"""

from __future__ import annotations

import json
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.marketplace.bicep_params import read_parameters
from gatekeeper.marketplace.package import (
    PLACEHOLDER_TRACKING_ID,
    ZIP_NAME,
    PackageError,
    PackageInputs,
    build_package,
)
from tests.infra.conftest import INFRA, SCHEMA_DIR, load_json, run_gatekeeper

TODAY = date(2026, 11, 21)
EXCEPTIONS = load_json(INFRA / "checks" / "api-version-exceptions.json")["exceptions"]
PID = "pid-97a7f287-6daf-4b56-af5e-8997cba933b4-partnercenter"


def compiled_template() -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for name, p in read_parameters((INFRA / "main.bicep").read_text()).items():
        spec: dict[str, Any] = {"type": p.type}
        if p.has_default:
            spec["defaultValue"] = (
                "[resourceGroup().location]" if name == "location" else int(p.default) if p.type == "int" else p.default
            )
        parameters[name] = spec
    module = {
        "type": "Microsoft.Resources/deployments",
        "apiVersion": "2025-04-01",
        "name": "gatekeeper-identity",
        "properties": {
            "expressionEvaluationOptions": {"scope": "inner"},
            "mode": "Incremental",
            "parameters": {"location": {"value": "[parameters('location')]"}},
            "template": {
                "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
                "contentVersion": "1.0.0.0",
                "parameters": {"location": {"type": "string"}},
                "resources": [
                    {
                        "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
                        "apiVersion": "2024-11-30",
                        "name": "id",
                        "location": "[parameters('location')]",
                    }
                ],
                "outputs": {
                    "clientId": {
                        "type": "string",
                        "value": "[reference(resourceId('Microsoft.ManagedIdentity/"
                        "userAssignedIdentities', 'id'), '2024-11-30').clientId]",
                    }
                },
            },
        },
    }
    pid = {
        "type": "Microsoft.Resources/deployments",
        "apiVersion": "2025-04-01",
        "name": PID,
        "properties": {
            "mode": "Incremental",
            "template": {
                "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
                "contentVersion": "1.0.0.0",
                "resources": [],
            },
        },
    }
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": parameters,
        "resources": [module, pid],
        "outputs": {"AZURE_FUNCTION_APP_NAME": {"type": "string", "value": "[variables('x')]"}},
    }


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def inputs(template: Path, **extra: Any) -> PackageInputs:
    return PackageInputs(
        template=template,
        ui_definition=INFRA / "marketplace" / "createUiDefinition.json",
        bicep=INFRA / "main.bicep",
        api_exceptions=EXCEPTIONS,
        **extra,
    )


def test_builds_the_offer_zip(tmp_path):
    template = write(tmp_path / "mainTemplate.json", compiled_template())
    artifacts = tmp_path / "artifacts"
    (artifacts / "nestedtemplates").mkdir(parents=True)
    (artifacts / "nestedtemplates" / "extra.json").write_text("{}")
    schema_dir = SCHEMA_DIR if SCHEMA_DIR.is_dir() else None
    target, findings = build_package(
        inputs(template, artifacts=artifacts, schema_dir=schema_dir), tmp_path / "out", TODAY
    )
    assert findings == []
    assert target == tmp_path / "out" / ZIP_NAME
    with zipfile.ZipFile(target) as archive:
        assert archive.namelist() == ["mainTemplate.json", "createUiDefinition.json", "nestedtemplates/extra.json"]
        assert json.loads(archive.read("mainTemplate.json")) == compiled_template()
        packaged_ui = json.loads(archive.read("createUiDefinition.json"))
        assert packaged_ui == load_json(INFRA / "marketplace" / "createUiDefinition.json")


def test_zip_is_reproducible(tmp_path):
    template = write(tmp_path / "mainTemplate.json", compiled_template())
    first, _ = build_package(inputs(template), tmp_path / "a", TODAY)
    second, _ = build_package(inputs(template), tmp_path / "b", TODAY)
    assert first is not None and second is not None
    assert first.read_bytes() == second.read_bytes()


def test_refuses_when_the_compiled_template_is_missing(tmp_path):
    with pytest.raises(PackageError, match=r"mainTemplate\.json: compiled template .* not found"):
        build_package(inputs(tmp_path / "mainTemplate.json"), tmp_path / "out", TODAY)
    assert not (tmp_path / "out").exists()


def test_refuses_a_stale_template_whose_parameters_differ_from_the_bicep(tmp_path):
    stale = compiled_template()
    stale["parameters"]["oldSetting"] = {"type": "string"}
    del stale["parameters"]["instanceMemoryMB"]
    target, findings = build_package(inputs(write(tmp_path / "mainTemplate.json", stale)), tmp_path / "out", TODAY)
    assert target is None and not (tmp_path / "out").exists()
    rules = {f.rule for f in findings}
    assert "Template-Matches-Bicep" in rules
    assert "Outputs-Must-Be-Present-In-Template-Parameters" in rules  # instanceMemoryMB is still an output
    assert "Parameters-Without-Default-Must-Exist-In-CreateUIDefinition" in rules  # oldSetting is not asked


def test_refuses_without_the_partner_center_attribution(tmp_path):
    template = compiled_template()
    template["resources"] = [r for r in template["resources"] if r["name"] != PID]
    _, findings = build_package(inputs(write(tmp_path / "t.json", template)), tmp_path / "out", TODAY)
    assert [f.rule for f in findings] == ["Customer-Usage-Attribution"]


def test_refuses_attribution_inside_a_nested_template(tmp_path):
    template = compiled_template()
    inner = template["resources"][0]["properties"]["template"]["resources"]
    inner.append(
        {
            "type": "Microsoft.Resources/deployments",
            "apiVersion": "2025-04-01",
            "name": PID,
            "properties": {"mode": "Incremental", "template": {}},
        }
    )
    _, findings = build_package(inputs(write(tmp_path / "t.json", template)), tmp_path / "out", TODAY)
    assert [(f.rule, f.where) for f in findings] == [("Customer-Usage-Attribution", "t.json#gatekeeper-identity")]


def test_refuses_hard_coded_location_and_leaked_key_in_the_compiled_template(tmp_path):
    template = compiled_template()
    inner = template["resources"][0]["properties"]["template"]
    inner["resources"][0]["location"] = "westeurope"
    template["outputs"]["storageKey"] = {
        "type": "string",
        "value": "[listKeys(resourceId('Microsoft.Storage/storageAccounts', 'st'), '2025-06-01').keys[0].value]",
    }
    _, findings = build_package(inputs(write(tmp_path / "t.json", template)), tmp_path / "out", TODAY)
    assert sorted(f.rule for f in findings) == ["Location-Should-Not-Be-Hardcoded", "Outputs-Must-Not-Contain-Secrets"]


def test_refuses_a_file_that_is_not_a_deployment_template(tmp_path):
    _, findings = build_package(inputs(write(tmp_path / "t.json", {"parameters": {}})), tmp_path / "out", TODAY)
    assert "DeploymentTemplate-Schema-Is-Correct" in {f.rule for f in findings}


def test_command_exit_codes(tmp_path):
    missing = run_gatekeeper(
        "package", "marketplace", "--template", str(tmp_path / "mainTemplate.json"), "--out", str(tmp_path / "out")
    )
    assert missing.returncode == 2
    assert "mainTemplate.json: compiled template" in missing.stderr and "not found" in missing.stderr

    bad = compiled_template()
    bad["parameters"]["extra"] = {"type": "string"}
    inconsistent = run_gatekeeper(
        "package", "marketplace", "--template", str(write(tmp_path / "bad.json", bad)), "--out", str(tmp_path / "out")
    )
    assert inconsistent.returncode == 1
    assert "refusing to package" in inconsistent.stderr and "Template-Matches-Bicep" in inconsistent.stderr

    template = write(tmp_path / "mainTemplate.json", compiled_template())
    good = run_gatekeeper("package", "marketplace", "--template", str(template), "--out", str(tmp_path / "out"))
    assert good.returncode == 0, good.stderr
    assert (tmp_path / "out" / ZIP_NAME).is_file()


# ------------------------------------------------------------------------------------- a release (the tag)

RELEASE_URL = "https://github.com/contoso/gatekeeper/releases/download/v0.1.0/gatekeeper-functionapp-0.1.0.zip"
PLACEHOLDER_PID = f"pid-{PLACEHOLDER_TRACKING_ID}-partnercenter"


def _release_template(pid: str = PID, package_url: str = RELEASE_URL) -> dict[str, Any]:
    template = compiled_template()
    next(r for r in template["resources"] if r["name"].startswith("pid-"))["name"] = pid
    template["parameters"]["packageUri"]["defaultValue"] = package_url
    return template


def test_a_release_refuses_the_placeholder_tracking_guid(tmp_path):
    template = write(tmp_path / "t.json", _release_template(pid=PLACEHOLDER_PID))
    _, findings = build_package(inputs(template, release_package_url=RELEASE_URL), tmp_path / "out", TODAY)
    assert [(f.rule, "placeholder" in f.message) for f in findings] == [("Customer-Usage-Attribution", True)]
    assert not (tmp_path / "out").exists()
    # without --release (pull requests, local checks) the placeholder is fine
    target, findings = build_package(inputs(template), tmp_path / "out", TODAY)
    assert findings == [] and target is not None


def test_a_release_refuses_a_template_that_installs_another_package(tmp_path):
    older = RELEASE_URL.replace("0.1.0", "0.0.9")
    template = write(tmp_path / "t.json", _release_template(package_url=older))
    _, findings = build_package(inputs(template, release_package_url=RELEASE_URL), tmp_path / "out", TODAY)
    assert [f.rule for f in findings] == ["Package-Is-This-Release"]


def test_a_release_with_a_real_guid_and_its_own_package_is_written(tmp_path):
    template = write(tmp_path / "t.json", _release_template())
    target, findings = build_package(inputs(template, release_package_url=RELEASE_URL), tmp_path / "out", TODAY)
    assert findings == [] and target is not None and target.is_file()


def test_main_bicep_still_carries_the_placeholder_so_a_release_needs_the_real_guid():
    assert f"name: '{PLACEHOLDER_PID}'" in (INFRA / "main.bicep").read_text()


def test_release_command_exit_code(tmp_path):
    template = write(tmp_path / "mainTemplate.json", _release_template(pid=PLACEHOLDER_PID))
    result = run_gatekeeper(
        "package", "marketplace", "--template", str(template), "--out", str(tmp_path / "out"),
        "--release-package-url", RELEASE_URL,
    )  # fmt: skip
    assert result.returncode == 1
    assert "tracking GUID is still the placeholder" in result.stderr
