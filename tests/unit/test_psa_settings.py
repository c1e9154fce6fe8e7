"""A tenant's `psa` settings (gatekeeper/tenancy/psa_settings.py), validated when the tenants file is
imported: every error names the field, credentials are references only and a value is never echoed,
hostile input (oversize, control characters, plain http, credentials in the URL) is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.tenancy.registry import load_tenant_file

CONNECTWISE = {
    "vendor": "connectwise",
    "url": "https://api-na.myconnectwise.net",
    "login_company": "fabrikammsp",
    "company": "ContosoLtd",
    "board": "Change Management",
    "statuses": {"in_progress": "Awaiting CAB", "approved": "Change Approved", "rejected": "CAB Rejected"},
    "open_change_ticket": "production",
    "credentials": {
        "public_key": "env:GK_CONTOSO_CW_PUB",
        "private_key": "env:GK_CONTOSO_CW_PRIV",
        "client_id": "env:GK_CONTOSO_CW_CLIENT",
    },
}
AUTOTASK = {
    "vendor": "autotask",
    "url": "https://webservices.autotask.net/atservicesrest",
    "company": "174",
    "board": "29682833",
    "statuses": {"approved": "13"},
    "credentials": {
        "username": "env:GK_CONTOSO_AT_USER",
        "secret": "env:GK_CONTOSO_AT_SECRET",
        "integration_code": "env:GK_CONTOSO_AT_CODE",
    },
}
HALO = {
    "vendor": "halopsa",
    "url": "https://contoso.halopsa.com",
    "company": "12",
    "board": "Change Advisory",
    "credentials": {"client_id": "env:GK_CONTOSO_HALO_ID", "client_secret": "env:GK_CONTOSO_HALO_SECRET"},
}


def load(psa: Any) -> Any:
    document = {"tenants": [{"tenant_id": "contoso", "display_name": "Contoso", "psa": psa}]}
    return load_tenant_file(json.dumps(document), filename="tenants.json")[0]


def refused(psa: Any) -> str:
    with pytest.raises(ValueError) as caught:
        load(psa)
    return str(caught.value)


def test_the_three_vendors_load_and_a_tenant_without_psa_has_none():
    assert load(CONNECTWISE).psa.opens_change_ticket("Production")
    assert load(AUTOTASK).psa.statuses.approved == "13"
    assert load(HALO).psa.open_change_ticket == "never"
    bare = '{"tenants": [{"tenant_id": "abc1", "display_name": "A"}]}'
    assert load_tenant_file(bare, filename="t.json")[0].psa is None


@pytest.mark.parametrize(
    ("psa", "where"),
    [
        ({**CONNECTWISE, "vendor": "servicenow"}, "tenants[0].psa: "),
        ({**CONNECTWISE, "board": ""}, "tenants[0].psa.connectwise.board"),
        ({**CONNECTWISE, "board": "x" * 101}, "tenants[0].psa.connectwise.board"),
        ({**CONNECTWISE, "company": "Contoso\nLtd"}, "tenants[0].psa.connectwise.company"),
        ({**CONNECTWISE, "url": "http://api-na.myconnectwise.net"}, "tenants[0].psa.connectwise.url"),
        ({**CONNECTWISE, "url": "https://user:pw@api-na.myconnectwise.net"}, "tenants[0].psa.connectwise.url"),
        ({**CONNECTWISE, "login_company": "fabrikam msp"}, "tenants[0].psa.connectwise.login_company"),
        ({**CONNECTWISE, "open_change_ticket": "sometimes"}, "tenants[0].psa.connectwise.open_change_ticket"),
        ({**CONNECTWISE, "statuses": {"aproved": "x"}}, "tenants[0].psa.connectwise.statuses.aproved"),
        ({**CONNECTWISE, "credentials": {"public_key": "env:A", "private_key": "env:B"}}, "credentials.client_id"),
        ({**CONNECTWISE, "tickets": True}, "tenants[0].psa.connectwise.tickets"),
        ({**AUTOTASK, "company": "Contoso"}, "company: the Autotask companyID is a number"),
        ({**AUTOTASK, "board": "Change Management"}, "board: the Autotask queueID is a number"),
        ({**AUTOTASK, "statuses": {"rejected": "Rejected"}}, "statuses.rejected: Autotask statuses are picklist"),
        ({**AUTOTASK, "zone_url": "ftp://webservices3.autotask.net"}, "tenants[0].psa.autotask.zone_url"),
        ({**CONNECTWISE, "url": "https://169.254.169.254"}, "tenants[0].psa.connectwise.url"),  # metadata
        ({**AUTOTASK, "zone_url": "https://10.1.2.3/atservicesrest"}, "tenants[0].psa.autotask.zone_url"),
        ({**HALO, "url": "https://[fd00::1]:8443"}, "tenants[0].psa.halopsa.url"),
        ({**HALO, "company": "Contoso"}, "company: the HaloPSA client_id is a number"),
        ({**HALO, "rollback_priority": "urgent"}, "rollback_priority: HaloPSA priority ids are numbers"),
        ({**HALO, "production_environments": ["prod", ""]}, "production_environments[1]"),
    ],
)
def test_a_bad_setting_is_refused_with_the_field_named(psa: dict[str, Any], where: str):
    assert where in refused(psa)


def test_a_credential_given_as_a_value_is_refused_and_the_value_is_never_echoed():
    message = refused(
        {**HALO, "credentials": {"client_id": "env:GK_CONTOSO_HALO_ID", "client_secret": "s3cr3t-value-xyz"}}
    )
    assert "tenants[0].psa.halopsa.credentials.client_secret" in message and "env:SETTING_NAME" in message
    assert "s3cr3t-value-xyz" not in message


@settings(derandomize=True, max_examples=60, deadline=None)
@given(st.text(min_size=4, max_size=200).filter(lambda s: not s.startswith("env:")))
def test_any_credential_that_is_not_a_reference_is_refused_without_echo(value: str):
    credentials = {**AUTOTASK["credentials"], "secret": value}
    message = refused({**AUTOTASK, "credentials": credentials})
    assert "credentials.secret" in message and value not in message


def test_a_huge_or_deep_psa_block_is_refused_before_it_is_validated():
    psa = {**HALO, "board": "b" * 5_000_000}
    huge = json.dumps({"tenants": [{"tenant_id": "ccc", "display_name": "C", "psa": psa}]})
    with pytest.raises(ValueError, match=r"tenants\.json"):
        load_tenant_file(huge, filename="tenants.json")
    deep: Any = "x"
    for _ in range(200):
        deep = {"a": deep}
    with pytest.raises(ValueError, match=r"tenants\.json"):
        load_tenant_file(
            json.dumps({"tenants": [{"tenant_id": "ccc", "display_name": "C", "psa": deep}]}), filename="tenants.json"
        )


# ----- which app settings a credential reference may name (gatekeeper.tenancy.references) ---------------------

_NINJA = {"vendor": "ninjaone", "api_url": "https://eu.ninjarmm.com", "client_id": "gk-client"}
_SLACK = {"team_id": "T0CONTOSO1", "signing_secrets": ["env:GK_CONTOSO_SLACK_SIGNING"]}
REFUSED_NAMES = [
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__accountName",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "GATEKEEPER_STORAGE_CONNECTION",
    "WEBSITE_AUTH_ENCRYPTION_KEY",
    "FUNCTIONS_WORKER_RUNTIME",
    "AZURE_CLIENT_SECRET",
    "MSI_SECRET",
    "IDENTITY_HEADER",
    "GK_FABRIKAM_CW_PRIVATE",  # another tenant's prefix
    "GK_CONTOSOEU_CW_PRIVATE",  # another tenant whose id starts like this one's
    "GK_CONTOSO_",  # the prefix alone names nothing of the tenant's
    "gk_contoso_cw_private",  # app setting names are case-sensitive on Linux: not the tenant's prefix
    "CONTOSO_CW_PRIVATE",  # no prefix at all
]


def _tenant(**fields: Any) -> str:
    return json.dumps({"tenants": [{"tenant_id": "contoso", "display_name": "Contoso", **fields}]})


@pytest.mark.parametrize("name", REFUSED_NAMES)
@pytest.mark.parametrize(
    ("build", "field"),
    [
        (
            lambda ref: {"psa": {**CONNECTWISE, "credentials": {**CONNECTWISE["credentials"], "private_key": ref}}},
            "psa.credentials.private_key",
        ),
        (lambda ref: {"rmm": {**_NINJA, "client_secret": ref}}, "rmm.client_secret"),
        (lambda ref: {"slack": {**_SLACK, "bot_token": ref}}, "slack.bot_token"),
        (
            lambda ref: {"slack": {**_SLACK, "bot_token": "env:GK_CONTOSO_BOT", "signing_secrets": [ref]}},
            "slack.signing_secrets[0]",
        ),
    ],
    ids=["psa", "rmm", "slack-bot-token", "slack-signing-secret"],
)
def test_a_credential_reference_naming_an_app_setting_not_the_tenants_own_is_refused(build, field, name):
    """Those values are sent to the host the record names: a reference may name only `GK_<TENANT>_<NAME>`,
    never a platform or Gatekeeper setting, nor another tenant's."""
    with pytest.raises(ValueError) as caught:
        load_tenant_file(_tenant(**build(f"env:{name}")), filename="tenants.json")
    assert str(caught.value).startswith(f"tenants.json: tenants[0].{field}: ")
    assert "GK_CONTOSO_<NAME>" in str(caught.value) or "never a tenant credential" in str(caught.value)


def test_the_tenants_own_references_are_accepted_for_every_credential():
    record = load_tenant_file(
        _tenant(
            psa=CONNECTWISE,
            rmm={**_NINJA, "client_secret": "env:GK_CONTOSO_NINJA"},
            slack={**_SLACK, "bot_token": "env:GK_CONTOSO_SLACK_BOT"},
        ),
        filename="tenants.json",
    )[0]
    assert record.psa is not None and record.psa.credentials.private_key == "env:GK_CONTOSO_CW_PRIV"  # type: ignore[union-attr]
    assert record.rmm is not None and record.slack is not None
