"""Data boundaries and the first tenant's settings, as pure rules: which tenant fits which stamp, and every
bad bootstrap setting refused by name (nothing else is read)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gatekeeper.settings import DataBoundary, Settings
from gatekeeper.tenancy.bootstrap import POLICY_FILE, BootstrapRefused, first_tenant
from gatekeeper.tenancy.boundary import BoundaryMismatch, fits, require_fit
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from tests.conftest import ROOT

EU, US, ANY = DataBoundary.EU, DataBoundary.US, DataBoundary.ANY
GOOD = {
    "GATEKEEPER_BOOTSTRAP_TENANT_ID": "northwind",
    "GATEKEEPER_BOOTSTRAP_TENANT_NAME": "Northwind Traders",
    "GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID": "4f6c1a2e-8d3b-4c7a-9e51-2b0d7f3a6c18",
    "GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS": "ops@northwind.example, CAB@northwind.example",
    "GATEKEEPER_BOOTSTRAP_TENANT_GITHUB": "true",
    "GATEKEEPER_BOOTSTRAP_TENANT_AZURE_DEVOPS": "False",
}


@pytest.mark.parametrize(("tenant", "stamp"), list(itertools.product(DataBoundary, DataBoundary)))
def test_a_tenant_fits_a_stamp_only_without_a_requirement_or_in_its_own_geography(tenant, stamp):
    expected = tenant is ANY or tenant is stamp  # an EU tenant never lands in an `any` or US stamp
    assert fits(tenant, stamp) is expected
    if expected:
        require_fit("contoso", tenant, stamp, "tenants[3].data_boundary")
    else:
        with pytest.raises(BoundaryMismatch) as refused:
            require_fit("contoso", tenant, stamp, "tenants[3].data_boundary")
        assert refused.value.field == "tenants[3].data_boundary"
        assert tenant.value in refused.value.detail and stamp.value in refused.value.detail


def test_tenant_records_name_their_boundary_and_old_records_read_any():
    assert TenantRecord(tenant_id="abc", display_name="x").data_boundary is ANY
    assert TenantRecord(tenant_id="abc", display_name="x", data_boundary="eu").data_boundary is EU
    stored = TenantRecord(tenant_id="abc", display_name="x", data_boundary="US").model_dump_json()
    assert TenantRecord.model_validate_json(stored).data_boundary is US
    old = '{"tenant_id": "abc", "display_name": "x"}'  # written before the field existed
    assert TenantRecord.model_validate_json(old).data_boundary is ANY
    with pytest.raises(ValidationError, match="data_boundary"):
        TenantRecord(tenant_id="abc", display_name="x", data_boundary="EU-West")


@pytest.mark.parametrize(("raw", "expected"), [("EU", EU), ("us", US), (" any ", ANY), ("", ANY)])
def test_the_deployment_boundary_setting(raw, expected):
    assert Settings.from_environ({"GATEKEEPER_DATA_BOUNDARY": raw}).data_boundary is expected


@pytest.mark.parametrize("raw", ["EUR", "europe", "eu,us", "\u0395U"])
def test_a_bad_deployment_boundary_names_the_setting(raw):
    with pytest.raises(ValueError, match="GATEKEEPER_DATA_BOUNDARY"):
        Settings.from_environ({"GATEKEEPER_DATA_BOUNDARY": raw})


def test_the_shipped_first_tenant_policy_is_the_example_policy():
    assert POLICY_FILE.read_bytes() == (ROOT / "examples" / "policy.yaml").read_bytes()


def test_the_first_tenant_from_good_settings():
    record = first_tenant(GOOD, EU)
    assert record is not None
    assert record.tenant_id == "northwind" and record.display_name == "Northwind Traders"
    assert record.entra_tenant_ids == ("4f6c1a2e-8d3b-4c7a-9e51-2b0d7f3a6c18",)
    assert record.operators == ("ops@northwind.example", "cab@northwind.example")
    assert record.data_boundary is EU  # installed into this stamp on purpose
    assert record.secrets == {
        SecretPurpose.GENERIC_API_KEY: ("env:GK_NORTHWIND_API_KEY",),
        SecretPurpose.CALLBACK_SIGNING: ("env:GK_NORTHWIND_CALLBACK_SECRET",),
        SecretPurpose.GITHUB_WEBHOOK: ("env:GK_NORTHWIND_GITHUB_SECRET",),
    }
    with_ado = first_tenant({**GOOD, "GATEKEEPER_BOOTSTRAP_TENANT_AZURE_DEVOPS": "true"}, ANY)
    assert with_ado is not None and SecretPurpose.AZURE_DEVOPS_CHECK in with_ado.secrets


def test_no_tenant_id_and_nothing_else_is_no_bootstrap():
    assert first_tenant({}, ANY) is None
    assert first_tenant({"GATEKEEPER_BOOTSTRAP_TENANT_GITHUB": "false"}, ANY) is None


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("GATEKEEPER_BOOTSTRAP_TENANT_ID", "North-Wind"),
        ("GATEKEEPER_BOOTSTRAP_TENANT_ID", "n" * 33),
        ("GATEKEEPER_BOOTSTRAP_TENANT_ID", "ac\nme"),
        ("GATEKEEPER_BOOTSTRAP_TENANT_NAME", ""),
        ("GATEKEEPER_BOOTSTRAP_TENANT_NAME", "x" * 201),
        ("GATEKEEPER_BOOTSTRAP_TENANT_NAME", "Northwind\x1b[31m"),
        ("GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID", ""),
        ("GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID", "contoso.onmicrosoft.com"),
        ("GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS", ""),
        ("GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS", "ops@northwind.example,not-a-mail"),
        ("GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS", ",".join(f"o{i}@n.example" for i in range(21))),
        ("GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS", "a@b.example\nBcc: x@evil.example"),
        ("GATEKEEPER_BOOTSTRAP_TENANT_GITHUB", "yes please"),
        ("GATEKEEPER_BOOTSTRAP_TENANT_AZURE_DEVOPS", "1"),
    ],
)
def test_each_bad_setting_is_refused_by_name(setting, value):
    with pytest.raises(BootstrapRefused) as refused:
        first_tenant({**GOOD, setting: value}, ANY)
    assert refused.value.field == setting
    assert value.strip() == "" or value not in str(refused.value)  # the bad value is not echoed back


def test_settings_without_the_tenant_id_are_refused_naming_it():
    values = {k: v for k, v in GOOD.items() if k != "GATEKEEPER_BOOTSTRAP_TENANT_ID"}
    with pytest.raises(BootstrapRefused) as refused:
        first_tenant(values, ANY)
    assert refused.value.field == "GATEKEEPER_BOOTSTRAP_TENANT_ID"


@settings(derandomize=True, max_examples=150, deadline=None)
@given(
    field=st.sampled_from(sorted(GOOD)),
    value=st.text(st.characters(codec="utf-8"), max_size=300),
)
def test_any_value_of_any_setting_is_a_record_or_a_refusal_naming_that_setting(field, value):
    try:
        record = first_tenant({**GOOD, field: value}, US)
    except BootstrapRefused as refused:
        assert refused.field == field or (field == "GATEKEEPER_BOOTSTRAP_TENANT_ID" and not value.strip())
        return
    assert record is None or (record.tenant_id and record.data_boundary is US)
