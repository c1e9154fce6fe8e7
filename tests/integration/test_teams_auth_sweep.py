"""`BotTokenValidator` (who may post to `/api/messages`), driven directly with tokens of the local Bot Framework
and Entra issuers: the edges a hand sweep of planted bugs found untested (docs/mutation.md, second sweep)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.botframework import CHANNEL_SERVICE_APP_ID, LocalBotFrameworkIssuer
from gatekeeper.errors import Unauthenticated
from gatekeeper.teams.auth import MAX_TOKEN_CHARS, BotTokenValidator

APP_ID = "6b5a1f1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
BOT_TENANT = "3f1e2d4c-5b6a-4789-8a0b-1c2d3e4f5a6b"
FIRST_PARTY_TENANT = "d6d49420-f39b-4df7-a1dc-d59a935871db"
SERVICE_URL = "https://smba.trafficmanager.net/emea/"


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalBotFrameworkIssuer]:
    with LocalBotFrameworkIssuer() as server:
        yield server


def validator(issuer: LocalBotFrameworkIssuer, **kw: Any) -> BotTokenValidator:
    options: dict[str, Any] = {
        "tenant_id": BOT_TENANT,
        "allowed_callers": (CHANNEL_SERVICE_APP_ID,),
        "authority_host": issuer.authority_host,
    }
    options.update(kw)
    return BotTokenValidator(APP_ID, issuer.metadata_url, **options)


def reason_of(call: Any) -> str:
    with pytest.raises(Unauthenticated) as refused:
        call()
    return str(refused.value.extra["reason"])


def test_the_bearer_scheme_is_case_blind_but_a_second_word_is_no_token(issuer):
    token = issuer.sign_activity(APP_ID, SERVICE_URL)
    check = validator(issuer)
    assert check.validate(f"bearer {token}", SERVICE_URL)["serviceurl"] == SERVICE_URL
    assert check.validate(f"BEARER {token}", SERVICE_URL)["aud"] == APP_ID
    head, payload, signature = token.split(".")
    split = f"{head}.{payload}.{signature[:12]} {signature[12:]}"
    assert reason_of(lambda: check.validate(f"Bearer {split}", SERVICE_URL)) == "missing-token"
    assert reason_of(lambda: check.validate(f"Bearer {token} {token}", SERVICE_URL)) == "missing-token"


def _token_of_length(issuer: LocalBotFrameworkIssuer, length: int) -> str:
    """A validly signed Bot Framework token exactly `length` characters long (padded with a claim)."""
    iat = int(time.time())
    claims: dict[str, Any] = {"serviceurl": SERVICE_URL, "nbf": iat, "exp": iat + 600, "iat": iat}
    claims.update({"iss": "https://api.botframework.com", "aud": APP_ID, "pad": ""})
    for _ in range(50):
        token = issuer.sign(claims)
        if len(token) == length:
            return token
        missing = length - len(token)
        claims["pad"] += "x" * max(1, missing * 3 // 4) if missing > 0 else ""
        if missing < 0:
            claims["pad"] = claims["pad"][: max(0, len(claims["pad"]) + missing * 3 // 4 - 1)]
    raise AssertionError("could not pad the token to the length asked")


def test_the_token_size_bound_is_exact(issuer):
    check = validator(issuer)
    assert check.validate(f"Bearer {_token_of_length(issuer, MAX_TOKEN_CHARS)}", SERVICE_URL)["aud"] == APP_ID
    over = _token_of_length(issuer, MAX_TOKEN_CHARS + 1)
    assert reason_of(lambda: check.validate(f"Bearer {over}", SERVICE_URL)) == "malformed"


def test_a_key_endorsed_for_no_channel_at_all_is_refused():
    with LocalBotFrameworkIssuer(endorsements=()) as bare:
        token = bare.sign_activity(APP_ID, SERVICE_URL)
        assert reason_of(lambda: validator(bare).validate(f"Bearer {token}", SERVICE_URL)) == "endorsement"


@pytest.mark.parametrize(
    ("claimed", "activity"),
    [
        ("https://smba.trafficmanager.net/amer/", SERVICE_URL),  # same host, another region's path
        ("https://smba.trafficmanager.net", "https://smba.trafficmanager.net.attacker.example/"),  # a prefix
        ("https://smba.trafficmanager.net/", "https://smba.trafficmanager.net/emea/"),  # a prefix of the path
    ],
)
def test_a_service_url_is_compared_whole_not_by_host_or_prefix(issuer, claimed, activity):
    """A token taken from one activity cannot send the bot's replies (and its outbound token) anywhere else."""
    check = validator(issuer)
    bot_framework = issuer.sign_activity(APP_ID, claimed)
    assert reason_of(lambda: check.validate(f"Bearer {bot_framework}", activity)) == "service-url"
    entra = issuer.sign_entra_activity(APP_ID, FIRST_PARTY_TENANT, service_url=claimed)
    assert reason_of(lambda: check.validate(f"Bearer {entra}", activity)) == "service-url"


