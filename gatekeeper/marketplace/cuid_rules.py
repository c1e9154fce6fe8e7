"""Checks for createUiDefinition.json: Azure's published schema and ARM-TTK's createUiDefinition rules.

Re-implemented from ARM-TTK (it needs PowerShell): Handler-Must-Be-Correct,
CreateUIDefinition-Should-Have-Schema, Outputs-Must-Be-Present-In-Template-Parameters,
Parameters-Without-Default-Must-Exist-In-CreateUIDefinition, Controls-In-Outputs-Must-Exist,
Tooltips-Should-Be-Present, Validations-Must-Have-Message, Textboxes-Are-Well-Formed and
Location-Should-Be-In-Outputs. One rule of our own is stricter: the outputs are exactly the template's
parameters, so the UI asks for every decision the template can take.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from gatekeeper.marketplace.findings import Finding
from gatekeeper.marketplace.template_model import Parameter

SCHEMA_URL = "https://schema.management.azure.com/schemas/0.1.2-preview/CreateUIDefinition.MultiVm.json#"
SCHEMA_VERSION = "0.1.2-preview"
HANDLERS = ("Microsoft.Azure.CreateUIDef", "Microsoft.Compute.MultiVm")
SCHEMA_FILES = (
    "CreateUIDefinition.MultiVm.json",
    "CreateUIDefinition.CommonControl.json",
    "CreateUIDefinition.ProviderControl.json",
)
# Controls that have no toolTip property (ARM-TTK's list).
NO_TOOLTIP_CONTROLS = frozenset(
    {
        "Microsoft.Common.InfoBox",
        "Microsoft.Common.Section",
        "Microsoft.Common.TextBlock",
        "Microsoft.Solutions.ArmApiControl",
        "Microsoft.Solutions.GraphApiControl",
        "Microsoft.Common.EditableGrid",
        "Microsoft.Solutions.JitConfigurator",
    }
)
# Outputs only managed applications produce; ARM-TTK skips them.
MANAGED_APP_OUTPUTS = frozenset(
    {"applicationresourcename", "jitaccesspolicy", "managedidentity", "managedresourcegroupid"}
)
CONTROL_REFERENCE = re.compile(
    r"\[\s*(?:basics\(\s*'(?P<control>[^']+)'\s*\)|steps\(\s*'(?P<step>[^']+)'\s*\)(?:\.(?P<element>\w+))?)",
    re.IGNORECASE,
)

# The published 0.1.2-preview schema predates controls and properties the portal accepts today. Each
# relaxation applied before validation is listed here with its reason (docs/deploy.md repeats them).
SCHEMA_RELAXATIONS: dict[str, str] = {
    "permission-validation": (
        "config.basics.subscription/resourceGroup constraints.validations may be {permission, message}: the "
        "portal checks the signed-in account holds that action before the deployment starts (documented in "
        "'CreateUiDefinition.json for Azure managed application's create experience', Config). The published "
        "schema only knows {isValid, message}. Such entries are checked here (exactly those two keys, an "
        "action name, a message) and removed before the schema runs; anything else stays for the schema."
    ),
}
PERMISSION_ACTION = re.compile(r"^[A-Za-z]+\.[A-Za-z]+(?:/[A-Za-z*]+)+$")


def _permission_validations(cuid: Mapping[str, Any]) -> Iterator[tuple[str, list[Any], int]]:
    """(scope, list, index) of each well-formed permission validation in config.basics."""
    basics = ((cuid.get("parameters") or {}).get("config") or {}).get("basics") or {}
    for scope in ("subscription", "resourceGroup"):
        validations = ((basics.get(scope) or {}).get("constraints") or {}).get("validations")
        if not isinstance(validations, list):
            continue
        for index, item in enumerate(validations):
            if (
                isinstance(item, Mapping)
                and set(item) == {"permission", "message"}
                and isinstance(item["permission"], str)
                and PERMISSION_ACTION.match(item["permission"])
                and isinstance(item["message"], str)
                and item["message"].strip()
            ):
                yield scope, validations, index


def relaxed_for_schema(cuid: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `cuid` without what SCHEMA_RELAXATIONS lets through (well-formed permission checks)."""
    copy: dict[str, Any] = json.loads(json.dumps(cuid))
    for _, validations, index in sorted(_permission_validations(copy), key=lambda found: -found[2]):
        del validations[index]
    return copy


