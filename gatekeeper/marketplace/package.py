"""Build the Azure Marketplace offer zip from the compiled template, refusing an inconsistent one.

The zip holds mainTemplate.json and createUiDefinition.json at its root plus any nested artifacts. Before
writing it, the compiled template is checked against the Bicep it was built from (same parameters), the
createUiDefinition rules, the template rules and the customer-usage-attribution deployment, because a
stale or hand-edited mainTemplate.json is the usual way a Marketplace release goes wrong.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from gatekeeper.errors import InvalidInput
from gatekeeper.marketplace.bicep_params import read_parameters
from gatekeeper.marketplace.cuid_rules import check_cuid, validate_schema
from gatekeeper.marketplace.findings import Finding
from gatekeeper.marketplace.template_model import Template, from_arm
from gatekeeper.marketplace.template_rules import check_templates

DEPLOYMENT_SCHEMA = re.compile(r"^https://schema\.management\.azure\.com/schemas/[^/]+/deploymentTemplate\.json#?$")
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
PID_NAME = re.compile(rf"^pid-{GUID}-partnercenter$")
PID_GUID = re.compile(rf"^pid-(?P<guid>{GUID})-partnercenter$")
# The tracking GUID main.bicep carries until the publisher puts in the one Partner Center shows.
PLACEHOLDER_TRACKING_ID = "00000000-0000-0000-0000-000000000000"
ZIP_NAME = "gatekeeper-marketplace.zip"
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PackageError(InvalidInput):
    """The inputs cannot be read at all (missing file, not JSON): nothing to check."""

    default_code = "unreadable-package-input"
    default_title = "The package inputs cannot be read"

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class PackageInputs:
    template: Path
    ui_definition: Path
    bicep: Path | None = None
    artifacts: Path | None = None
    api_exceptions: Mapping[str, str] | None = None
    schema_dir: Path | None = None
    # A release (the tag workflow): the attribution GUID must be real and the template's default package URL
    # must be this release's asset, so the offer installs the code it was released with.
    release_package_url: str | None = None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise PackageError(f"{path}: {what} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{path}: {what} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise PackageError(f"{path}: {what} must be a JSON object")
    return data


def _partner_center_findings(where: str, main: Template, all_templates: list[Template]) -> list[Finding]:
    rule = "Customer-Usage-Attribution"

    def is_pid(name: Any) -> bool:
        return isinstance(name, str) and name.lower().startswith("pid-")

    in_main = [r for r in main.resources if r.type.lower() == "microsoft.resources/deployments" and is_pid(r.name)]
    found = []
    if len(in_main) != 1:
        found.append(
            Finding(
                rule,
                where,
                f"the main template must contain exactly one 'pid-<GUID>-partnercenter' "
                f"deployment, found {len(in_main)}",
            )
        )
    for resource in in_main:
        if not PID_NAME.match(str(resource.name)):
            found.append(Finding(rule, where, f"{resource.name!r} is not of the form pid-<GUID>-partnercenter"))
    for nested in all_templates[1:]:
        if any(is_pid(r.name) for r in nested.resources):
            found.append(Finding(rule, nested.path, "the attribution deployment belongs in the main template only"))
    return found


def _release_findings(where: str, main: Template, package_url: str) -> list[Finding]:
    found = []
    for resource in main.resources:
        match = PID_GUID.match(str(resource.name))
        if match and match.group("guid").lower() == PLACEHOLDER_TRACKING_ID:
            found.append(
                Finding(
                    "Customer-Usage-Attribution",
                    where,
                    "the Partner Center tracking GUID is still the placeholder; put the plan's GUID into "
                    "partnerCenterTrackingId in infra/main.bicep before releasing",
                )
            )
    parameter = main.parameters.get("packageUri")
    if parameter is None or parameter.default != package_url:
        found.append(
            Finding(
                "Package-Is-This-Release",
                where,
                f"the packageUri parameter's default must be this release's app package {package_url!r}, "
                f"not {parameter.default if parameter else None!r}",
            )
        )
    return found


def check_inputs(inputs: PackageInputs, today: date) -> tuple[dict[str, Any], dict[str, Any], list[Finding]]:
    """Read and check the compiled template and createUiDefinition; findings empty means releasable."""
    template = _read_json(inputs.template, "compiled template (mainTemplate.json; run `bicep build` first)")
    cuid = _read_json(inputs.ui_definition, "createUiDefinition.json")
    where = inputs.template.name
    found: list[Finding] = []
    if not DEPLOYMENT_SCHEMA.match(str(template.get("$schema", ""))):
        found.append(
            Finding(
                "DeploymentTemplate-Schema-Is-Correct",
                where,
                "$schema is not a deploymentTemplate.json schema: is this a compiled ARM template?",
            )
        )
    templates = from_arm(where, template)
    main = templates[0]
    if inputs.bicep is not None:
        if not inputs.bicep.is_file():
            raise PackageError(f"{inputs.bicep}: Bicep source not found")
        declared = read_parameters(inputs.bicep.read_text(encoding="utf-8"))
        if set(declared) != set(main.parameters):
            missing = sorted(set(declared) - set(main.parameters))
            extra = sorted(set(main.parameters) - set(declared))
            found.append(
                Finding(
                    "Template-Matches-Bicep",
                    where,
                    f"parameters differ from {inputs.bicep.name} (missing: {missing or 'none'}, "
                    f"unexpected: {extra or 'none'}); rebuild mainTemplate.json from the Bicep",
                )
            )
    found += check_cuid(cuid, main.parameters, inputs.ui_definition.name)
    if inputs.schema_dir is not None:
        found += validate_schema(cuid, inputs.schema_dir, inputs.ui_definition.name)
    found += check_templates(templates, today, inputs.api_exceptions or {})
    found += _partner_center_findings(where, main, templates)
    if inputs.release_package_url is not None:
        found += _release_findings(where, main, inputs.release_package_url)
    return template, cuid, found


def _write(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def build_package(inputs: PackageInputs, out_dir: Path, today: date) -> tuple[Path | None, list[Finding]]:
    """Write the offer zip into `out_dir` when every check passes; otherwise write nothing."""
    template, cuid, found = check_inputs(inputs, today)
    if found:
        return None, found
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ZIP_NAME
    entries: list[tuple[str, bytes]] = [
        ("mainTemplate.json", json.dumps(template, indent=2).encode() + b"\n"),
        ("createUiDefinition.json", json.dumps(cuid, indent=2).encode() + b"\n"),
    ]
    if inputs.artifacts is not None:
        if not inputs.artifacts.is_dir():
            raise PackageError(f"{inputs.artifacts}: artifacts folder not found")
        for path in sorted(p for p in inputs.artifacts.rglob("*") if p.is_file()):
            relative = path.relative_to(inputs.artifacts).as_posix()
            if relative in ("mainTemplate.json", "createUiDefinition.json"):
                raise PackageError(f"{path}: an artifact must not replace {relative}")
            entries.append((relative, path.read_bytes()))
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in entries:
            _write(archive, name, data)
    return target, []
