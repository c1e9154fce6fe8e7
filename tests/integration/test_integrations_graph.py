"""GraphNotifier with the real msgraph-sdk (kiota middleware included) against the local Graph stand-in:
Teams activity-feed notifications, the team-scoped form for groups, the mail fallback and 429 handling; and
checkMemberGroups for approvers whose token lists too many groups."""

from __future__ import annotations

import logging

import pytest

from devstack.graph import LocalGraphServer
from devstack.server import StaticTokenCredential
from gatekeeper.integrations.graph_groups import GraphGroupMembership
from gatekeeper.integrations.graph_notify import GraphNotifier, make_graph_client
from gatekeeper.integrations.notify import ACTIVITY_TYPES, Notification, chain_id
from gatekeeper.security.groups import GroupLookupUnavailable

TOKEN = "graph-access-token-for-tests-0123456789"
ALICE = "0f9a1c2e-1111-4a4a-9b9b-000000000001"  # has the Teams app
BOB = "0f9a1c2e-2222-4a4a-9b9b-000000000002"  # no Teams app: falls back to mail
OPS_TEAM = "7d3e5f60-3333-4c4c-8d8d-000000000003"
NO_APP_TEAM = "7d3e5f60-4444-4c4c-8d8d-000000000004"
APPROVAL_LINK = "https://gatekeeper.contoso.example/approve/gate-123?t=decision-token"


@pytest.fixture
def graph():
    server = LocalGraphServer(
        TOKEN,
        users={
            ALICE: {"mail": "alice@contoso.example", "userPrincipalName": "alice@contoso.example"},
            BOB: {"mail": None, "userPrincipalName": "bob@contoso.example"},
        },
        groups={OPS_TEAM: {"mail": "ops@contoso.example"}, NO_APP_TEAM: {"mail": "noapp@contoso.example"}},
        not_installed={BOB, NO_APP_TEAM, "carol@contoso.example"},
    )
    with server:
        yield server


@pytest.fixture
def credential() -> StaticTokenCredential:
    return StaticTokenCredential(TOKEN)


@pytest.fixture
def notifier(graph, credential):
    client, http = make_graph_client(credential, graph.base_url)
    with GraphNotifier(client, "teams-app-0001", "gatekeeper@contoso.example", http_client=http) as notifier:
        yield notifier


def approval(*recipients: str) -> Notification:
    return Notification(
        kind="approval_request",
        recipients=recipients,
        title="Deploy web to production",
        text="contoso/web run 9001 waits for your approval (L2).",
        link=APPROVAL_LINK,
        instance_id="gate-123",
    )


def test_an_approval_request_reaches_the_users_activity_feed(notifier, graph, credential):
    result = notifier.notify("contoso", approval(ALICE))

    assert result.ok and [d.channel for d in result.deliveries] == ["teams"]
    [sent] = graph.activity_notifications
    assert (sent["scope"], sent["target"]) == ("user", ALICE)
    body = sent["body"]
    assert body["topic"] == {"source": "text", "value": "Deploy web to production", "webUrl": APPROVAL_LINK}
    assert body["activityType"] == ACTIVITY_TYPES["approval_request"] == "approvalRequired"
    assert body["previewText"]["content"].startswith("contoso/web run 9001")
    assert body["templateParameters"] == [{"name": "title", "value": "Deploy web to production"}]
    assert body["teamsAppId"] == "teams-app-0001"
    assert body["chainId"] == chain_id(approval(ALICE))
    [request] = graph.requests_to("/teamwork/sendActivityNotification")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert credential.scopes_requested[0] == ("https://graph.microsoft.com/.default",)
    assert graph.mails == []


def test_throttling_429_is_retried_by_the_sdk_after_retry_after(notifier, graph):
    graph.throttle_next(1, retry_after=1, path_contains="/sendActivityNotification")
    result = notifier.notify("contoso", approval(ALICE))

    assert result.ok and result.deliveries[0].channel == "teams"
    calls = graph.requests_to("/teamwork/sendActivityNotification")
    assert [c.status for c in calls] == [429, 204]
    assert "retry-attempt" not in calls[0].headers and calls[1].headers["retry-attempt"] == "1"
    assert len(graph.activity_notifications) == 1


def test_mail_is_the_fallback_when_the_teams_app_is_missing(notifier, graph):
    result = notifier.notify("contoso", approval(BOB))

    [delivery] = result.deliveries
    assert result.ok and delivery.channel == "mail" and delivery.ok
    assert "403" in delivery.detail and "mail sent instead" in delivery.detail
    [lookup] = graph.requests_to(f"/users/{BOB}", method="GET")
    assert lookup.query["$select"] == ["mail,userPrincipalName"]
    [mail] = graph.mails
    assert mail["sender"] == "gatekeeper@contoso.example"
    assert mail["to"] == ["bob@contoso.example"]  # no mail attribute: the UPN
    assert mail["message"]["subject"] == "[Gatekeeper] Approval needed: Deploy web to production"
    assert APPROVAL_LINK.replace("&", "&amp;") in mail["message"]["body"]["content"]
    assert mail["message"]["body"]["contentType"].lower() == "html"


def test_a_upn_recipient_is_mailed_directly(notifier, graph):
    result = notifier.notify("contoso", approval("carol@contoso.example"))
    assert result.ok and result.deliveries[0].channel == "mail"
    assert graph.requests_to("/users/carol@contoso.example", method="GET") == []
    assert graph.mails[0]["to"] == ["carol@contoso.example"]


def test_a_group_is_reached_through_its_team(notifier, graph):
    result = notifier.notify("contoso", approval(f"group:{OPS_TEAM}"))
    assert result.ok and result.deliveries[0].channel == "teams"
    [sent] = graph.activity_notifications
    assert (sent["scope"], sent["target"]) == ("team", OPS_TEAM)
    assert sent["body"]["recipient"] == {
        "@odata.type": "#microsoft.graph.teamMembersNotificationRecipient",
        "teamId": OPS_TEAM,
    }