def permission_checks(cuid: Mapping[str, Any]) -> dict[str, list[str]]:
    """scope -> the actions the portal checks before deploying (the well-formed permission validations)."""
    found: dict[str, list[str]] = {}
    for scope, validations, index in _permission_validations(cuid):
        found.setdefault(scope, []).append(validations[index]["permission"])
    return found


def load_schema_registry(schema_dir: Path) -> tuple[dict[str, Any], Registry]:
    """The MultiVm schema and a registry of all three files under their published ids.

    The files declare `"$schema": "http://json-schema.org/schema#"` (meaning "latest") but identify
    themselves with draft-04's `id` keyword and use relative `$ref`s between files, so they are read as
    draft-04: that is the only reading in which their references resolve.
    """
    registry: Registry = Registry()
    root: dict[str, Any] = {}
    for name in SCHEMA_FILES:
        contents = json.loads((schema_dir / name).read_text(encoding="utf-8"))
        uri = str(contents.get("id", "")).rstrip("#")
        registry = registry.with_resource(uri, Resource.from_contents(contents, default_specification=DRAFT4))
        if name == SCHEMA_FILES[0]:
            root = contents
    return root, registry


def validate_schema(cuid: Mapping[str, Any], schema_dir: Path, where: str = "createUiDefinition.json") -> list[Finding]:
    schema, registry = load_schema_registry(schema_dir)
    validator = Draft4Validator(schema, registry=registry)
    found = []
    relaxed = relaxed_for_schema(cuid)
    for error in sorted(validator.iter_errors(relaxed), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        found.append(Finding("Schema", f"{where}:{path}", error.message[:300]))
    return found


def _controls(elements: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(elements, list):
        for element in elements:
            if isinstance(element, Mapping):
                yield element
                yield from _controls(element.get("elements"))


def _all_controls(cuid: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    params = cuid.get("parameters") or {}
    yield from _controls(params.get("basics"))
    for step in params.get("steps") or []:
        if isinstance(step, Mapping):
            yield from _controls(step.get("elements"))


def _find_key(value: Any, key: str, parent: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        name = str(value.get("name", parent))
        for k, v in value.items():
            if k == key:
                yield name, v
            yield from _find_key(v, key, name)
    elif isinstance(value, list):
        for item in value:
            yield from _find_key(item, key, parent)


def check_cuid(
    cuid: Mapping[str, Any], parameters: Mapping[str, Parameter], where: str = "createUiDefinition.json"
) -> list[Finding]:
    """ARM-TTK's createUiDefinition rules against the main template's parameters."""
    found: list[Finding] = []

    def add(rule: str, message: str, at: str = "") -> None:
        found.append(Finding(rule, f"{where}{':' + at if at else ''}", message))

    if cuid.get("handler") not in HANDLERS:
        add("Handler-Must-Be-Correct", f"handler must be one of {', '.join(HANDLERS)}")
    if cuid.get("$schema") != SCHEMA_URL:
        add("CreateUIDefinition-Should-Have-Schema", f"$schema must be {SCHEMA_URL}")
    if cuid.get("version") != SCHEMA_VERSION:
        add("CreateUIDefinition-Should-Have-Schema", f"version must be {SCHEMA_VERSION}, as in the schema URL")

    params = cuid.get("parameters") or {}
    outputs = params.get("outputs")
    if not isinstance(outputs, Mapping) or not outputs:
        add("Outputs-Must-Be-Present-In-Template-Parameters", "parameters.outputs is missing")
        outputs = {}
    for name in outputs:
        if name.lower() in MANAGED_APP_OUTPUTS:
            continue
        if name not in parameters:
            add(
                "Outputs-Must-Be-Present-In-Template-Parameters",
                f"output {name!r} is not a parameter of the template",
                f"outputs/{name}",
            )
    for name, parameter in parameters.items():
        if name in outputs:
            continue
        if not parameter.has_default:
            add(
                "Parameters-Without-Default-Must-Exist-In-CreateUIDefinition",
                f"template parameter {name!r} has no default value and is not in the outputs",
                "outputs",
            )
        else:
            add(
                "Outputs-Must-Match-Template-Parameters",
                f"template parameter {name!r} is not asked for (every parameter must be an output)",
                "outputs",
            )

    location = outputs.get("location")
    if location is None:
        add("Location-Should-Be-In-Outputs", "outputs.location is missing", "outputs")
    elif str(location).strip() != "[location()]":
        add("Location-Should-Be-In-Outputs", "outputs.location must be [location()]", "outputs/location")

    basics = {c.get("name") for c in _controls(params.get("basics"))}
    steps = {}
    for step in params.get("steps") or []:
        if isinstance(step, Mapping):
            steps[step.get("name")] = {c.get("name") for c in _controls(step.get("elements"))}
    for name, expression in outputs.items():
        texts = (
            [expression]
            if isinstance(expression, str)
            else [v for v in (expression.values() if isinstance(expression, Mapping) else []) if isinstance(v, str)]
        )
        for text in texts:
            for match in CONTROL_REFERENCE.finditer(text):
                control, step, element = match.group("control"), match.group("step"), match.group("element")
                if control and control not in basics:
                    add(
                        "Controls-In-Outputs-Must-Exist",
                        f"basics control {control!r} does not exist",
                        f"outputs/{name}",
                    )
                if step and step not in steps:
                    add("Controls-In-Outputs-Must-Exist", f"step {step!r} does not exist", f"outputs/{name}")
                elif step and element and element not in steps[step]:
                    add(
                        "Controls-In-Outputs-Must-Exist", f"step {step!r} has no control {element!r}", f"outputs/{name}"
                    )

    for control in _all_controls(cuid):
        ctype = str(control.get("type", ""))
        name = str(control.get("name", "?"))
        tooltip = str(control.get("toolTip", control.get("tooltip", ""))).strip()
        if ctype.startswith("Microsoft.") and ctype not in NO_TOOLTIP_CONTROLS and not tooltip:
            add("Tooltips-Should-Be-Present", f"control {name!r} ({ctype}) has no toolTip", name)
        if ctype == "Microsoft.Common.TextBox":
            found += _textbox_findings(control, where)

    for owner, validations in _find_key(cuid, "validations"):
        for item in validations if isinstance(validations, list) else []:
            if not isinstance(item, Mapping) or not str(item.get("message", "")).strip():
                add("Validations-Must-Have-Message", f"a validation of {owner!r} has no message", owner)
    return found


def _textbox_findings(control: Mapping[str, Any], where: str) -> list[Finding]:
    rule = "Textboxes-Are-Well-Formed"
    name = str(control.get("name", "?"))
    at = f"{where}:{name}"
    constraints = control.get("constraints")
    if not isinstance(constraints, Mapping) or not constraints:
        return [Finding(rule, at, f"textbox {name!r} has no constraints")]
    found = []
    regex = None
    if constraints.get("validations"):
        regex = next(
            (v.get("regex") for v in constraints["validations"] if isinstance(v, Mapping) and v.get("regex")), None
        )
    elif constraints.get("regex"):
        regex = constraints["regex"]
        if not constraints.get("validationMessage"):
            found.append(Finding(rule, at, f"textbox {name!r} has a regex but no validationMessage"))
    if not regex:
        found.append(Finding(rule, at, f"textbox {name!r} has no regex constraint"))
    else:
        try:
            re.compile(regex)
        except re.error as exc:
            found.append(Finding(rule, at, f"textbox {name!r} regex is invalid: {exc}"))
    return found
