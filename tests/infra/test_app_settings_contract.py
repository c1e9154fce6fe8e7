"""The app-settings contract: what the code reads (gatekeeper/settings.py) and what the Bicep sets agree.

Compares the live lists, so a setting added to settings.py without a Bicep value (or an 'admin' entry with
its reason in infra/checks/app-settings.json and docs/deploy.md) fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper import settings
from tests.infra.conftest import INFRA, ROOT, load_json

CONTRACT = load_json(INFRA / "checks" / "app-settings.json")
DECLARED = {s.name: s for s in settings.SETTINGS}


def _bicep_settings(parsed: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    module = parsed["modules/functionapp.bicep"]
    writer = parsed["modules/appsettings.bicep"]
    configs = [
        r
        for r in writer["resources"].values()
        if r["type"] == "Microsoft.Web/sites/config" and r["config"].get("name") == "appsettings"
    ]
    assert len(configs) == 1, "appsettings.bicep must write app settings in exactly one 'appsettings' resource"
    uses = [m for m in (module.get("modules") or {}).values() if m["detail"]["path"] == "appsettings.bicep"]
    assert len(uses) == 1 and uses[0]["config"]["params"]["settings"] == "appSettings", (
        "functionapp.bicep must pass its appSettings variable to appsettings.bicep"
    )
    identifiers = set(module.get("parameters") or {}) | set(module.get("variables") or {})
    return module["variables"]["appSettings"]["value"], identifiers


@pytest.fixture(scope="module")
def bicep_settings(parsed_infra):
    return _bicep_settings(parsed_infra)


def test_every_setting_the_code_reads_is_deployed_or_the_admins(bicep_settings):
    values, _ = bicep_settings
    missing = sorted(set(DECLARED) - set(values) - set(CONTRACT["admin"]))
    assert missing == [], (
        f"settings.py declares {missing}, which infra/modules/functionapp.bicep does not set; "
        "set them there, or list them under 'admin' in infra/checks/app-settings.json "
        "with a reason and document them in docs/deploy.md"
    )


def test_every_setting_the_bicep_sets_is_declared_or_a_platform_setting(bicep_settings):
    values, _ = bicep_settings
    unknown = sorted(set(values) - set(DECLARED) - set(CONTRACT["platform"]))
    assert unknown == [], f"the Bicep sets {unknown}, which gatekeeper/settings.py does not declare"


def test_contract_lists_are_consistent(bicep_settings):
    values, _ = bicep_settings
    admin, platform = set(CONTRACT["admin"]), set(CONTRACT["platform"])
    assert admin <= set(DECLARED), f"stale admin entries: {sorted(admin - set(DECLARED))}"
    assert not admin & set(values), f"set by the Bicep, so not the admin's: {sorted(admin & set(values))}"
    assert not platform & set(DECLARED), "a platform setting that the code declares belongs to the contract"
    assert platform <= set(values), f"stale platform entries: {sorted(platform - set(values))}"
    for section in ("admin", "platform", "overrides"):
        assert all(len(reason.strip()) >= 20 for reason in CONTRACT.get(section, {}).values()), section


def test_literal_values_match_the_declared_defaults(bicep_settings):
    values, identifiers = bicep_settings
    mismatched = []
    for name, value in values.items():
        setting = DECLARED.get(name)
        if setting is None or setting.default is None or not isinstance(value, str):
            continue
        if value in identifiers or "${" in value:
            continue  # an expression, not a literal
        if value != setting.default and name not in CONTRACT["overrides"]:
            mismatched.append(f"{name}: Bicep {value!r}, settings.py default {setting.default!r}")
    assert mismatched == [], "\n".join(mismatched)
    stale = sorted(set(CONTRACT["overrides"]) - set(values))
    assert stale == [], f"stale overrides: {stale}"


def test_no_secret_setting_is_written_into_the_bicep(bicep_settings):
    values, _ = bicep_settings
    secrets = sorted(name for name, s in DECLARED.items() if s.secret and name in values)
    assert secrets == [], f"secret settings must not be deployment values: {secrets}"


def test_admin_settings_are_documented():
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    undocumented = sorted(name for name in CONTRACT["admin"] if name not in guide)
    assert undocumented == [], f"docs/deploy.md does not mention {undocumented}"
