"""`rmm:` tenant settings (gatekeeper.tenancy.rmm_settings): validated on import, every error naming the field;
secrets only as references; the devices of a deployment's services."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.rmm_settings import RmmSettings

NINJA = {
    "vendor": "ninjaone",
    "api_url": "https://eu.ninjarmm.com/",
    "client_id": "client-1",
    "client_secret": "env:CONTOSO_NINJA",
    "maintenance_mode": True,
    "services": [
        {"name": "web-shop", "environments": ["production", "prod-*"], "devices": ["311", "312"]},
        {"name": "api", "environments": ["production"], "devices": ["312", "400"]},
    ],
}


def errors(document: dict) -> str:
    with pytest.raises(ValidationError) as caught:
        TenantRecord.model_validate({"tenant_id": "contoso", "display_name": "Contoso", "rmm": document})
    return str(caught.value)


def test_a_valid_ninjaone_configuration():
    rmm = RmmSettings.model_validate(NINJA)
    assert rmm.api_url == "https://eu.ninjarmm.com" and rmm.connector == "ninjarmm"
    assert rmm.maintenance_features == ("PATCHING", "AVSCANS", "TASKS")  # not ALERTS: the watch needs them
    assert rmm.devices_for("production") == ("311", "312", "400")
    assert rmm.devices_for("prod-eu") == ("311", "312")
    assert rmm.devices_for("staging") == ()
    assert rmm.secret({"CONTOSO_NINJA": "s3cret"}) == "s3cret" and rmm.secret({}) is None
    record = TenantRecord.model_validate({"tenant_id": "contoso", "display_name": "Contoso", "rmm": NINJA})
    assert record.rmm == rmm
    assert (
        "env:CONTOSO_NINJA" in record.model_dump_json()
        and TenantRecord.model_validate_json(record.model_dump_json()) == record
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"client_secret": "plain-text-secret"}, "client_secret: must look like env:SETTING_NAME"),
        ({"api_url": "http://eu.ninjarmm.com"}, "api_url: must be an https URL"),
        ({"api_url": "https://eu.ninjarmm.com/v2?x=1"}, "api_url: only scheme and host"),
        ({"api_url": "https://user:pw@eu.ninjarmm.com"}, "api_url: only scheme and host"),
        ({"api_url": "https://eu.ninjarmm.com:99999"}, "api_url: not a URL"),
        ({"api_url": "https://eu ninjarmm.com"}, "api_url: the host is not a DNS name"),
        ({"api_url": "https://169.254.169.254"}, "api_url: must not point at a private"),
        ({"api_url": "https://10.0.0.4:8443"}, "api_url: must not point at a private"),
        ({"api_url": "https://0.0.0.0"}, "api_url: must not point at a private"),
        ({"vendor": "kaseya"}, "rmm.vendor"),
        ({"maintenance_features": ["REBOOTS"]}, "rmm.maintenance_features.0"),
        ({"maintenance_margin_minutes": 10_000}, "rmm.maintenance_margin_minutes"),
        ({"surprise": 1}, "rmm.surprise"),
        (
            {"services": [{"name": "a", "environments": ["p"], "devices": ["311", "DROP TABLE"]}]},
            "services[0].devices[1]: 'DROP TABLE' is not a NinjaOne device id",
        ),
        (
            {"services": [{"name": "a", "environments": ["p"], "devices": ["1"]}] * 2},
            "services[1].name: 'a' is named twice",
        ),
        ({"services": [{"name": "a", "environments": [], "devices": ["1"]}]}, "rmm.services.0.environments"),
        ({"services": [{"name": "a", "environments": ["p"], "devices": ["1"] * 201}]}, "rmm.services.0.devices"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(change, named):
    assert named in errors(NINJA | change)


def test_datto_rmm_has_no_maintenance_mode_and_uses_device_uids():
    datto = {
        "vendor": "dattormm",
        "api_url": "https://merlot-api.centrastage.net",
        "client_id": "APIKEY",
        "client_secret": "env:DATTO",
        "services": [{"name": "web", "environments": ["production"], "devices": ["a7d2e9c4-1f3b-4a8e-b6c5"]}],
    }
    assert RmmSettings.model_validate(datto).connector == "dattormm"
    assert "maintenance_mode: Datto RMM's API (v2) has no device maintenance mode" in errors(
        datto | {"maintenance_mode": True}
    )
    bad = datto | {"services": [{"name": "web", "environments": ["p"], "devices": ["a b"]}]}
    assert "services[0].devices[0]: 'a b' is not a Datto RMM device uid" in errors(bad)


def test_the_repr_names_no_secret_reference_or_client():
    text = repr(RmmSettings.model_validate(NINJA))
    assert "client-1" not in text and "CONTOSO_NINJA" not in text


@settings(derandomize=True, max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_any_device_id_is_either_digits_or_refused_naming_its_place(device: str):
    document = NINJA | {"services": [{"name": "s", "environments": ["p"], "devices": ["1", device]}]}
    try:
        parsed = RmmSettings.model_validate(document)
    except ValidationError as exc:
        text = str(exc)
        assert "services[0].devices[1]" in text or "services.0.devices.1" in text
    else:
        assert device.isascii() and device.isdigit() and 1 <= len(device) <= 18
        assert parsed.devices_for("p") == tuple(dict.fromkeys(("1", device)))


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.text(max_size=120))
def test_any_api_url_is_https_origin_or_refused(url: str):
    try:
        parsed = RmmSettings.model_validate(NINJA | {"api_url": url})
    except ValidationError as exc:
        assert "api_url" in str(exc)
    else:
        assert parsed.api_url.startswith(("https://", "http://127.0.0.1", "http://localhost", "http://[::1]"))
        assert "?" not in parsed.api_url and "#" not in parsed.api_url


def test_connectwise_site_is_a_host_and_port():
    base = {"tenant_id": "contoso", "display_name": "Contoso"}
    assert TenantRecord.model_validate(base | {"connectwise_site": "na.myconnectwise.net"}).connectwise_site
    for bad in ("https://na.myconnectwise.net", "na.myconnectwise.net/path", "user@host", "", "a" * 300):
        with pytest.raises(ValidationError, match="connectwise_site"):
            TenantRecord.model_validate(base | {"connectwise_site": bad})


def test_an_rmm_probe_in_the_policy_names_its_devices():
    from gatekeeper.policy.watch import RmmProbeSpec, WatchSpec

    spec = WatchSpec.model_validate(
        {"environments": ["production"], "probes": [{"type": "rmm", "name": "devices", "devices": ["311"]}]}
    )
    assert spec.probes == (RmmProbeSpec(type="rmm", name="devices", devices=("311",)),)
    for bad in ({"devices": []}, {"devices": ["a b"]}, {"devices": ["1"] * 21}, {"devices": ["1"], "url": "x"}):
        with pytest.raises(ValidationError):
            WatchSpec.model_validate(
                {"environments": ["production"], "probes": [{"type": "rmm", "name": "devices"} | bad]}
            )


def test_a_policy_with_an_rmm_probe_passes_the_schema_and_the_model():
    from gatekeeper.errors import InvalidInput
    from gatekeeper.policy.document import load_policy

    watch = {"environments": ["production"], "probes": [{"type": "rmm", "name": "devices", "devices": ["311"]}]}
    policy = load_policy({"version": 1, "watch": [watch]})
    spec = policy.watch_for("production")
    assert spec is not None and spec.probes[0].type == "rmm"
    with pytest.raises(InvalidInput):
        load_policy({"version": 1, "watch": [watch | {"probes": [{"type": "rmm", "name": "d", "devices": ["a b"]}]}]})
