"""The bot's host for `POST /api/messages`: the Microsoft 365 Agents SDK, fed an authenticated activity.

The trigger bounds and parses the body and `gatekeeper.teams.auth` verifies the Bot Connector's token; the
verified claims become the SDK's `ClaimsIdentity` and the SDK takes over: its activity model, its adapter
(`HttpAdapterBase`: turn context, connector client, invoke response), its `ActivityHandler` routing
`adaptiveCard/action` invokes to `on_adaptive_card_invoke`, whose answer (the card, `gatekeeper.teams.invoke`)
the SDK returns as the invoke response. Outbound calls (connector, token service) authenticate with the
app's Azure credential (`CredentialTokenProvider`: the user-assigned managed identity in Azure).

Imported on the first request of /api/messages only: the SDK is heavy, and no other route needs it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from microsoft_agents.activity import Activity, AdaptiveCardInvokeResponse, AdaptiveCardInvokeValue, TurnContextProtocol
from microsoft_agents.hosting.core import ActivityHandler
from microsoft_agents.hosting.core._http_adapter_base import HttpAdapterBase
from microsoft_agents.hosting.core.authorization import AgentAuthConfiguration, ClaimsIdentity
from microsoft_agents.hosting.core.rest_channel_service_client_factory import RestChannelServiceClientFactory
from pydantic import ValidationError

from gatekeeper.errors import GatekeeperError, MalformedInput
from gatekeeper.failures import as_error
from gatekeeper.teams.cards import CARD_CONTENT_TYPE, refusal_card
from gatekeeper.teams.invoke import Decisions, FollowUps, answer, parse_card_action

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from gatekeeper.security.requester import UserDirectory

BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
log = logging.getLogger("gatekeeper.teams")


class CredentialTokenProvider:
    """The SDK's `AccessTokenProviderBase` over an Azure `TokenCredential` (the managed identity in Azure):
    the bot's own token for the Bot Connector and the token service."""

    def __init__(self, credential: TokenCredential, app_id: str, tenant_id: str | None) -> None:
        self._credential = credential
        self._configuration = AgentAuthConfiguration(client_id=app_id, tenant_id=tenant_id)

    @property
    def configuration(self) -> AgentAuthConfiguration:
        return self._configuration

    async def get_access_token(self, resource_url: str, scopes: list[str], force_refresh: bool = False) -> str:
        scope = scopes[0] if scopes else f"{resource_url.rstrip('/')}/.default"
        token = await asyncio.to_thread(self._credential.get_token, scope)
        return token.token

    def get_token_credential(self) -> Any:
        raise NotImplementedError("the bot uses get_access_token")

    async def acquire_token_on_behalf_of(self, scopes: list[str], user_assertion: str) -> str:
        raise NotImplementedError("the bot acts for itself, never on behalf of a user")

    async def get_agentic_application_token(self, *args: Any, **kwargs: Any) -> str | None:
        raise NotImplementedError("not an agentic app")

    async def get_agentic_instance_token(self, *args: Any, **kwargs: Any) -> tuple[str, str]:
        raise NotImplementedError("not an agentic app")

    async def get_agentic_user_token(self, *args: Any, **kwargs: Any) -> str | None:
        raise NotImplementedError("not an agentic app")


class SingleConnection:
    """The SDK's `Connections`: the bot has one identity for every outbound call."""

    def __init__(self, provider: CredentialTokenProvider) -> None:
        self._provider = provider

    def get_connection(self, connection_name: str) -> CredentialTokenProvider:
        return self._provider

    def get_default_connection(self) -> CredentialTokenProvider:
        return self._provider

    def get_token_provider(self, claims_identity: Any, service_url: str) -> CredentialTokenProvider:
        return self._provider

    def get_token_provider_from_activity(self, claims_identity: Any, activity: Any) -> CredentialTokenProvider:
        return self._provider

    def get_default_connection_configuration(self) -> AgentAuthConfiguration:
        return self._provider.configuration


