"""The Bicep parses, and ARM-TTK's template rules hold on it; deliberately broken copies are caught."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from gatekeeper.marketplace.bicep_params import read_parameters
from gatekeeper.marketplace.template_model import from_pycep
from gatekeeper.marketplace.template_rules import (
    api_versions_recent,
    check_templates,
    location_not_hardcoded,
    outputs_without_secrets,
    secure_parameters_without_defaults,
    used_api_versions,
)
from tests.infra.conftest import INFRA, copy_infra, load_json, needs_infra_venv, parse_bicep_dir, templates_of

EXCEPTIONS = load_json(INFRA / "checks" / "api-version-exceptions.json")["exceptions"]


@needs_infra_venv
def test_every_bicep_file_parses(parsed_infra):
    expected = {p.relative_to(INFRA).as_posix() for p in INFRA.rglob("*.bicep")}
    assert set(parsed_infra) == expected
    assert {
        "main.bicep",
        "modules/functionapp.bicep",
        "modules/storage.bicep",
        "modules/keyvault.bicep",
        "modules/monitoring.bicep",
        "modules/identity.bicep",
    } <= expected
    for path, data in parsed_infra.items():
        assert data.get("resources") or data.get("modules"), f"{path} declares nothing"


@needs_infra_venv
def test_template_rules_pass_on_the_real_bicep(infra_templates):
    findings = check_templates(infra_templates, date.today(), EXCEPTIONS)
    assert findings == [], "\n".join(map(str, findings))


@needs_infra_venv
def test_every_api_version_exception_is_used_and_has_a_reason(infra_templates):
    used = used_api_versions(infra_templates)
    stale = sorted(set(EXCEPTIONS) - used)
    assert stale == [], f"remove exceptions no resource uses: {stale}"
    assert all(reason.strip() for reason in EXCEPTIONS.values())


@needs_infra_venv
def test_light_parameter_reader_agrees_with_pycep(parsed_infra):
    """The packager reads main.bicep's parameters without pycep; it must see what pycep sees."""
    light = read_parameters((INFRA / "main.bicep").read_text())
    full = from_pycep("main.bicep", parsed_infra["main.bicep"], is_main=True).parameters
    assert set(light) == set(full)
    for name, parameter in full.items():
        assert light[name].has_default == parameter.has_default, name
        assert light[name].secure == parameter.secure, name


@needs_infra_venv
def test_broken_copy_is_caught_by_each_rule(tmp_path):
    broken = copy_infra(
        tmp_path,
        {
            # a module with a hard-coded region
            "modules/identity.bicep": ("  location: location\n", "  location: 'westeurope'\n"),
            # an output that leaks the storage account key
            "modules/storage.bicep": (
                "output id string = storage.id\n",
                "output id string = storage.id\noutput accountKey string = storage.listKeys().keys[0].value\n",
            ),
            # a secure parameter with a default, and a preview API version
            "main.bicep": (
                "param namePrefix string\n",
                "param namePrefix string\n\n@secure()\nparam adminPassword string = 'hunter2'\n"
                "output leaked string = adminPassword\n",
            ),
            "modules/monitoring.bicep": (
                "Microsoft.OperationalInsights/workspaces@2025-07-01",
                "Microsoft.OperationalInsights/workspaces@2025-12-01-preview",
            ),
        },
    )
    findings = check_templates(templates_of(parse_bicep_dir(broken)), date.today(), EXCEPTIONS)
    by_rule = {(f.rule, f.where) for f in findings}
    assert ("Location-Should-Not-Be-Hardcoded", "modules/identity.bicep:identity") in by_rule
    assert ("Outputs-Must-Not-Contain-Secrets", "modules/storage.bicep:output accountKey") in by_rule
    assert ("Outputs-Must-Not-Contain-Secrets", "main.bicep:output leaked") in by_rule
    assert ("Secure-String-Parameters-Cannot-Have-Default", "main.bicep:adminPassword") in by_rule
    assert ("apiVersions-Should-Be-Recent", "modules/monitoring.bicep:workspace") in by_rule
    assert len(findings) == 5, "\n".join(map(str, findings))


@needs_infra_venv
def test_hard_coded_module_location_in_main_is_caught(tmp_path):
    broken = copy_infra(
        tmp_path,
        {
            "main.bicep": (
                "    location: deployLocation\n    name: '${namePrefix}-id-${token}'",
                "    location: 'eastus'\n    name: '${namePrefix}-id-${token}'",
            )
        },
    )
    main = templates_of(parse_bicep_dir(broken))[0]
    assert [f.where for f in location_not_hardcoded(main)] == ["main.bicep:identity"]


# ----------------------------------------------------------------------- rule units (no .venv-infra needed)


def _pycep(parameters=None, resources=None, outputs=None, modules=None):
    return {
        "parameters": parameters or {},
        "variables": {},
        "resources": resources or {},
        "outputs": outputs or {},
        "modules": modules or {},
    }


def _resource(rtype="Microsoft.Storage/storageAccounts", api="2025-06-01", location="location"):
    return {"type": rtype, "api_version": api, "config": {"name": "x", "location": location}}


LOCATION_PARAM = {"location": {"decorators": [], "type": "string", "default": None}}