def test_a_group_without_the_app_gets_mail_at_the_group_address(notifier, graph):
    result = notifier.notify("contoso", approval(f"group:{NO_APP_TEAM}"))
    assert result.ok and result.deliveries[0].channel == "mail"
    assert graph.mails[0]["to"] == ["noapp@contoso.example"]


def test_each_recipient_gets_its_own_outcome(notifier, graph):
    result = notifier.notify("contoso", approval(ALICE, BOB, f"group:{OPS_TEAM}"))
    assert result.ok
    assert [(d.recipient, d.channel) for d in result.deliveries] == [
        (ALICE, "teams"),
        (BOB, "mail"),
        (f"group:{OPS_TEAM}", "teams"),
    ]


def test_without_a_mail_sender_a_failure_is_reported_not_raised(graph, credential, caplog):
    caplog.set_level(logging.DEBUG)
    client, http = make_graph_client(credential, graph.base_url)
    with GraphNotifier(client, None, None, http_client=http) as notifier:
        result = notifier.notify("contoso", approval(ALICE, BOB))
    assert not result.ok and "not reached" in result.detail and BOB in result.detail
    assert [d.ok for d in result.deliveries] == [True, False]
    assert "GATEKEEPER_MAIL_SENDER" in result.deliveries[1].detail
    assert TOKEN not in caplog.text and TOKEN not in repr(result) and TOKEN not in repr(credential)


def test_a_wrong_token_fails_both_channels_cleanly(graph):
    client, http = make_graph_client(StaticTokenCredential("not-the-token"), graph.base_url)
    with GraphNotifier(client, None, "gatekeeper@contoso.example", http_client=http) as notifier:
        result = notifier.notify("contoso", approval(ALICE))
    assert not result.ok
    [delivery] = result.deliveries
    assert delivery.status_code == 401 and "InvalidAuthenticationToken" in delivery.detail


def test_info_without_a_link_uses_the_portal_url(graph, credential):
    client, http = make_graph_client(credential, graph.base_url)
    with GraphNotifier(
        client, None, None, portal_url="https://gatekeeper.contoso.example/", http_client=http
    ) as notifier:
        result = notifier.notify(
            "contoso", Notification(kind="info", recipients=(ALICE,), title="Deployed web to staging (L1)")
        )
    assert result.ok
    body = graph.activity_notifications[0]["body"]
    assert body["topic"]["webUrl"] == "https://gatekeeper.contoso.example/"
    assert body["activityType"] == "gateInfo" and "chainId" not in body


# ----- checkMemberGroups: approvers whose token lists too many groups -----------------------------------------

DIRECTORY = "72f988bf-0000-4000-8000-00000000d1d1"


def test_group_membership_is_asked_20_ids_at_a_time_and_only_asked_ids_count(credential):
    groups = [f"7d3e5f60-{i:04d}-4c4c-8d8d-000000000000" for i in range(25)]
    with LocalGraphServer(TOKEN, memberships={ALICE: {groups[3], groups[21], OPS_TEAM}}) as server:
        client, http = make_graph_client(credential, server.base_url)
        with GraphGroupMembership(client, DIRECTORY, http_client=http) as lookup:
            assert lookup.member_groups(DIRECTORY, ALICE, [g.upper() for g in groups]) == {groups[3], groups[21]}
            assert [len(call["group_ids"]) for call in server.member_checks] == [20, 5]
            assert lookup.member_groups(DIRECTORY, ALICE, []) == frozenset()
            assert lookup.serves(DIRECTORY.upper()) and not lookup.serves("another-directory")


@pytest.mark.parametrize(("status", "user"), [(None, "0f9a1c2e-9999-4a4a-9b9b-000000000009"), (500, ALICE)])
def test_an_unknown_user_or_a_failing_graph_is_unavailable_not_an_empty_answer(credential, status, user):
    with LocalGraphServer(TOKEN, memberships={ALICE: {OPS_TEAM}}) as server:
        if status:
            server.fail_next(1, status, path_contains="/checkMemberGroups")
        client, http = make_graph_client(credential, server.base_url)
        with GraphGroupMembership(client, DIRECTORY, http_client=http) as lookup:
            with pytest.raises(GroupLookupUnavailable, match="checkMemberGroups failed"):
                lookup.member_groups(DIRECTORY, user, [OPS_TEAM])
            with pytest.raises(GroupLookupUnavailable, match="not the directory"):
                lookup.member_groups("another-directory", ALICE, [OPS_TEAM])


def test_a_wrong_graph_token_is_unavailable(graph):
    client, http = make_graph_client(StaticTokenCredential("not-the-token"), graph.base_url)
    with (
        GraphGroupMembership(client, DIRECTORY, http_client=http) as lookup,
        pytest.raises(GroupLookupUnavailable, match="401"),
    ):
        lookup.member_groups(DIRECTORY, ALICE, [OPS_TEAM])


def test_ids_that_are_not_object_ids_are_not_sent_and_name_no_membership(credential):
    with LocalGraphServer(TOKEN, memberships={ALICE: {OPS_TEAM}}) as server:
        client, http = make_graph_client(credential, server.base_url)
        with GraphGroupMembership(client, DIRECTORY, http_client=http) as lookup:
            assert lookup.member_groups(DIRECTORY, ALICE, ["ops-team", OPS_TEAM]) == {OPS_TEAM}
            assert lookup.member_groups(DIRECTORY, ALICE, ["ops-team"]) == frozenset()
            assert [call["group_ids"] for call in server.member_checks] == [[OPS_TEAM]]
