"""The local outbox notifier, the notification model's validation and the notifier factory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from gatekeeper.integrations.notify import Notification, parse_recipient
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.services import build_notifier
from gatekeeper.settings import Settings
from gatekeeper.store.tables import InvalidTenantId

LINK = "https://gatekeeper.contoso.example/approve/gate-1"


def test_each_notification_is_one_file_with_the_graph_requests_it_stands_for(tmp_path):
    outbox = OutboxNotifier(tmp_path, teams_app_id="teams-app-1")
    note = Notification(
        kind="approval_request",
        recipients=("alice@contoso.example", "group:7d3e5f60-3333-4c4c-8d8d-000000000003"),
        title="Deploy web",
        text="L2",
        link=LINK,
        instance_id="gate-1",
    )
    result = outbox.notify("contoso", note)

    assert result.ok and result.path and [d.channel for d in result.deliveries] == ["outbox", "outbox"]
    record = json.loads(Path(result.path).read_text(encoding="utf-8"))
    assert record["tenant_id"] == "contoso"
    assert record["notification"]["title"] == "Deploy web"
    user, group = record["graph_requests"]
    assert user["teams"]["path"] == "/users/alice@contoso.example/teamwork/sendActivityNotification"
    assert user["teams"]["body"]["topic"]["webUrl"] == LINK
    assert user["teams"]["body"]["teamsAppId"] == "teams-app-1"
    assert group["teams"]["path"].startswith("/teams/7d3e5f60-3333")
    assert group["teams"]["body"]["recipient"]["teamId"] == "7d3e5f60-3333-4c4c-8d8d-000000000003"
    assert user["mail_fallback"]["body"]["message"]["subject"].startswith("[Gatekeeper] Approval needed")


def test_files_are_kept_per_tenant_in_order(tmp_path):
    outbox = OutboxNotifier(tmp_path)
    for title in ("first", "second", "third"):
        outbox.notify("contoso", Notification(kind="info", recipients=("alice@contoso.example",), title=title))
    outbox.notify("fabrikam", Notification(kind="alert", recipients=("bob@fabrikam.example",), title="other"))
    assert [r["notification"]["title"] for r in outbox.read_all("contoso")] == ["first", "second", "third"]
    assert len(outbox.read_all()) == 4
    assert list(tmp_path.rglob("*.tmp")) == []


def test_the_tenant_id_cannot_escape_the_outbox(tmp_path):
    with pytest.raises(InvalidTenantId):
        OutboxNotifier(tmp_path).notify("../etc", Notification(kind="info", recipients=("a@b.example",), title="x"))


@pytest.mark.parametrize(
    "recipients, field",
    [
        (("alice@contoso.example", "not a user"), "recipients[1]"),
        (("group:ops",), "recipients[0]"),
        ((), "recipients"),
    ],
)
def test_bad_recipients_are_named(recipients, field):
    with pytest.raises(ValidationError) as info:
        Notification(kind="info", recipients=recipients, title="x")
    assert field in str(info.value)


def test_an_approval_request_needs_its_link():
    with pytest.raises(ValidationError, match="link"):
        Notification(kind="approval_request", recipients=("alice@contoso.example",), title="x")
    with pytest.raises(ValidationError, match="link"):
        Notification(kind="info", recipients=("alice@contoso.example",), title="x", link="javascript:alert(1)")


def test_recipient_forms():
    assert parse_recipient("GROUP:7D3E5F60-3333-4C4C-8D8D-000000000003").kind == "group"
    assert parse_recipient("0F9A1C2E-1111-4A4A-9B9B-000000000001").id == "0f9a1c2e-1111-4a4a-9b9b-000000000001"
    assert parse_recipient(" alice@contoso.example ").id == "alice@contoso.example"


def test_the_factory_builds_the_outbox_from_settings(tmp_path):
    notifier = build_notifier(
        Settings.from_environ(
            {
                "GATEKEEPER_NOTIFY_MODE": "outbox",
                "GATEKEEPER_OUTBOX_DIR": str(tmp_path),
                "GATEKEEPER_APPROVAL_BASE_URL": "https://gk.contoso.example/",
            }
        )
    )
    assert isinstance(notifier, OutboxNotifier)
    result = notifier.notify(
        "contoso", Notification(kind="alert", recipients=("ops@contoso.example",), title="Callback failed")
    )
    record = json.loads(Path(result.path).read_text(encoding="utf-8"))
    assert record["graph_requests"][0]["teams"]["body"]["topic"]["webUrl"] == "https://gk.contoso.example/"
    with pytest.raises(ValueError, match="GATEKEEPER_NOTIFY_MODE"):
        build_notifier(Settings.from_environ({"GATEKEEPER_NOTIFY_MODE": "pigeon"}))
    with pytest.raises(ValueError, match="credential"):
        build_notifier(Settings.from_environ({"GATEKEEPER_NOTIFY_MODE": "graph"}))
