"""The Teams bot's issuer rules (`gatekeeper.teams.auth`) against the Agents SDK's own, which they restate:
the first-party tenant lists, the issuer templates, which issuers name an Entra tenant, and when the SDK
answers a token as a call from another app. A new SDK release that changes any of them fails here."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from microsoft_agents.hosting.core.authorization import AuthenticationConstants, ClaimsIdentity
from microsoft_agents.hosting.core.authorization import _entra_issuers as sdk

from gatekeeper.teams.auth import (
    BOT_FRAMEWORK_ISSUER,
    DEFAULT_AUTHORITY_HOST,
    ENTRA_V1_ISSUER,
    FIRST_PARTY_TENANTS,
    GOV_FIRST_PARTY_TENANTS,
    BotTokenValidator,
    first_party_tenants,
    is_agent_call,
)

APP_ID = "6b5a1f1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
BOT_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def validator(host: str = DEFAULT_AUTHORITY_HOST, tenant: str | None = BOT_TENANT) -> BotTokenValidator:
    return BotTokenValidator(
        APP_ID,
        "https://login.botframework.com/v1/.well-known/openidconfiguration",
        tenant_id=tenant,
        authority_host=host,
    )


def test_the_first_party_tenants_and_templates_are_the_sdks():
    assert FIRST_PARTY_TENANTS == sdk.WELL_KNOWN_PUBLIC_TENANT_IDS
    assert GOV_FIRST_PARTY_TENANTS == (sdk.WELL_KNOWN_GOV_TENANT_ID,)
    assert BOT_FRAMEWORK_ISSUER == AuthenticationConstants.AGENTS_SDK_TOKEN_ISSUER
    assert ENTRA_V1_ISSUER.format(tenant="x") == AuthenticationConstants.VALID_TOKEN_ISSUER_URL_TEMPLATE_V1.format("x")
    assert f"{DEFAULT_AUTHORITY_HOST}/x/v2.0" == AuthenticationConstants.VALID_TOKEN_ISSUER_URL_TEMPLATE_V2.format("x")
    assert first_party_tenants("https://login.microsoftonline.us") == GOV_FIRST_PARTY_TENANTS


def test_the_accepted_issuers_are_the_sdks_allow_list_for_this_configuration():
    """With VALIDATE_ISSUER on and TENANT_ID the bot's tenant, the SDK accepts exactly these issuers."""
    ours = validator()
    sdk_issuers = {i.lower() for i in sdk.default_connection_issuers(BOT_TENANT, None)}
    sdk_issuers |= {i.lower() for i in sdk.well_known_first_party_issuers(None)}
    entra = {i for i in sdk_issuers if i != BOT_FRAMEWORK_ISSUER}
    assert {ours.entra_tenant(i) for i in entra} == set(ours.entra_tenants)
    assert ours.entra_tenant(BOT_FRAMEWORK_ISSUER) is None


def test_without_a_bot_tenant_only_the_first_party_tenants_are_accepted():
    assert validator(tenant=None).entra_tenants == frozenset(FIRST_PARTY_TENANTS)


_hex = "0123456789abcdefABCDEF"
_segment = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.text(alphabet=_hex + "-", min_size=30, max_size=40),
    st.sampled_from(["common", "organizations", "contoso.onmicrosoft.com", "", "a/b"]),
)
_issuer = st.one_of(
    st.builds(lambda t: f"https://login.microsoftonline.com/{t}/v2.0", _segment),
    st.builds(lambda t: f"https://sts.windows.net/{t}/", _segment),
    st.builds(lambda t: f"https://login.microsoftonline.us/{t}/v2.0", _segment),
    st.builds(lambda t: f"https://login.microsoftonline.com/{t}/v2.0/", _segment),
    st.builds(lambda t: f"https://sts.windows.net/{t}", _segment),
    st.sampled_from([BOT_FRAMEWORK_ISSUER, "https://api.botframework.us", ""]),
)
_issuer = st.one_of(_issuer, _issuer.map(str.upper), _issuer.map(lambda i: i.replace("/v2.0", "/V2.0")))


@settings(derandomize=True, max_examples=300, deadline=None)
@given(_issuer)
def test_the_tenant_read_from_an_issuer_is_the_sdks_on_the_public_cloud(issuer: str):
    info = sdk.entra_issuer_info(issuer)
    expected = info.tenant if info is not None and info.gov is not True else None
    assert validator().entra_tenant(issuer) == expected


_claim = st.one_of(st.none(), st.just(APP_ID), st.just(BOT_FRAMEWORK_ISSUER), st.uuids().map(str))


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    ver=st.sampled_from([None, "1.0", "2.0", "3.0", ""]),
    aud=st.one_of(_claim, st.just("HTTPS://API.BOTFRAMEWORK.COM")),
    appid=_claim,
    azp=_claim,
)
def test_an_agent_call_is_what_the_sdk_calls_an_agent_claim(ver: Any, aud: Any, appid: Any, azp: Any):
    claims = {k: v for k, v in {"ver": ver, "aud": aud, "appid": appid, "azp": azp}.items() if v is not None}
    assert is_agent_call(claims) == ClaimsIdentity(claims, authentication_type="Bearer").is_agent_claim()
