"""`POST /api/messages`: the registered function with the real Agents SDK, Bot Framework tokens from the
local issuer (OpenID metadata and keys of the Bot Framework's shape), the bot's own token from the local
token endpoint, the real DurableOrchestrationClient against the local Durable HTTP API, gates in Azurite."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import jwt
import pytest

from devstack.bot_connector import LocalBotConnector
from devstack.botframework import (
    CHANNEL_SERVICE_APP_ID,
    LocalBotFrameworkIssuer,
    LocalClientCredential,
    card_action_activity,
)
from devstack.durable_api import DurableApiServer
from gatekeeper.approvals.chain import ChainPlan
from gatekeeper.contracts.gate import GateStatus, chain_instance_id
from gatekeeper.gates.store import GateIndex, GateRecord, GateStore
from gatekeeper.services import set_services
from gatekeeper.teams.bot import BotHost
from tests.support.gatekeeper_env import ENTRA_TENANT, http_function, make_env
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

APP_ID = "6b5a1f1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
BOT_SECRET = "local-bot-secret"
ANNA, PIET = "0000000a-0000-4000-8000-00000000000a", "0000000b-0000-4000-8000-00000000000b"
REQUESTER = "000000de-0000-4000-8000-0000000000de"
STRANGER_TENANT = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d"
FIRST_PARTY_TENANT = "d6d49420-f39b-4df7-a1dc-d59a935871db"  # one of Microsoft's service tenants (Agents SDK)


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalBotFrameworkIssuer]:
    with LocalBotFrameworkIssuer() as server:
        server.client_secrets[APP_ID] = BOT_SECRET
        yield server


@pytest.fixture(scope="module")
def connector(issuer) -> Iterator[LocalBotConnector]:
    with LocalBotConnector(lambda token: issuer.verify_bot_token(token, APP_ID)) as server:
        yield server


def environ(issuer: LocalBotFrameworkIssuer, app_id: str | None = APP_ID) -> dict[str, str]:
    return {
        **({"GATEKEEPER_BOT_APP_ID": app_id} if app_id else {}),
        "GATEKEEPER_BOT_TENANT_ID": ENTRA_TENANT,
        "GATEKEEPER_BOT_ALLOWED_CALLERS": CHANNEL_SERVICE_APP_ID,  # the app that signs as the bot's own tenant
        "GATEKEEPER_BOT_OPENID_METADATA": issuer.metadata_url,
        "GATEKEEPER_ENTRA_AUTHORITY_HOST": issuer.authority_host,  # Entra-issued bot tokens' keys
    }


@pytest.fixture(scope="module")
def runtime_env(azurite, tmp_path_factory, issuer) -> Any:
    env = make_env(azurite.connection_string, tmp_path_factory.mktemp("keys"), extra_environ=environ(issuer))
    credential = LocalClientCredential(issuer.token_url, APP_ID, BOT_SECRET)
    env.services.__dict__["bot_host"] = BotHost(credential, APP_ID, ENTRA_TENANT)
    env.credential = credential
    return env


@pytest.fixture
def durable() -> Iterator[DurableApiServer]:
    with DurableApiServer() as server:
        yield server


def seed_gate(env: Any, durable: DurableApiServer, *, status: GateStatus = GateStatus.AWAITING_APPROVAL) -> str:
    now = datetime.now(UTC)
    gate_id = "gate-" + uuid.uuid4().hex
    GateIndex(env.storage).put(gate_id, env.tenant_id)
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "cab", "approvers": [ANNA, PIET], "quorum": 2, "timeout": "PT1H"}]}
    )
    GateStore(env.storage, env.tenant_id, env.services.sealer).save(
        GateRecord(
            instance_id=gate_id,
            tenant_id=env.tenant_id,
            status=status,
            level="L2",
            title="deploy contoso/webshop to production",
            subject={"repository": "contoso/[webshop](https://evil.example)", "environment": "production"},
            requester=(REQUESTER,),
            created_at=now - timedelta(minutes=30),
            updated_at=now,
            decided_at=now if status is not GateStatus.AWAITING_APPROVAL else None,
            chain_instance_id=chain_instance_id(gate_id),
            plan=plan,
            stage=0,
            stage_started_at=now - timedelta(minutes=30),
            deadline=now + timedelta(minutes=30),
        )
    )
    running = "Running" if status is GateStatus.AWAITING_APPROVAL else "Completed"
    durable.instances[chain_instance_id(gate_id)] = {"name": "approval_chain", "runtimeStatus": running}
    return gate_id


@pytest.fixture
def served(runtime_env, durable) -> Iterator[Any]:
    set_services(runtime_env.services)
    http_function("bot_messages")
    yield runtime_env
    set_services(None)


def post(
    durable: DurableApiServer, activity: dict[str, Any] | bytes, token: str | None, **headers: str
) -> func.HttpResponse:
    body = activity if isinstance(activity, bytes) else json.dumps(activity).encode()
    request = func.HttpRequest(
        "POST",
        "http://localhost/api/messages",
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
            **headers,
        },
        body=body,
    )
    return run_on_worker(http_function("bot_messages")(req=request, client=durable.client_binding))


def action(connector: LocalBotConnector, gate_id: str, user: str, verb: str = "approve", **kw: Any) -> dict[str, Any]:
    return card_action_activity(
        service_url=connector.url + "/",
        app_id=APP_ID,
        user_oid=user,
        tenant_id=kw.pop("tenant", ENTRA_TENANT),
        verb=verb,
        instance_id=gate_id,
        **kw,
    )


def invoke(durable, issuer, connector, activity: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    token = issuer.sign_activity(APP_ID, activity["serviceUrl"])
    response = post(durable, activity, token)
    return response.status_code, json.loads(response.get_body() or b"null")


def raw_texts(card: Any) -> str:
    """Every text, fact and title on the card, as sent (Markdown-escaped)."""
    if isinstance(card, dict):
        own = [card[k] for k in ("text", "title", "value") if isinstance(card.get(k), str)]
        return " ".join(own + [raw_texts(v) for v in card.values() if isinstance(v, dict | list)])
    if isinstance(card, list):
        return " ".join(raw_texts(v) for v in card)
    return ""


def card_texts(card: Any) -> str:
    """What a person reads on the card (escapes removed)."""
    return re.sub(r"\\(.)", r"\1", raw_texts(card))


def raised(durable: DurableApiServer) -> list[Any]:
    return [r for r in durable.requests_to("/raiseEvent/", "POST") if r.status == 202]


def vote(request: Any) -> dict[str, Any]:
    """The vote event the chain orchestration received (the client sends it JSON-encoded)."""
    body = request.json
    return json.loads(body) if isinstance(body, str) else body


# ----- the card action decides ------------------------------------------------------------------------


def test_a_signed_approve_is_decided_and_answered_with_the_refreshed_card(served, durable, issuer, connector):
    gate = seed_gate(served, durable)
    status, body = invoke(durable, issuer, connector, action(connector, gate, ANNA))
    assert status == 200
    assert body["statusCode"] == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
    card = body["value"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    assert "You approved this request." in card_texts(card)
    assert not any(a.get("verb") in ("approve", "reject") for a in card.get("actions", []))  # voted: no buttons
    assert card["refresh"]["userIds"] == [
        f"8:orgid:{oid}" for oid in sorted([ANNA, PIET])
    ]  # every approver's card refreshes itself
    assert "contoso/\\[webshop\\]\\(https://evil" in raw_texts(card)  # event text is escaped, not a link
    (event,) = raised(durable)
    assert event.path.endswith("/raiseEvent/approval-vote-0") and vote(event)["voter_id"] == ANNA
    assert served.credential.requests >= 1  # the bot's own token came from the token endpoint


def test_a_refresh_shows_the_buttons_to_an_approver_who_has_not_voted(served, durable, issuer, connector):
    gate = seed_gate(served, durable)
    status, body = invoke(durable, issuer, connector, action(connector, gate, PIET, "refresh", trigger="automatic"))
    assert status == 200
    verbs = [a.get("verb") for a in body["value"]["actions"]]
    reject = next(a for a in body["value"]["actions"] if a["title"] == "Reject")
    assert verbs[0] == "approve" and reject["card"]["actions"][0]["verb"] == "reject"
    assert reject["card"]["body"][0]["isRequired"] is True
    assert raised(durable) == []


def test_the_requesters_own_approval_is_refused_with_the_reason_on_the_card(served, durable, issuer, connector):
    gate = seed_gate(served, durable)
    status, body = invoke(durable, issuer, connector, action(connector, gate, REQUESTER))
    assert status == 200  # never an HTTP error to Teams
    text = card_texts(body["value"])
    assert "The requester cannot decide on their own deployment" in text
    assert raised(durable) == []
    assert not any(a.get("verb") == "approve" for a in body["value"].get("actions", []))


def test_a_reject_without_a_comment_records_nothing_and_says_so(served, durable, issuer, connector):
    gate = seed_gate(served, durable)
    status, body = invoke(durable, issuer, connector, action(connector, gate, ANNA, "reject"))
    assert status == 200 and "A comment is required to reject" in card_texts(body["value"])
    assert raised(durable) == []
    status, body = invoke(
        durable, issuer, connector, action(connector, gate, ANNA, "reject", inputs={"reject_comment": "not now"})
    )
    assert "You rejected this request." in card_texts(body["value"])
    assert vote(raised(durable)[0])["decision"] == "reject"


def test_an_approver_after_the_gate_closed_gets_the_read_only_summary(served, durable, issuer, connector):
    gate = seed_gate(served, durable, status=GateStatus.APPROVED)
    status, body = invoke(durable, issuer, connector, action(connector, gate, PIET))
    assert status == 200
    card = body["value"]
    assert "The gate has already been decided" in card_texts(card) and "Decided approved" in card_texts(card)
    assert "refresh" not in card and not any("verb" in a for a in card.get("actions", []))
    assert raised(durable) == []


def test_a_voter_from_another_tenant_sees_nothing_of_the_gate(served, durable, issuer, connector):
    gate = seed_gate(served, durable)
    status, body = invoke(durable, issuer, connector, action(connector, gate, ANNA, tenant=STRANGER_TENANT))
    assert status == 200
    assert "webshop" not in card_texts(body["value"]) and "tenant" in card_texts(body["value"]).lower()
    assert raised(durable) == []


# ----- authentication ---------------------------------------------------------------------------------


def refused(response: func.HttpResponse, reason: str | None = None) -> dict[str, Any]:
    assert response.status_code == 401, response.get_body()
    problem = json.loads(response.get_body())
    assert response.mimetype == "application/problem+json"
    if reason:
        assert problem["reason"] == reason
    return problem


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "missing-token"),
        ("forged key", "signature"),
        ("wrong audience", "audience"),
        ("wrong issuer", "issuer"),
        ("expired", "expired"),
        ("other service url", "service-url"),
        ("no service url claim", "missing-claim"),
    ],
)
def test_an_activity_without_a_valid_bot_connector_token_is_refused(served, durable, issuer, connector, case, reason):
    gate = seed_gate(served, durable)
    activity = action(connector, gate, ANNA)
    url = activity["serviceUrl"]
    token = {
        "unsigned": None,
        "forged key": issuer.sign_activity(APP_ID, url, forged=True),
        "wrong audience": issuer.sign_activity(str(uuid.uuid4()), url),
        "wrong issuer": issuer.sign_activity(APP_ID, url, issuer="https://sts.windows.net/x/"),
        "expired": issuer.sign_activity(APP_ID, url, issued_at=time.time() - 7200, lifetime=600),
        "other service url": issuer.sign_activity(APP_ID, "https://smba.example.net/teams/"),
        "no service url claim": issuer.sign(
            {
                "iss": "https://api.botframework.com",
                "aud": APP_ID,
                "nbf": int(time.time()),
                "exp": int(time.time()) + 600,
            }
        ),
    }[case]
    refused(post(durable, activity, token), reason)
    assert raised(durable) == []


def test_a_key_not_endorsed_for_teams_is_refused(served, durable, connector):
    with LocalBotFrameworkIssuer(endorsements=("webchat",)) as other:
        served.services.__dict__.pop("bot_validator", None)
        from gatekeeper.teams.auth import BotTokenValidator

        served.services.__dict__["bot_validator"] = BotTokenValidator(APP_ID, other.metadata_url)
        try:
            gate = seed_gate(served, durable)
            activity = action(connector, gate, ANNA)
            refused(post(durable, activity, other.sign_activity(APP_ID, activity["serviceUrl"])), "endorsement")
        finally:
            served.services.__dict__.pop("bot_validator", None)


# ----- Entra-issued tokens (single-tenant / user-assigned managed identity bots) --------------------------


def keys_fetched(issuer: LocalBotFrameworkIssuer, tenant: str) -> int:
    return issuer.requests[issuer.jwks_path(tenant)]


@pytest.mark.parametrize(
    ("tenant", "v1"),
    [(ENTRA_TENANT, False), (ENTRA_TENANT, True), (FIRST_PARTY_TENANT, False), (FIRST_PARTY_TENANT, True)],
    ids=["bot-tenant-v2", "bot-tenant-v1", "first-party-v2", "first-party-v1"],
)
def test_an_entra_issued_token_of_the_bots_or_a_microsoft_tenant_is_accepted(
    served, durable, issuer, connector, tenant, v1
):
    gate = seed_gate(served, durable)
    activity = action(connector, gate, ANNA)
    response = post(durable, activity, issuer.sign_entra_activity(APP_ID, tenant, v1=v1))  # no serviceurl claim
    assert response.status_code == 200, response.get_body()
    assert "You approved this request." in card_texts(json.loads(response.get_body())["value"])
    (event,) = raised(durable)
    assert vote(event)["voter_id"] == ANNA
    assert keys_fetched(issuer, tenant) >= 1  # the issuing tenant's own key set, on the authority host
    # the SDK answers the calling app: its reply token is scoped to that caller, not the Bot Framework
    assert f"{CHANNEL_SERVICE_APP_ID}/.default" in issuer.scopes_issued


def test_an_entra_issued_token_naming_the_activitys_service_url_is_accepted(served, durable, issuer, connector):
    gate = seed_gate(served, durable)
    activity = action(connector, gate, ANNA)
    token = issuer.sign_entra_activity(APP_ID, ENTRA_TENANT, service_url=activity["serviceUrl"].upper())
    assert post(durable, activity, token).status_code == 200
    assert len(raised(durable)) == 1


def _entra_claims(issuer: LocalBotFrameworkIssuer, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "aud": APP_ID,
        "iss": issuer.issuer(ENTRA_TENANT),
        "tid": ENTRA_TENANT,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("another tenant", "issuer"),
        ("another tenant, v1", "issuer"),
        ("tid not the issuer's", "tenant"),
        ("first-party issuer speaking for the bot's tenant", "tenant"),
        ("no tid", "missing-claim"),
        ("wrong audience", "audience"),
        ("expired", "expired"),
        ("not yet valid", "not-yet-valid"),
        ("forged key", "signature"),
        ("HS256", "algorithm"),
        ("none", "algorithm"),
        ("other service url", "service-url"),
        ("no service url and no calling app", "service-url"),
        ("another cloud's authority", "issuer"),
        ("tenant alias instead of guid", "issuer"),
    ],
)
def test_an_entra_issued_token_outside_the_rule_is_refused(served, durable, issuer, connector, case, reason):
    gate = seed_gate(served, durable)
    activity = action(connector, gate, ANNA)
    sign, url = issuer.sign_entra_activity, activity["serviceUrl"]
    before = keys_fetched(issuer, STRANGER_TENANT)
    token = {
        "another tenant": lambda: sign(APP_ID, STRANGER_TENANT),
        "another tenant, v1": lambda: sign(APP_ID, STRANGER_TENANT, v1=True),
        "tid not the issuer's": lambda: sign(APP_ID, FIRST_PARTY_TENANT, tid=STRANGER_TENANT),
        "first-party issuer speaking for the bot's tenant": lambda: sign(APP_ID, FIRST_PARTY_TENANT, tid=ENTRA_TENANT),
        "no tid": lambda: issuer.sign(_entra_claims(issuer, tid=None)),
        "wrong audience": lambda: sign(str(uuid.uuid4()), ENTRA_TENANT),
        "expired": lambda: sign(APP_ID, ENTRA_TENANT, issued_at=time.time() - 7200, lifetime=600),
        "not yet valid": lambda: sign(APP_ID, ENTRA_TENANT, issued_at=time.time() + 3600),
        "forged key": lambda: sign(APP_ID, ENTRA_TENANT, forged=True),
        "HS256": lambda: jwt.encode(_entra_claims(issuer), "a-shared-secret-of-32-bytes-long!", algorithm="HS256"),
        "none": lambda: jwt.encode(_entra_claims(issuer), None, algorithm="none"),
        "other service url": lambda: sign(APP_ID, ENTRA_TENANT, service_url="https://smba.example.net/teams/"),
        "no service url and no calling app": lambda: sign(APP_ID, FIRST_PARTY_TENANT, extra={"azp": APP_ID}),
        "another cloud's authority": lambda: issuer.sign(
            _entra_claims(issuer, iss=f"https://login.microsoftonline.us/{ENTRA_TENANT}/v2.0", serviceurl=url)
        ),
        "tenant alias instead of guid": lambda: issuer.sign(
            _entra_claims(issuer, iss=f"{issuer.authority_host}/contoso.onmicrosoft.com/v2.0", serviceurl=url)
        ),
    }[case]()
    refused(post(durable, activity, token), reason)
    assert raised(durable) == []
    assert keys_fetched(issuer, STRANGER_TENANT) == before  # a stranger's tenant never makes us call out


def test_endorsements_bind_bot_framework_keys_only(served, durable, connector):
    with LocalBotFrameworkIssuer(endorsements=("webchat",)) as other:
        from gatekeeper.teams.auth import BotTokenValidator

        served.services.__dict__["bot_validator"] = BotTokenValidator(
            APP_ID,
            other.metadata_url,
            tenant_id=ENTRA_TENANT,
            allowed_callers=(CHANNEL_SERVICE_APP_ID,),
            authority_host=other.authority_host,
        )
        try:
            gate = seed_gate(served, durable)
            activity = action(connector, gate, ANNA)
            refused(post(durable, activity, other.sign_activity(APP_ID, activity["serviceUrl"])), "endorsement")
            assert raised(durable) == []
            # the same validator takes the Entra-issued token: Entra key sets carry no endorsements
            entra = other.sign_entra_activity(APP_ID, ENTRA_TENANT)
            assert post(durable, activity, entra).status_code == 200
            assert len(raised(durable)) == 1
        finally:
            served.services.__dict__.pop("bot_validator", None)


def test_without_a_bot_tenant_only_microsoft_tenants_may_sign(served, durable, issuer, connector):
    from gatekeeper.teams.auth import BotTokenValidator

    served.services.__dict__["bot_validator"] = BotTokenValidator(
        APP_ID, issuer.metadata_url, authority_host=issuer.authority_host
    )
    try:
        gate = seed_gate(served, durable)
        activity = action(connector, gate, ANNA)
        refused(post(durable, activity, issuer.sign_entra_activity(APP_ID, ENTRA_TENANT)), "issuer")
        assert post(durable, activity, issuer.sign_entra_activity(APP_ID, FIRST_PARTY_TENANT)).status_code == 200
    finally:
        served.services.__dict__.pop("bot_validator", None)


def test_entra_keys_out_of_reach_is_a_503_not_a_refusal(served, durable, issuer, connector):
    from gatekeeper.teams.auth import BotTokenValidator

    down = "http://127.0.0.1:9"  # discard port: nothing listens
    served.services.__dict__["bot_validator"] = BotTokenValidator(
        APP_ID, issuer.metadata_url, tenant_id=ENTRA_TENANT, authority_host=down, timeout_seconds=1
    )
    try:
        activity = action(connector, seed_gate(served, durable), ANNA)
        claims = _entra_claims(issuer, iss=f"{down}/{ENTRA_TENANT}/v2.0", serviceurl=activity["serviceUrl"])
        started = time.monotonic()
        response = post(durable, activity, issuer.sign(claims))
        assert response.status_code == 503 and response.headers.get("Retry-After")
        assert json.loads(response.get_body())["type"].endswith("/identity-provider-unavailable")
        assert time.monotonic() - started < 2
        assert raised(durable) == []
    finally:
        served.services.__dict__.pop("bot_validator", None)


def test_without_a_bot_app_id_every_activity_is_refused(azurite, tmp_path, durable, issuer, connector):
    env = make_env(azurite.connection_string, tmp_path / "keys", extra_environ=environ(issuer, app_id=None))
    set_services(env.services)
    try:
        activity = action(connector, "gate-x", ANNA)
        refused(post(durable, activity, issuer.sign_activity(APP_ID, activity["serviceUrl"])), "no-bot")
    finally:
        set_services(None)


# ----- hostile input ----------------------------------------------------------------------------------


def test_hostile_bodies_are_refused_before_anything_reads_them(served, durable, issuer, connector):
    token = issuer.sign_activity(APP_ID, connector.url + "/")
    huge = post(durable, b'{"type": "invoke", "x": "' + b"a" * 300_000 + b'"}', token)
    assert huge.status_code == 413
    deep = post(durable, b"[" * 5000 + b"]" * 5000, token)
    assert deep.status_code == 400
    duplicate = post(durable, b'{"type": "invoke", "type": "message"}', token)
    assert duplicate.status_code == 400
    not_json = post(durable, b"\xff\xfe", token)
    assert not_json.status_code == 400
    assert raised(durable) == []


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda a: a["from"].pop("aadObjectId"), "from.aadObjectId"),
        (lambda a: a["value"]["action"]["data"].pop("instance_id"), "value.action.data.instance_id"),
        (lambda a: a["value"]["action"].update(verb="delete"), "value.action.verb"),
        (lambda a: a["channelData"]["tenant"].update(id=STRANGER_TENANT), "channelData.tenant.id"),
        (lambda a: a.update(channelId="webchat"), "channelId"),
    ],
)
def test_a_card_action_with_a_missing_or_wrong_field_is_refused_naming_it(
    served, durable, issuer, connector, mutate, field
):
    gate = seed_gate(served, durable)
    activity = action(connector, gate, ANNA)
    mutate(activity)
    status, body = invoke(durable, issuer, connector, activity)
    # the Universal Actions error answer: HTTP 200 to the Bot Connector, the error in the body
    assert status == 200 and body["statusCode"] == 400 and body["type"] == "application/vnd.microsoft.error"
    assert body["value"]["message"].startswith(field)
    assert raised(durable) == []


def test_other_activities_are_accepted_quietly(served, durable, issuer, connector):
    message = action(connector, "gate-x", ANNA)
    message.update(type="message", text="hello bot")
    message.pop("name")
    message.pop("value")
    response = post(durable, message, issuer.sign_activity(APP_ID, message["serviceUrl"]))
    assert response.status_code == 202
    assert raised(durable) == [] and connector.conversations == {}


def test_an_activity_the_sdk_cannot_read_is_refused_naming_the_field(served, durable, issuer, connector):
    activity = action(connector, "gate-x", ANNA)
    activity["from"] = "anna"
    response = post(durable, activity, issuer.sign_activity(APP_ID, activity["serviceUrl"]))
    assert response.status_code == 400 and json.loads(response.get_body())["field"] == "from"
    assert raised(durable) == []


def test_a_storage_failure_during_a_click_is_a_try_again_card_not_an_error_in_the_chat(
    served, durable, issuer, connector
):
    gate = seed_gate(served, durable)

    class Down:
        def decide(self, *args: Any) -> Any:
            raise ConnectionError("storage down: details nobody in Teams should see")

        view = decide

    activity = action(connector, gate, ANNA)
    claims = served.services.bot_validator.validate(
        "Bearer " + issuer.sign_activity(APP_ID, activity["serviceUrl"]), activity["serviceUrl"]
    )
    status, body = run_on_worker(served.services.bot_host.process(activity, {}, claims, Down()))
    assert status == 200 and body["statusCode"] == 200
    text = card_texts(body["value"])
    assert "try again" in text.lower() and "storage down" not in text
    assert connector.requests == []  # nothing was posted into the chat


def test_a_token_of_the_bots_own_tenant_counts_only_from_a_calling_app_the_deployment_names(
    served, durable, issuer, connector
):
    """Entra issues an app-only token for the bot's app id to any app of the bot's tenant that has a credential:
    such a token could name any approver. The bot's own tenant counts only for GATEKEEPER_BOT_ALLOWED_CALLERS;
    Microsoft's service tenants (which issue only to Microsoft's services) need no naming."""
    from gatekeeper.teams.auth import BotTokenValidator

    insider = str(uuid.uuid4())
    gate = seed_gate(served, durable)
    activity = action(connector, gate, ANNA)
    for v1 in (False, True):
        claim = "appid" if v1 else "azp"
        token = issuer.sign_entra_activity(APP_ID, ENTRA_TENANT, v1=v1, extra={claim: insider})
        refused(post(durable, activity, token), "caller")
    served.services.__dict__["bot_validator"] = BotTokenValidator(
        APP_ID, issuer.metadata_url, tenant_id=ENTRA_TENANT, authority_host=issuer.authority_host
    )
    try:  # nothing named: the bot's own tenant never counts
        refused(post(durable, activity, issuer.sign_entra_activity(APP_ID, ENTRA_TENANT)), "caller")
        assert raised(durable) == []  # (Microsoft's service tenants still count: test_without_a_bot_tenant_...)
    finally:
        served.services.__dict__.pop("bot_validator", None)
