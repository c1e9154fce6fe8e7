"""The demo's Teams: the bot's local Bot Framework token service, Bot Connector and Graph, the real bot host
(Agents SDK) and the card channel. An approver's click is the `adaptiveCard/action` invoke a Teams client
sends, signed by the local issuer as the Bot Connector signs it, and handled as /api/messages handles it."""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.bot_connector import LocalBotConnector
from devstack.botframework import LocalBotFrameworkIssuer, LocalClientCredential, card_action_activity
from devstack.graph import LocalGraphServer
from devstack.server import StaticTokenCredential
from gatekeeper.gates.decisions import DecisionService
from gatekeeper.integrations.graph_notify import make_graph_client
from gatekeeper.integrations.graph_users import GraphUserDirectory
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.tables import StorageAccount
from gatekeeper.teams.auth import BotTokenValidator
from gatekeeper.teams.bot import BotHost
from gatekeeper.teams.install import GraphAppInstaller
from gatekeeper.teams.proactive import TeamsCardNotifier

BOT_APP_ID = "6b5a1f1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
TEAMS_APP_ID = "0d1c2b3a-4f5e-4a6b-8c7d-9e0f1a2b3c4d"  # the app package's manifest id
CATALOG_ID = "e5f6a7b8-0000-4000-8000-00000000cafe"
BOT_SECRET = "demo-bot-secret"  # noqa: S105 - the local token endpoint's demo client secret
GRAPH_TOKEN = "demo-graph-token"  # noqa: S105 - the local Graph's demo bearer token


@dataclass
class DemoTeams:
    issuer: LocalBotFrameworkIssuer
    connector: LocalBotConnector
    graph: LocalGraphServer
    directory: GraphUserDirectory
    cards: TeamsCardNotifier
    host: BotHost
    validator: BotTokenValidator
    entra_tenant: str

    def press(self, decisions: DecisionService, gate: str, oid: str, name: str, verb: str) -> tuple[int, dict]:
        """`name` presses `verb` on the card in Teams; the bot's answer (HTTP status, the card shown)."""
        activity = card_action_activity(
            service_url=self.connector.url + "/",
            app_id=BOT_APP_ID,
            user_oid=oid,
            tenant_id=self.entra_tenant,
            verb=verb,
            instance_id=gate,
            name=name,
        )
        token = self.issuer.sign_activity(BOT_APP_ID, activity["serviceUrl"])
        headers = {"Authorization": f"Bearer {token}"}
        claims = self.validator.validate(headers["Authorization"], activity["serviceUrl"])
        status, body = asyncio.run(self.host.process(activity, headers, claims, decisions, self.directory))
        return status, body["value"]

    def sent(self) -> list[str]:
        """One line per chat: who has the card and what it shows now."""
        lines = []
        for conversation, created in self.connector.conversations.items():
            user = created["members"][0]["id"]
            who = str(self.graph.users.get(user, {}).get("userPrincipalName", user)).split("@")[0]
            for card in self.connector.cards(conversation):
                if '"verb"' in json.dumps(card.get("actions", [])):
                    lines.append(f"Teams chat with {who}: the card, with Approve / Reject")
                    continue
                texts = [re.sub(r"\\(.)", r"\1", t) for t in _texts(card)]
                outcome = next((t for t in texts if t.startswith("Decided")), "read-only")
                lines.append(f"Teams chat with {who}: the card is now the read-only summary: {outcome}")
        return lines


def _texts(card: Any) -> list[str]:
    if isinstance(card, dict):
        own = [card["text"]] if isinstance(card.get("text"), str) else []
        return own + [t for v in card.values() if isinstance(v, dict | list) for t in _texts(v)]
    if isinstance(card, list):
        return [t for v in card for t in _texts(v)]
    return []


def start_teams(
    stack: ExitStack,
    *,
    users: dict[str, str],
    storage: StorageAccount,
    cipher: EnvelopeCipher,
    entra_tenant: str,
    base_url: str,
    not_installed: tuple[str, ...] = (),
) -> DemoTeams:
    """Start the local Teams side for `users` (UPN -> object id); `not_installed` lack the app at first."""
    issuer = stack.enter_context(LocalBotFrameworkIssuer())
    issuer.client_secrets[BOT_APP_ID] = BOT_SECRET
    connector = stack.enter_context(LocalBotConnector(lambda token: issuer.verify_bot_token(token, BOT_APP_ID)))
    connector.not_installed.update(not_installed)
    graph = stack.enter_context(
        LocalGraphServer(
            GRAPH_TOKEN, users={oid: {"userPrincipalName": upn, "mail": upn} for upn, oid in users.items()}
        )
    )
    graph.teams_apps[TEAMS_APP_ID] = CATALOG_ID
    graph.on_install = connector.install
    client, http = make_graph_client(StaticTokenCredential(GRAPH_TOKEN), graph.base_url)
    installer = stack.enter_context(GraphAppInstaller(client, TEAMS_APP_ID, graph.base_url, http_client=http))
    directory_client, directory_http = make_graph_client(StaticTokenCredential(GRAPH_TOKEN), graph.base_url)
    directory = stack.enter_context(GraphUserDirectory(directory_client, http_client=directory_http))
    credential = LocalClientCredential(issuer.token_url, BOT_APP_ID, BOT_SECRET)
    cards = TeamsCardNotifier(
        app_id=BOT_APP_ID,
        service_url=connector.url + "/",
        credential=credential,
        storage=storage,
        cipher=cipher,
        entra_tenants_for=lambda _tenant: (entra_tenant,),
        installer=installer,
        base_url=base_url,
        directory=directory,
    )
    return DemoTeams(
        issuer,
        connector,
        graph,
        directory,
        cards,
        BotHost(credential, BOT_APP_ID, entra_tenant),
        BotTokenValidator(BOT_APP_ID, issuer.metadata_url),
        entra_tenant,
    )


def write_card(path: Path, card: dict[str, Any]) -> None:
    path.write_text(json.dumps(card, indent=2) + "\n")