def test_a_tid_that_is_not_text_is_refused(issuer):
    check = validator(issuer)
    for tid in ([FIRST_PARTY_TENANT], {"id": FIRST_PARTY_TENANT}, 7):
        token = issuer.sign_entra_activity(APP_ID, FIRST_PARTY_TENANT, extra={"tid": tid})
        assert reason_of(lambda token=token: check.validate(f"Bearer {token}", SERVICE_URL)) == "tenant"


@pytest.mark.parametrize(
    "forged_issuer",
    [
        f"https://attacker.example/https://sts.windows.net/{FIRST_PARTY_TENANT}/",
        f"https://sts.windows.net/{FIRST_PARTY_TENANT}/extra",
    ],
)
def test_an_issuer_that_only_contains_an_entra_issuer_is_not_one(issuer, forged_issuer):
    """The issuer must BE a v1/v2 Entra issuer, not contain one: otherwise a token naming any issuer string
    would be checked against (and could be signed for) a trusted tenant."""
    token = issuer.sign_entra_activity(
        APP_ID, FIRST_PARTY_TENANT, service_url=SERVICE_URL, extra={"iss": forged_issuer}
    )
    assert reason_of(lambda: validator(issuer).validate(f"Bearer {token}", SERVICE_URL)) == "issuer"


def test_the_calling_app_of_a_v2_token_is_its_azp_whatever_appid_it_also_carries(issuer):
    insider = str(uuid.uuid4())
    token = issuer.sign_entra_activity(APP_ID, BOT_TENANT, extra={"azp": insider, "appid": CHANNEL_SERVICE_APP_ID})
    assert reason_of(lambda: validator(issuer).validate(f"Bearer {token}", SERVICE_URL)) == "caller"
    # and a v1 token's is its appid, whatever azp it carries
    v1 = issuer.sign_entra_activity(
        APP_ID, BOT_TENANT, v1=True, extra={"azp": CHANNEL_SERVICE_APP_ID, "appid": insider}
    )
    assert reason_of(lambda: validator(issuer).validate(f"Bearer {v1}", SERVICE_URL)) == "caller"


def test_calling_apps_are_compared_case_blind(issuer):
    upper = issuer.sign_entra_activity(APP_ID, BOT_TENANT, extra={"azp": CHANNEL_SERVICE_APP_ID.upper()})
    assert validator(issuer).validate(f"Bearer {upper}", SERVICE_URL)["tid"] == BOT_TENANT
    configured_upper = validator(issuer, allowed_callers=(f" {CHANNEL_SERVICE_APP_ID.upper()} ",))
    lower = issuer.sign_entra_activity(APP_ID, BOT_TENANT)
    assert configured_upper.validate(f"Bearer {lower}", SERVICE_URL)["tid"] == BOT_TENANT


def test_a_rotated_bot_framework_key_is_fetched_after_the_cooldown_without_a_restart():
    with LocalBotFrameworkIssuer() as rotating:
        now = [1_000_000.0]
        check = validator(rotating, cooldown_seconds=60, clock=lambda: now[0])
        first = rotating.sign_activity(APP_ID, SERVICE_URL)
        assert check.validate(f"Bearer {first}", SERVICE_URL)["aud"] == APP_ID
        rotating.rotate()
        second = rotating.sign_activity(APP_ID, SERVICE_URL)
        now[0] += 30  # within the cooldown: no second fetch, the new key is not known yet
        assert reason_of(lambda: check.validate(f"Bearer {second}", SERVICE_URL)) == "unknown-key"
        now[0] += 31  # past it: a token naming an unknown key fetches the key set again
        assert check.validate(f"Bearer {second}", SERVICE_URL)["aud"] == APP_ID