def test_module_location_parameter_must_not_have_a_default():
    params = {"location": {"decorators": [], "type": "string", "default": "westeurope"}}
    template = from_pycep("m.bicep", _pycep(params, {"r": _resource()}), is_main=False)
    assert [f.message for f in location_not_hardcoded(template)] == [
        "the location parameter of a module must not have a default value"
    ]


def test_main_location_default_must_be_the_resource_group_location():
    good = {
        "location": {
            "decorators": [],
            "type": "string",
            "default": {"function": {"type": "resource_group", "parameters": {}, "property_name": "location"}},
        }
    }
    bad = {"location": {"decorators": [], "type": "string", "default": "westeurope"}}
    assert location_not_hardcoded(from_pycep("main.bicep", _pycep(good), is_main=True)) == []
    assert len(location_not_hardcoded(from_pycep("main.bicep", _pycep(bad), is_main=True))) == 1


def test_global_and_parameter_locations_are_not_hard_coded():
    resources = {"a": _resource(location="global"), "b": _resource(location="location")}
    assert location_not_hardcoded(from_pycep("m.bicep", _pycep(LOCATION_PARAM, resources), is_main=False)) == []


def test_list_function_in_an_interpolated_output_is_a_secret():
    outputs = {
        "conn": {"decorators": [], "type": "string", "value": "AccountKey=${sa.listKeys().keys[0].value}"},
        "fine": {"decorators": [], "type": "string", "value": "sa"},
    }
    findings = outputs_without_secrets(from_pycep("m.bicep", _pycep(outputs=outputs), is_main=False))
    assert [f.where for f in findings] == ["m.bicep:output conn"]


def test_secure_parameter_without_default_is_fine():
    params = {"pw": {"decorators": [{"type": "secure"}], "type": "string", "default": None}}
    assert secure_parameters_without_defaults(from_pycep("m.bicep", _pycep(params), is_main=False)) == []


@pytest.mark.parametrize(
    ("api", "today", "expected"),
    [
        ("2025-06-01", date(2026, 11, 21), 0),
        ("2024-11-21", date(2026, 11, 21), 1),  # exactly 730 days: too old
        ("2024-11-22", date(2026, 11, 21), 0),  # 729 days
        ("2026-01-01-preview", date(2026, 11, 21), 1),
        ("latest", date(2026, 11, 21), 1),
    ],
)
def test_api_version_age_and_preview(api, today, expected):
    template = from_pycep("m.bicep", _pycep(LOCATION_PARAM, {"r": _resource(api=api)}), is_main=False)
    assert len(api_versions_recent(template, today, {})) == expected


def test_api_version_exception_applies_to_exactly_that_type_and_version():
    template = from_pycep("m.bicep", _pycep(LOCATION_PARAM, {"r": _resource(api="2020-02-02")}), is_main=False)
    assert (
        api_versions_recent(template, date(2026, 11, 21), {"Microsoft.Storage/storageAccounts@2020-02-02": "reviewed"})
        == []
    )
    assert (
        len(
            api_versions_recent(
                template, date(2026, 11, 21), {"Microsoft.Storage/storageAccounts@2020-02-03": "reviewed"}
            )
        )
        == 1
    )


def test_exceptions_file_only_lists_versions_that_need_one():
    """An exception for a version that passes anyway hides nothing. Versions that age out within 60 days
    may be listed ahead of time, so CI does not break on the day they turn 730 days old."""
    horizon = date.today() + timedelta(days=60)
    for key in EXCEPTIONS:
        rtype, api = key.rsplit("@", 1)
        resource = _resource(rtype=rtype, api=api)
        template = from_pycep("m.bicep", _pycep(LOCATION_PARAM, {"r": resource}), is_main=False)
        assert api_versions_recent(template, horizon, {}), f"{key} does not need an exception"


def test_main_bicep_has_the_attribution_deployment_and_modules_do_not():
    main = (INFRA / "main.bicep").read_text()
    assert main.count("-partnercenter'") == 1
    for module in Path(INFRA / "modules").glob("*.bicep"):
        assert "partnercenter" not in module.read_text(), module.name


@needs_infra_venv
def test_module_calls_match_the_modules_parameters(parsed_infra):
    """What `bicep build` would reject: a module given a parameter it lacks, or missing a required one."""
    problems = []
    for caller, data in parsed_infra.items():
        for symbol, module in (data.get("modules") or {}).items():
            target = (Path(caller).parent / module["detail"]["path"]).as_posix()
            declared = parsed_infra[target]["parameters"]
            passed = set(module["config"].get("params") or {})
            required = {name for name, spec in declared.items() if spec.get("default") is None}
            if passed - set(declared):
                problems.append(f"{caller}:{symbol} passes unknown {sorted(passed - set(declared))}")
            if required - passed:
                problems.append(f"{caller}:{symbol} misses required {sorted(required - passed)}")
    assert problems == []


@needs_infra_venv
def test_outputs_used_from_modules_exist(parsed_infra):
    import re

    problems = []
    for caller, data in parsed_infra.items():
        text = (INFRA / caller).read_text()
        for symbol, module in (data.get("modules") or {}).items():
            target = (Path(caller).parent / module["detail"]["path"]).as_posix()
            outputs = set(parsed_infra[target].get("outputs") or {})
            for used in set(re.findall(rf"\b{symbol}\.outputs\.(\w+)", text)):
                if used not in outputs:
                    problems.append(f"{caller}: {symbol}.outputs.{used} is not an output of {target}")
    assert problems == []
