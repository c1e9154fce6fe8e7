"""`POST /api/messages` where tests/integration/test_teams_bot.py does not go: the Bot Framework's OpenID
metadata and key set unreachable or answering something that is not them (each a 503 with Retry-After, never a
401 that would make Teams drop the click, never a 500), a token naming a key nobody publishes or one that is not
a usable RSA key, a token too large to read, an issuer claim that is not text, an activity without a serviceUrl.

The registered function, the real Agents SDK, the local Bot Framework issuer and Bot Connector (devstack/), and
for the misbehaving metadata a local server answering what the test injects (devstack/health.py's
LocalHealthServer: `fail_next` answers a chosen JSON body, `garbled_from` 200 with a body that is not JSON,
`answer_huge` a body that never ends)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.bot_connector import LocalBotConnector
from devstack.botframework import KEYS_PATH, LocalBotFrameworkIssuer
from devstack.durable_api import DurableApiServer
from devstack.health import LocalHealthServer
from gatekeeper.teams.auth import BOT_FRAMEWORK_ISSUER, MAX_METADATA_BYTES, MAX_TOKEN_CHARS, BotTokenValidator
from tests.integration.test_teams_bot import (  # noqa: F401 - the fixtures of the bot's route tests
    ANNA,
    APP_ID,
    action,
    connector,
    durable,
    issuer,
    post,
    raised,
    refused,
    runtime_env,
    seed_gate,
    served,
)
from tests.support.outage import dead_port

pytestmark = pytest.mark.azurite

METADATA_PATH = "/health"  # the path the local server answers on; the validator is pointed at it


@pytest.fixture
def metadata(served: Any) -> Iterator[LocalHealthServer]:
    """A metadata URL whose answers the test injects; the route's validator points at it for the test."""
    with LocalHealthServer() as server:
        served.services.__dict__["bot_validator"] = BotTokenValidator(
            APP_ID, server.url + METADATA_PATH, timeout_seconds=1
        )
        try:
            yield server
        finally:
            served.services.__dict__.pop("bot_validator", None)


def unavailable(response: Any) -> None:
    assert response.status_code == 503, response.get_body()
    assert response.headers.get("Retry-After")
    assert json.loads(response.get_body())["type"].endswith("/identity-provider-unavailable")


def bot_framework_click(
    served: Any, durable: DurableApiServer, issuer: LocalBotFrameworkIssuer, connector: LocalBotConnector
) -> tuple[dict[str, Any], str]:
    activity = action(connector, seed_gate(served, durable), ANNA)
    return activity, issuer.sign_activity(APP_ID, activity["serviceUrl"])


def test_bot_framework_metadata_out_of_reach_is_a_503_within_its_timeout(served, durable, issuer, connector):
    served.services.__dict__["bot_validator"] = BotTokenValidator(
        APP_ID, f"http://127.0.0.1:{dead_port()}/metadata", timeout_seconds=1
    )
    try:
        activity, token = bot_framework_click(served, durable, issuer, connector)
        started = time.monotonic()
        unavailable(post(durable, activity, token))
        assert time.monotonic() - started < 2
        assert raised(durable) == []
    finally:
        served.services.__dict__.pop("bot_validator", None)


def test_metadata_answering_an_error_status_is_a_503(served, durable, issuer, connector, metadata):
    metadata.fail_next(1, 500, path_contains=METADATA_PATH)
    unavailable(post(durable, *bot_framework_click(served, durable, issuer, connector)))
    assert raised(durable) == []


def test_metadata_answering_something_that_is_not_json_is_a_503(served, durable, issuer, connector, metadata):
    metadata.garbled_from = 0  # 200 with an HTML page (a captive gateway, a proxy's error page)
    unavailable(post(durable, *bot_framework_click(served, durable, issuer, connector)))
    assert raised(durable) == []


def test_metadata_that_never_ends_is_read_only_to_its_bound_and_is_a_503(served, durable, issuer, connector, metadata):
    endless = 64 * 1024 * 1024
    metadata.answer_huge(1, endless, path_contains=METADATA_PATH)
    unavailable(post(durable, *bot_framework_click(served, durable, issuer, connector)))
    deadline = time.monotonic() + 10  # the server thread notices the hang-up a moment later
    while not metadata.huge_written and time.monotonic() < deadline:
        time.sleep(0.02)
    assert metadata.huge_written[0] < 16 * 1024 * 1024  # the client hung up near its bound (socket buffers aside)
    assert raised(durable) == []


