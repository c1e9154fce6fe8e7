"""A small, source-neutral view of a deployment template: parameters, resources, outputs.

Built from parsed Bicep (the JSON pycep produces) or from an ARM template (what `bicep build` produces), so
the ARM-TTK-style rules in `template_rules` run on both. Only what the rules need is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    secure: bool
    has_default: bool
    default: Any = None


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str
    api_version: str
    location: Any = None
    has_location: bool = False
    name: Any = None


@dataclass(frozen=True)
class Template:
    """One template file: the main template or a module (Bicep) / nested inner template (ARM)."""

    path: str
    is_main: bool
    kind: str  # "bicep" or "arm"
    parameters: dict[str, Parameter]
    resources: list[Resource]
    outputs: dict[str, Any]
    variables: frozenset[str] = frozenset()
    # (module or nested deployment name, value passed as its 'location' parameter)
    passed_locations: list[tuple[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- Bicep (pycep)


def pycep_body(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """A resource's or module's properties as written: pycep wraps those of a conditional (`= if (...)`) or
    looped (`= [for ...]`) declaration in {'condition', 'loop_type', 'config'}."""
    if ("condition" in config or "loop_type" in config) and isinstance(config.get("config"), Mapping):
        return config["config"]
    return config


def from_pycep(path: str, data: Mapping[str, Any], *, is_main: bool) -> Template:
    """The model of one Bicep file from pycep's JSON (`BicepParser().parse(...)`)."""
    parameters = {}
    for name, spec in (data.get("parameters") or {}).items():
        decorators = spec.get("decorators") or []
        secure = any(d.get("type") == "secure" for d in decorators if isinstance(d, dict))
        default = spec.get("default")
        parameters[name] = Parameter(name, str(spec.get("type")), secure, default is not None, default)
    resources = []
    for symbol, spec in (data.get("resources") or {}).items():
        config = pycep_body(spec.get("config") or {})
        resources.append(
            Resource(
                symbol,
                str(spec.get("type")),
                str(spec.get("api_version")),
                config.get("location"),
                "location" in config,
                config.get("name"),
            )
        )
    passed = []
    for name, spec in (data.get("modules") or {}).items():
        params = pycep_body(spec.get("config") or {}).get("params") or {}
        if "location" in params:
            passed.append((name, params["location"]))
    outputs = {name: spec.get("value") for name, spec in (data.get("outputs") or {}).items()}
    return Template(
        path, is_main, "bicep", parameters, resources, outputs, frozenset((data.get("variables") or {}).keys()), passed
    )


# ----------------------------------------------------------------------------------------------------- ARM


def _resource_items(resources: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Resources as (symbol, body): a list (classic) or a symbolic-name object (languageVersion 2.0)."""
    if isinstance(resources, Mapping):
        yield from ((str(k), v) for k, v in resources.items() if isinstance(v, Mapping))
    elif isinstance(resources, list):
        for index, body in enumerate(resources):
            if isinstance(body, Mapping):
                yield str(body.get("name", f"resources[{index}]")), body


def from_arm(path: str, data: Mapping[str, Any]) -> list[Template]:
    """The main template and every inner nested template of an ARM template (modules compile to these)."""
    templates: list[Template] = []
    _collect_arm(path, data, True, templates)
    return templates


def _collect_arm(where: str, data: Mapping[str, Any], is_main: bool, out: list[Template]) -> None:
    parameters = {}
    for name, spec in (data.get("parameters") or {}).items():
        kind = str(spec.get("type", "")).lower()
        parameters[name] = Parameter(
            name, kind, kind in ("securestring", "secureobject"), "defaultValue" in spec, spec.get("defaultValue")
        )
    resources: list[Resource] = []
    passed: list[tuple[str, Any]] = []
    nested: list[tuple[str, Mapping[str, Any]]] = []

    def walk(items: Any, prefix: str) -> None:
        for symbol, body in _resource_items(items):
            rtype = str(body.get("type", ""))
            # A child declared inside its parent may use the short type ('blobServices').
            full_type = f"{prefix}/{rtype}" if prefix and "/" not in rtype else rtype
            resources.append(
                Resource(
                    symbol,
                    full_type,
                    str(body.get("apiVersion", "")),
                    body.get("location"),
                    "location" in body,
                    body.get("name"),
                )
            )
            props = body.get("properties") or {}
            if full_type.lower() == "microsoft.resources/deployments" and isinstance(props, Mapping):
                params = props.get("parameters") or {}
                if isinstance(params, Mapping) and "location" in params:
                    value = params["location"]
                    passed.append((symbol, value.get("value") if isinstance(value, Mapping) else value))
                inner = props.get("template")
                if isinstance(inner, Mapping) and (inner.get("resources") or inner.get("parameters")):
                    nested.append((symbol, inner))
            if "resources" in body:
                walk(body["resources"], full_type)

    walk(data.get("resources"), "")
    outputs = {
        name: spec.get("value") if isinstance(spec, Mapping) else spec
        for name, spec in (data.get("outputs") or {}).items()
    }
    out.append(
        Template(
            where,
            is_main,
            "arm",
            parameters,
            resources,
            outputs,
            frozenset((data.get("variables") or {}).keys()),
            passed,
        )
    )
    for symbol, inner in nested:
        _collect_arm(f"{where}#{symbol}", inner, False, out)
