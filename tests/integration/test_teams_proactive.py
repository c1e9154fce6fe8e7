"""The bot's proactive cards against the local Bot Connector and Graph, gates in Azurite: a failure for one
approver is that approver's failed delivery (the others still get the card), and closing a gate never fails
on a card that cannot be updated."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.bot_connector import LocalBotConnector
from devstack.botframework import LocalBotFrameworkIssuer, LocalClientCredential
from devstack.graph import LocalGraphServer
from devstack.server import StaticTokenCredential
from gatekeeper.approvals.chain import ChainPlan
from gatekeeper.contracts.gate import GateStatus, chain_instance_id
from gatekeeper.gates.store import GateRecord, GateStore
from gatekeeper.integrations.graph_notify import make_graph_client
from gatekeeper.ports import Notification
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from gatekeeper.teams.auth import BotTokenValidator
from gatekeeper.teams.install import GraphAppInstaller
from gatekeeper.teams.proactive import CardStore, TeamsCardNotifier

pytestmark = pytest.mark.azurite

APP_ID = "6b5a1f1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
MANIFEST_ID = "0d1c2b3a-4f5e-4a6b-8c7d-9e0f1a2b3c4d"
TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ANNA, PIET = "0000000a-0000-4000-8000-00000000000a", "0000000b-0000-4000-8000-00000000000b"


@pytest.fixture
def setup(azurite, tmp_path) -> Iterator[dict[str, Any]]:
    storage = StorageAccount(connection_string=azurite.connection_string)
    cipher = build_cipher(storage, LocalKeyProvider(str(tmp_path / "keys")))
    tenant = "t" + uuid.uuid4().hex[:12]
    with LocalBotFrameworkIssuer() as issuer, LocalGraphServer("graph-token") as graph:
        issuer.client_secrets[APP_ID] = "secret"
        with LocalBotConnector(lambda token: issuer.verify_bot_token(token, APP_ID)) as connector:
            client, http = make_graph_client(StaticTokenCredential("graph-token"), graph.base_url)
            with GraphAppInstaller(client, MANIFEST_ID, graph.base_url, http_client=http) as installer:
                cards = TeamsCardNotifier(
                    app_id=APP_ID,
                    service_url=connector.url,
                    credential=LocalClientCredential(issuer.token_url, APP_ID, "secret"),
                    storage=storage,
                    cipher=cipher,
                    entra_tenants_for=lambda _t: (TID,),
                    installer=installer,
                )
                yield {
                    "storage": storage,
                    "cipher": cipher,
                    "tenant": tenant,
                    "connector": connector,
                    "graph": graph,
                    "cards": cards,
                    "issuer": issuer,
                }


def seed(setup: dict[str, Any]) -> str:
    now = datetime.now(UTC)
    gate = "gate-" + uuid.uuid4().hex
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "cab", "approvers": [ANNA, PIET], "quorum": 1, "timeout": "PT1H"}]}
    )
    GateStore(setup["storage"], setup["tenant"], setup["cipher"]).save(
        GateRecord(
            instance_id=gate,
            tenant_id=setup["tenant"],
            status=GateStatus.AWAITING_APPROVAL,
            level="L2",
            title="deploy contoso/webshop to production",
            requester=("dev@contoso.com",),
            created_at=now,
            updated_at=now,
            chain_instance_id=chain_instance_id(gate),
            plan=plan,
            stage=0,
            stage_started_at=now,
            deadline=now + timedelta(hours=1),
        )
    )
    return gate


def request(gate: str, *recipients: str) -> Notification:
    return Notification(
        kind="approval_request",
        recipients=recipients,
        title="Approval needed",
        link="https://gatekeeper.contoso.com/api/approvals/" + gate,
        instance_id=gate,
    )


def test_an_approver_whose_app_cannot_be_installed_is_one_failed_delivery(setup):
    gate = seed(setup)
    setup["connector"].not_installed.add(PIET)  # and the app was never uploaded to the tenant catalog
    result = setup["cards"].notify(
        setup["tenant"], request(gate, ANNA, PIET, "group:5f0c7a52-3b8e-4c1d-9a6f-2e4b8d7c1a90")
    )
    assert not result.ok
    delivered = {d.recipient: d for d in result.deliveries}
    assert delivered[ANNA].ok and delivered[ANNA].channel == "teams"
    assert not delivered[PIET].ok and "not installed" in delivered[PIET].detail
    assert [c.user for c in CardStore(setup["storage"], setup["tenant"], setup["cipher"]).of_gate(gate)] == [ANNA]
    assert setup["graph"].installed_apps == {}


def test_other_notifications_are_no_cards(setup):
    note = Notification(kind="info", recipients=(ANNA,), title="FYI")
    result = setup["cards"].notify(setup["tenant"], note)
    assert result.ok and result.deliveries == () and setup["connector"].conversations == {}


def test_closing_a_gate_survives_a_card_that_cannot_be_updated(setup):
    gate = seed(setup)
    assert setup["cards"].notify(setup["tenant"], request(gate, ANNA, PIET)).ok
    store = GateStore(setup["storage"], setup["tenant"], setup["cipher"])
    record = store.load(gate)
    store.save(record.model_copy(update={"status": GateStatus.APPROVED, "decided_at": datetime.now(UTC)}))
    setup["connector"].fail_next(1, 502, path_contains="/activities/")
    setup["cards"].gate_closed(setup["tenant"], gate)  # never raises
    updated = [r for r in setup["connector"].requests if r.method == "PUT"]
    assert sorted(r.status for r in updated) == [200, 502]


def test_a_rotated_signing_key_is_picked_up_without_a_restart(setup):
    issuer = setup["issuer"]
    validator = BotTokenValidator(APP_ID, issuer.metadata_url, cooldown_seconds=0)
    url = "https://smba.trafficmanager.net/emea/"
    assert validator.validate("Bearer " + issuer.sign_activity(APP_ID, url), url)["aud"] == APP_ID
    issuer.rotate(keep_previous=False)
    assert validator.validate("Bearer " + issuer.sign_activity(APP_ID, url), url)["aud"] == APP_ID
    assert issuer.requests["/v1/.well-known/keys"] == 2  # fetched once more, for the new key id only
