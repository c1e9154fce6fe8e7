"""ARM-TTK's deployment-template rules that matter here, re-checked on the template model.

Re-implemented (ARM-TTK needs PowerShell): Location-Should-Not-Be-Hardcoded,
Secure-String-Parameters-Cannot-Have-Default, Outputs-Must-Not-Contain-Secrets and
apiVersions-Should-Be-Recent (younger than 730 days and not a preview), the last with a reviewed list of
exceptions for resource types that have no newer GA version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, timedelta
from typing import Any

from gatekeeper.marketplace.findings import Finding
from gatekeeper.marketplace.template_model import Template

MAX_API_AGE_DAYS = 730
API_VERSION = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})(?P<suffix>-[A-Za-z0-9.]+)?$")
LIST_CALL = re.compile(r"(?:^|[\[(,.\s{$])list\w*\s*\(", re.IGNORECASE)
RG_LOCATION = re.compile(r"(?:resourceGroup|deployment)\(\)\.location", re.IGNORECASE)
SECRET_NAME = re.compile(r"password|secret", re.IGNORECASE)
LOCATION_DEFAULTS_ALLOWED = ("resource_group", "deployment")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _calls_list_function(value: Any) -> bool:
    """True when an expression calls a list*() function (listKeys, listSecrets, ...), in either form."""
    if isinstance(value, Mapping):
        name = value.get("func_name")
        if isinstance(name, str) and name.lower().startswith("list"):
            return True
        return any(_calls_list_function(item) for item in value.values())
    if isinstance(value, list):
        return any(_calls_list_function(item) for item in value)
    return isinstance(value, str) and bool(LIST_CALL.search(value))


def _is_rg_location_call(value: Any) -> bool:
    """resourceGroup().location / deployment().location, as pycep JSON or as ARM expression text."""
    if isinstance(value, Mapping):
        function = value.get("function")
        if isinstance(function, Mapping):
            return function.get("type") in LOCATION_DEFAULTS_ALLOWED and function.get("property_name") == "location"
        return False
    return isinstance(value, str) and bool(RG_LOCATION.search(value))


def _location_literal(template: Template, value: Any) -> str | None:
    """The region name when `value` is a hard-coded location, else None."""
    if not isinstance(value, str):
        return None
    if value.lower() == "global":
        return None
    if template.kind == "arm":
        return None if value.strip().startswith("[") else value
    # pycep renders identifiers and string literals alike; an identifier names a parameter or variable.
    if value in template.parameters or value in template.variables:
        return None
    if "${" in value:
        return None
    return value


def location_not_hardcoded(template: Template) -> list[Finding]:
    rule = "Location-Should-Not-Be-Hardcoded"
    found: list[Finding] = []
    location = template.parameters.get("location")
    if location is not None:
        if location.type.lower() != "string":
            found.append(Finding(rule, template.path, "the location parameter must be of type string"))
        if location.has_default:
            if template.is_main:
                ok = _is_rg_location_call(location.default) or (
                    isinstance(location.default, str)
                    and location.default.strip().lower()
                    in ("global", "[resourcegroup().location]", "[deployment().location]")
                )
                if not ok:
                    found.append(
                        Finding(
                            rule,
                            template.path,
                            f"the location parameter's default must be resourceGroup().location, "
                            f"deployment().location or 'global', not {location.default!r}",
                        )
                    )
            elif not _is_rg_location_call(location.default):
                found.append(
                    Finding(rule, template.path, "the location parameter of a module must not have a default value")
                )
    for resource in template.resources:
        if not resource.has_location:
            continue
        literal = _location_literal(template, resource.location)
        if literal is not None:
            found.append(
                Finding(
                    rule,
                    f"{template.path}:{resource.symbol}",
                    f"location is hard-coded as {literal!r}; use the location parameter",
                )
            )
        elif _is_rg_location_call(resource.location):
            found.append(
                Finding(
                    rule,
                    f"{template.path}:{resource.symbol}",
                    "use the location parameter, not resourceGroup().location",
                )
            )
    for module, value in template.passed_locations:
        literal = _location_literal(template, value)
        if literal is not None:
            found.append(
                Finding(
                    rule,
                    f"{template.path}:{module}",
                    f"module location is hard-coded as {literal!r}; pass the location parameter",
                )
            )
        elif _is_rg_location_call(value):
            found.append(
                Finding(rule, f"{template.path}:{module}", "pass the location parameter, not resourceGroup().location")
            )
    return found


def secure_parameters_without_defaults(template: Template) -> list[Finding]:
    rule = "Secure-String-Parameters-Cannot-Have-Default"
    return [
        Finding(rule, f"{template.path}:{p.name}", "a secure parameter must not have a default value")
        for p in template.parameters.values()
        if p.secure and p.has_default and p.default not in ("", {}, None)
    ]


def _mentions_parameter(value: Any, name: str, kind: str) -> bool:
    if kind == "arm":
        pattern = re.compile(r"parameters\s*\(\s*'" + re.escape(name) + r"'\s*\)", re.IGNORECASE)
        return any(pattern.search(text) for text in _strings(value))
    identifier = re.compile(r"(?<![\w.])" + re.escape(name) + r"(?!\w)")
    for text in _strings(value):
        if text == name:
            return True
        for expression in re.findall(r"\$\{([^}]*)\}", text):
            if identifier.search(expression):
                return True
    return False


def outputs_without_secrets(template: Template) -> list[Finding]:
    rule = "Outputs-Must-Not-Contain-Secrets"
    found: list[Finding] = []
    secure = [p.name for p in template.parameters.values() if p.secure]
    for name, value in template.outputs.items():
        where = f"{template.path}:output {name}"
        if _calls_list_function(value):
            found.append(Finding(rule, where, "the output calls a list*() function, which returns secrets (keys)"))
        if SECRET_NAME.search(name):
            found.append(Finding(rule, where, "the output's name suggests a secret"))
        for param in secure:
            if _mentions_parameter(value, param, template.kind):
                found.append(Finding(rule, where, f"the output exposes the secure parameter {param!r}"))
    return found


def api_versions_recent(
    template: Template, today: date, exceptions: Mapping[str, str], max_age_days: int = MAX_API_AGE_DAYS
) -> list[Finding]:
    """Every apiVersion younger than `max_age_days` and not a preview, unless listed in `exceptions`."""
    rule = "apiVersions-Should-Be-Recent"
    oldest = today - timedelta(days=max_age_days)
    found: list[Finding] = []
    for resource in template.resources:
        key = f"{resource.type}@{resource.api_version}"
        where = f"{template.path}:{resource.symbol}"
        match = API_VERSION.match(resource.api_version)
        if match is None:
            found.append(Finding(rule, where, f"{key}: the apiVersion is not a literal date version"))
            continue
        if key in exceptions:
            continue
        if match.group("suffix"):
            found.append(Finding(rule, where, f"{key}: preview API versions are not allowed"))
        if date.fromisoformat(match.group("date")) <= oldest:
            found.append(
                Finding(
                    rule,
                    where,
                    f"{key}: the apiVersion is older than {max_age_days} days (on or before {oldest.isoformat()})",
                )
            )
    return found


def used_api_versions(templates: Iterable[Template]) -> set[str]:
    return {f"{r.type}@{r.api_version}" for t in templates for r in t.resources}


def check_templates(templates: Iterable[Template], today: date, exceptions: Mapping[str, str]) -> list[Finding]:
    """All template rules over a main template and its modules."""
    found: list[Finding] = []
    for template in templates:
        found += location_not_hardcoded(template)
        found += secure_parameters_without_defaults(template)
        found += outputs_without_secrets(template)
        found += api_versions_recent(template, today, exceptions)
    return found
