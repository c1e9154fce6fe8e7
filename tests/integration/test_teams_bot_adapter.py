"""The bot's host pieces around the Agents SDK (gatekeeper/teams/bot.py) and the route's last resort
(functions/messages.py): a failed turn is raised to the trigger and never posted into the user's chat (the SDK's
default handler would send the exception's text to Teams), the trigger then answers a bare 500 without
internals; every outbound call uses the bot's one identity, for itself only (no on-behalf-of, no agentic
tokens). The real SDK adapter, the local Bot Framework issuer's token endpoint and the local Bot Connector."""

from __future__ import annotations

import json
from typing import Any

import pytest
from microsoft_agents.hosting.core.authorization import ClaimsIdentity

from devstack.botframework import BOT_FRAMEWORK_ISSUER, LocalClientCredential
from gatekeeper.teams.bot import BotHost, CredentialTokenProvider, SingleConnection, _Request
from tests.integration.test_teams_bot import (  # noqa: F401 - the fixtures of the bot's route tests
    ANNA,
    APP_ID,
    BOT_SECRET,
    action,
    connector,
    durable,
    issuer,
    post,
    raised,
    runtime_env,
    served,
)
from tests.support.gatekeeper_env import ENTRA_TENANT
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite


def message_activity(connector: Any) -> dict[str, Any]:
    activity = action(connector, "gate-x", ANNA)
    activity.update(type="message", text="hello bot")
    activity.pop("name")
    activity.pop("value")
    return activity


class FailingAgent:
    async def on_turn(self, context: Any) -> None:
        raise RuntimeError("storage down: details nobody in Teams should see")


def test_a_failed_turn_is_raised_to_the_trigger_and_nothing_is_posted_into_the_chat(issuer, connector):
    host = BotHost(LocalClientCredential(issuer.token_url, APP_ID, BOT_SECRET), APP_ID, ENTRA_TENANT)
    activity = message_activity(connector)
    claims = ClaimsIdentity(
        {"aud": APP_ID, "iss": BOT_FRAMEWORK_ISSUER, "serviceurl": activity["serviceUrl"]},
        authentication_type="Bearer",
    )
    request = _Request(activity, {"Content-Type": "application/json"}, claims)
    assert request.headers == {"Content-Type": "application/json"} and request.get_path_param("any") == ""
    before = len(connector.requests)
    with pytest.raises(RuntimeError, match="storage down"):
        run_on_worker(host.adapter.process_request(request, FailingAgent()))
    assert connector.requests[before:] == []  # no "The bot encountered an error" message with the details


def test_a_failure_the_route_does_not_name_is_a_bare_500_without_internals(served, durable, issuer, connector):
    wrong = LocalClientCredential(issuer.token_url, APP_ID, "not-the-bot-secret")  # the bot's own token refused
    served.services.__dict__["bot_host"], kept = BotHost(wrong, APP_ID, ENTRA_TENANT), served.services.bot_host
    try:
        activity = message_activity(connector)
        response = post(durable, activity, issuer.sign_activity(APP_ID, activity["serviceUrl"]))
        assert response.status_code == 500 and response.mimetype == "application/problem+json"
        body = json.loads(response.get_body())
        assert body["type"].endswith("/internal-error") and "instance" not in body
        assert "401" not in json.dumps(body) and issuer.token_url not in json.dumps(body)
        assert raised(durable) == []
    finally:
        served.services.__dict__["bot_host"] = kept


def test_every_outbound_call_uses_the_bots_one_identity_for_itself_only(issuer):
    credential = LocalClientCredential(issuer.token_url, APP_ID, BOT_SECRET)
    provider = CredentialTokenProvider(credential, APP_ID, ENTRA_TENANT)
    assert (provider.configuration.client_id, provider.configuration.tenant_id) == (APP_ID, ENTRA_TENANT)
    connections = SingleConnection(provider)
    looked_up = [
        connections.get_connection("anything"),
        connections.get_default_connection(),
        connections.get_token_provider(None, "https://smba.example.net/"),
        connections.get_token_provider_from_activity(None, None),
    ]
    assert all(p is provider for p in looked_up)
    assert connections.get_default_connection_configuration() is provider.configuration
    token = run_on_worker(provider.get_access_token("https://api.botframework.com", []))
    assert token and issuer.scopes_issued[-1] == "https://api.botframework.com/.default"
    for refused in (
        lambda: provider.get_token_credential(),
        lambda: run_on_worker(provider.acquire_token_on_behalf_of(["x/.default"], "a-users-assertion")),
        lambda: run_on_worker(provider.get_agentic_application_token("x")),
        lambda: run_on_worker(provider.get_agentic_instance_token("x")),
        lambda: run_on_worker(provider.get_agentic_user_token("x")),
    ):
        with pytest.raises(NotImplementedError):
            refused()
