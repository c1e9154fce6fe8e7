"""The bot's proactive cards (gatekeeper/teams/proactive.py) where tests/integration/test_teams_proactive.py does
not go: nothing is sent for a gate that is not stored, for recipients without an object id, or for a tenant
without an Entra tenant (the bot's own tenant then stands in when configured); approvers named by UPN are found
through the directory (once each, and skipped, not failed, when the directory is down); a refusal other than
"not installed", or "not installed" with no installer, is that approver's failed delivery. The local Bot
Connector, Graph and the Bot Framework token endpoint, gates in Azurite."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from devstack.botframework import LocalClientCredential
from devstack.server import StaticTokenCredential
from gatekeeper.integrations.graph_notify import make_graph_client
from gatekeeper.integrations.graph_users import GraphUserDirectory
from gatekeeper.teams.proactive import CardStore, TeamsCardNotifier
from tests.integration.test_teams_proactive import (  # noqa: F401 - the fixture and helpers of the card tests
    ANNA,
    APP_ID,
    PIET,
    TID,
    request,
    seed,
    setup,
)

pytestmark = pytest.mark.azurite

ANNA_UPN = "anna@contoso.com"


def notifier(setup: dict[str, Any], **changes: Any) -> TeamsCardNotifier:
    """The card notifier of `setup`, without an installer unless given, with `changes`."""
    arguments: dict[str, Any] = {
        "app_id": APP_ID,
        "service_url": setup["connector"].url,
        "credential": LocalClientCredential(setup["issuer"].token_url, APP_ID, "secret"),
        "storage": setup["storage"],
        "cipher": setup["cipher"],
        "entra_tenants_for": lambda _t: (TID,),
        **changes,
    }
    return TeamsCardNotifier(**arguments)


def directory(setup: dict[str, Any]) -> GraphUserDirectory:
    setup["graph"].users[ANNA] = {"userPrincipalName": ANNA_UPN, "mail": ANNA_UPN}
    client, http = make_graph_client(StaticTokenCredential("graph-token"), setup["graph"].base_url)
    return GraphUserDirectory(client, http_client=http)


def sent_to(setup: dict[str, Any], gate: str) -> list[str]:
    return [c.user for c in CardStore(setup["storage"], setup["tenant"], setup["cipher"]).of_gate(gate)]


def test_the_notifier_shows_its_app_id_but_never_its_credential(setup):
    assert repr(setup["cards"]) == f"TeamsCardNotifier(app_id={APP_ID!r})"


def test_a_gate_that_is_not_stored_gets_no_card_and_is_a_failed_delivery(setup):
    result = setup["cards"].notify(setup["tenant"], request("gate-never-stored", ANNA))
    assert not result.ok and result.detail == "teams: the gate is not stored"
    assert setup["connector"].conversations == {}


def test_recipients_without_an_object_id_get_no_card_and_nothing_fails(setup):
    gate = seed(setup)
    result = setup["cards"].notify(
        setup["tenant"], request(gate, ANNA_UPN, "group:5f0c7a52-3b8e-4c1d-9a6f-2e4b8d7c1a90")
    )
    assert result.ok and result.detail == "teams: no recipient named by object id" and result.deliveries == ()
    assert setup["connector"].conversations == {}


def test_a_tenant_without_an_entra_tenant_gets_no_card_unless_the_bot_has_its_own(setup):
    gate = seed(setup)
    nowhere = notifier(setup, entra_tenants_for=lambda _t: ())
    result = nowhere.notify(setup["tenant"], request(gate, ANNA))
    assert not result.ok and result.detail == "teams: the tenant has no Entra tenant id"
    assert setup["connector"].conversations == {}
    bots_own = notifier(setup, entra_tenants_for=lambda _t: (), bot_tenant_id=TID)
    assert bots_own.notify(setup["tenant"], request(gate, ANNA)).ok
    (conversation,) = setup["connector"].conversations.values()
    assert conversation["tenantId"] == TID


def test_an_approver_named_by_upn_gets_one_card_through_the_directory(setup):
    gate = seed(setup)
    users = directory(setup)
    try:
        cards = notifier(setup, directory=users)
        result = cards.notify(setup["tenant"], request(gate, ANNA_UPN, ANNA))  # the same person twice
        assert result.ok and [d.recipient for d in result.deliveries] == [ANNA]
        assert sent_to(setup, gate) == [ANNA]
    finally:
        users.close()


def test_with_the_directory_down_an_approver_named_by_upn_is_skipped_and_logged(
    setup, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="gatekeeper.teams")
    gate = seed(setup)
    users = directory(setup)
    try:
        setup["graph"].fail_next(5, 503, path_contains="/users/")
        cards = notifier(setup, directory=users)
        result = cards.notify(setup["tenant"], request(gate, ANNA_UPN, PIET))
        assert result.ok and [d.recipient for d in result.deliveries] == [PIET]  # Piet is not held up
        assert "could not resolve an approver's UPN" in caplog.text and ANNA_UPN not in caplog.text
    finally:
        users.close()


def test_not_installed_without_an_installer_is_that_approvers_failed_delivery(setup):
    gate = seed(setup)
    setup["connector"].not_installed.add(PIET)
    result = notifier(setup).notify(setup["tenant"], request(gate, ANNA, PIET))
    delivered = {d.recipient: d for d in result.deliveries}
    assert delivered[ANNA].ok and not delivered[PIET].ok and delivered[PIET].status_code == 403
    assert setup["graph"].installed_apps == {}


def test_another_refusal_is_a_failed_delivery_and_never_triggers_an_install(setup):
    gate = seed(setup)
    setup["connector"].fail_next(1, 500, path_contains="/v3/conversations")
    result = setup["cards"].notify(setup["tenant"], request(gate, PIET))
    (delivery,) = result.deliveries
    assert not delivery.ok and delivery.status_code == 500 and "not installed" not in delivery.detail
    assert setup["graph"].installed_apps == {} and sent_to(setup, gate) == []