@pytest.mark.parametrize(
    "answer",
    [
        ["not", "an", "object"],
        {"issuer": BOT_FRAMEWORK_ISSUER},  # no jwks_uri
        {"jwks_uri": "{keys}"},  # no issuer
        {"issuer": 42, "jwks_uri": "{keys}"},
        {"issuer": BOT_FRAMEWORK_ISSUER, "jwks_uri": ["{keys}"]},
    ],
    ids=["a-list", "no-jwks-uri", "no-issuer", "issuer-not-text", "jwks-uri-not-text"],
)
def test_metadata_of_the_wrong_shape_is_a_503(served, durable, issuer, connector, metadata, answer):
    """The key set named is the real one: only the metadata's shape is wrong."""
    keys = issuer.authority_host + KEYS_PATH
    shaped = json.loads(json.dumps(answer).replace("{keys}", keys))
    metadata.fail_next(1, 200, path_contains=METADATA_PATH, body=shaped)
    unavailable(post(durable, *bot_framework_click(served, durable, issuer, connector)))
    assert raised(durable) == []


def test_valid_metadata_one_byte_over_its_bound_is_a_503_not_read(served, durable, issuer, connector, metadata):
    document = {"issuer": BOT_FRAMEWORK_ISSUER, "jwks_uri": issuer.authority_host + KEYS_PATH, "pad": ""}
    document["pad"] = "x" * (MAX_METADATA_BYTES + 1 - len(json.dumps(document)))
    assert len(json.dumps(document)) == MAX_METADATA_BYTES + 1
    metadata.fail_next(1, 200, path_contains=METADATA_PATH, body=document)
    unavailable(post(durable, *bot_framework_click(served, durable, issuer, connector)))
    assert raised(durable) == []
    document["pad"] = document["pad"][:-2]  # within the bound: the same metadata is read and the click counts
    metadata.fail_next(1, 200, path_contains=METADATA_PATH, body=document)
    assert post(durable, *bot_framework_click(served, durable, issuer, connector)).status_code == 200
    assert len(raised(durable)) == 1


def test_a_key_set_without_a_list_of_keys_is_a_503(served, durable, issuer, connector, metadata):
    keys_url = metadata.url + METADATA_PATH + "/keys"
    metadata.fail_next(1, 200, path_contains="/keys", body={"keys": {"kid": issuer.kid}})
    metadata.fail_next(1, 200, path_contains=METADATA_PATH, body={"issuer": BOT_FRAMEWORK_ISSUER, "jwks_uri": keys_url})
    unavailable(post(durable, *bot_framework_click(served, durable, issuer, connector)))
    assert raised(durable) == []


def test_a_published_key_that_is_not_a_usable_rsa_key_is_refused_as_an_unknown_key(
    served, durable, issuer, connector, metadata
):
    keys_url = metadata.url + METADATA_PATH + "/keys"
    broken = {"kid": issuer.kid, "kty": "RSA", "n": "AQAB", "e": "not-base64!", "endorsements": ["msteams"]}
    metadata.fail_next(1, 200, path_contains="/keys", body={"keys": [broken]})
    metadata.fail_next(1, 200, path_contains=METADATA_PATH, body={"issuer": BOT_FRAMEWORK_ISSUER, "jwks_uri": keys_url})
    refused(post(durable, *bot_framework_click(served, durable, issuer, connector)), "unknown-key")
    assert raised(durable) == []


def test_a_token_signed_with_a_key_the_bot_framework_does_not_publish_is_refused(served, durable, issuer, connector):
    activity = action(connector, seed_gate(served, durable), ANNA)
    now = int(time.time())
    claims = {
        "iss": BOT_FRAMEWORK_ISSUER,
        "aud": APP_ID,
        "nbf": now,
        "exp": now + 600,
        "serviceurl": activity["serviceUrl"],
    }
    token = issuer.sign(claims, headers={"kid": "a-key-nobody-publishes"})
    refused(post(durable, activity, token), "unknown-key")
    assert raised(durable) == []


def test_a_token_over_the_size_limit_is_refused_before_it_is_decoded(served, durable, issuer, connector):
    activity = action(connector, seed_gate(served, durable), ANNA)
    token = issuer.sign_activity(APP_ID, activity["serviceUrl"], extra={"pad": "x" * MAX_TOKEN_CHARS})
    assert len(token) > MAX_TOKEN_CHARS
    refused(post(durable, activity, token), "malformed")
    assert raised(durable) == []


def test_a_token_whose_issuer_is_not_text_is_refused_not_a_server_error(served, durable, issuer, connector):
    activity = action(connector, seed_gate(served, durable), ANNA)
    header, _, signature = issuer.sign_activity(APP_ID, activity["serviceUrl"]).split(".")
    claims = {"iss": 42, "aud": APP_ID, "nbf": int(time.time()), "exp": int(time.time()) + 600}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    refused(post(durable, activity, f"{header}.{payload}.{signature}"))  # 401, whatever the reason: not a 500
    assert raised(durable) == []


def test_an_activity_without_a_service_url_is_refused_whatever_its_token_names(served, durable, issuer, connector):
    activity = action(connector, seed_gate(served, durable), ANNA)
    token = issuer.sign_activity(APP_ID, activity.pop("serviceUrl"))
    refused(post(durable, activity, token), "service-url")
    assert raised(durable) == []