class FunctionsAdapter(HttpAdapterBase):
    """The SDK's HTTP adapter for an Azure Functions request (the SDK ships aiohttp and FastAPI ones).

    A failed turn is raised to the trigger (which answers it as every route does: 503 with Retry-After for a
    dependency, 500 without internals otherwise), never posted into the user's chat: the SDK's default
    handler would send the exception's text to Teams."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

        async def raise_turn_error(context: TurnContextProtocol[Any], error: Exception) -> None:
            log.warning("bot turn failed: %s", type(error).__name__)
            raise error

        self.on_turn_error = raise_turn_error


class _Request:
    """The SDK's `HttpRequestProtocol` over an already bounded, parsed and authenticated request."""

    def __init__(self, document: dict[str, Any], headers: Mapping[str, str], claims: ClaimsIdentity) -> None:
        self._document = document
        self._headers = headers
        self._claims = claims

    @property
    def method(self) -> str:
        return "POST"

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    async def json(self) -> dict[str, Any]:
        return self._document

    def get_claims_identity(self) -> ClaimsIdentity:
        return self._claims

    def get_path_param(self, name: str) -> str:
        return ""


class ApprovalBot(ActivityHandler):
    """Answers card actions (approve, reject, refresh) with a card; every other activity is accepted quietly
    (installing the app, a message to the bot)."""

    def __init__(
        self,
        decisions: Decisions,
        document: Mapping[str, Any],
        directory: UserDirectory | None = None,
        followups: FollowUps | None = None,
    ) -> None:
        self._decisions = decisions
        self._document = document
        self._directory = directory
        self._followups = followups

    async def on_adaptive_card_invoke(
        self, turn_context: TurnContextProtocol[Any], invoke_value: AdaptiveCardInvokeValue
    ) -> AdaptiveCardInvokeResponse:
        try:
            action = parse_card_action(self._document)
        except GatekeeperError as problem:
            return AdaptiveCardInvokeResponse(
                status_code=400,
                type="application/vnd.microsoft.error",
                value={"code": "BadRequest", "message": f"{problem.field or 'activity'}: {problem.detail}"},
            )
        try:
            card = await asyncio.to_thread(answer, self._decisions, action, self._directory, self._followups)
        except Exception as exc:  # storage or the directory failed in a way the decision service did not name
            log.warning("card action failed: %s", type(exc).__name__)
            failure = as_error(exc) or GatekeeperError("Your action could not be processed; try again in a minute.")
            card = refusal_card(failure.title, failure.detail or "Try again in a minute.")
        return AdaptiveCardInvokeResponse(status_code=200, type=CARD_CONTENT_TYPE, value=card)


class BotHost:
    """One per process: the adapter (and its connector factory) is built once, the bot per request."""

    def __init__(self, credential: TokenCredential, app_id: str, tenant_id: str | None) -> None:
        provider = CredentialTokenProvider(credential, app_id, tenant_id)
        self.adapter = FunctionsAdapter(
            channel_service_client_factory=RestChannelServiceClientFactory(SingleConnection(provider))
        )

    async def process(
        self,
        document: dict[str, Any],
        headers: Mapping[str, str],
        claims: Mapping[str, Any],
        decisions: Decisions,
        directory: UserDirectory | None = None,
        followups: FollowUps | None = None,
    ) -> tuple[int, Any]:
        """(status, JSON body or None) for an authenticated activity; `directory` names voters by UPN,
        `followups` takes L1 acknowledgements / rollback flags and L3 "done"."""
        try:  # the SDK reads the activity with its model: refuse what it cannot read, naming the field
            Activity.model_validate(document)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "activity"
            raise MalformedInput(f"{field}: {first['msg']}", field=field) from None
        identity = ClaimsIdentity(dict(claims), authentication_type="Bearer")
        response = await self.adapter.process_request(
            _Request(document, headers, identity), ApprovalBot(decisions, document, directory, followups)
        )
        return int(response.status_code), response.body
