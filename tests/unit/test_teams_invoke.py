"""Card actions as Teams sends them, read into a voter, a tenant, a gate and a verb (pure), and the fan-out's
"the gate is closed" signal reaching only the channels that show live state."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.botframework import card_action_activity
from gatekeeper.errors import InvalidInput
from gatekeeper.integrations.notify import FanOutNotifier
from gatekeeper.ports import GateClosedListener, Notification, NotificationResult
from gatekeeper.teams.invoke import parse_card_action, principal_of

ANNA = "0000000a-0000-4000-8000-00000000000a"
TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def activity(**changes: Any) -> dict[str, Any]:
    base = card_action_activity(
        service_url="https://smba.trafficmanager.net/emea/",
        app_id="6b5a1f1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
        user_oid=ANNA.upper(),
        tenant_id=TID,
        verb="reject",
        instance_id="gate-1",
        inputs={"reject_comment": "  not in the change window  "},
        name="Anna",
    )
    base.update(changes)
    return base


def test_a_card_action_names_the_voter_the_tenant_the_gate_and_the_verb():
    action = parse_card_action(activity())
    assert (action.verb, action.instance_id, action.voter_oid, action.tenant_id) == ("reject", "gate-1", ANNA, TID)
    assert action.comment == "not in the change window" and action.upn is None
    principal = principal_of(action)
    assert (
        principal.auth == "teams" and principal.oid == ANNA and principal.tid == TID and principal.groups == frozenset()
    )


def test_the_tenant_may_come_from_either_field_but_they_must_agree():
    only_conversation = activity(channelData={})
    assert parse_card_action(only_conversation).tenant_id == TID
    no_tenant = activity(channelData={}, conversation={"id": "a:1"})
    with pytest.raises(InvalidInput) as refused:
        parse_card_action(no_tenant)
    assert refused.value.field == "conversation.tenantId"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"type": "message"}, "name"),
        ({"name": "composeExtension/query"}, "name"),
        ({"from": "anna"}, "from"),
        ({"from": {"id": "29:x", "aadObjectId": "not-a-guid"}}, "from.aadObjectId"),
        (
            {"value": {"action": {"verb": "approve", "data": {"instance_id": "g" * 201}}}},
            "value.action.data.instance_id",
        ),
        ({"value": {"action": {"verb": "approve", "data": "gate-1"}}}, "value.action.data"),
        ({"value": {"action": {"verb": "approve", "data": {"instance_id": "g", "comment": "x" * 1001}}}}, "comment"),
        ({"value": {"action": {"verb": "approve", "data": {"instance_id": "g", "comment": ["a"]}}}}, "comment"),
    ],
)
def test_a_malformed_card_action_is_refused_naming_the_field(changes, field):
    with pytest.raises(InvalidInput) as refused:
        parse_card_action(activity(**changes))
    assert refused.value.field == field


class _Channel:
    def __init__(self, fail: bool = False) -> None:
        self.closed: list[tuple[str, str]] = []
        self.fail = fail

    def notify(self, tenant_id: str, notification: Notification) -> NotificationResult:
        return NotificationResult(ok=True)

    def gate_closed(self, tenant_id: str, instance_id: str) -> None:
        if self.fail:
            raise RuntimeError("connector down")
        self.closed.append((tenant_id, instance_id))


class _FeedOnly:
    def notify(self, tenant_id: str, notification: Notification) -> NotificationResult:
        return NotificationResult(ok=True)


def test_the_fan_out_tells_every_live_channel_the_gate_is_closed_and_survives_a_failing_one():
    broken, cards = _Channel(fail=True), _Channel()
    fan_out = FanOutNotifier([_FeedOnly(), broken, cards])
    assert isinstance(fan_out, GateClosedListener) and not isinstance(_FeedOnly(), GateClosedListener)
    fan_out.gate_closed("contoso", "gate-1")
    assert cards.closed == [("contoso", "gate-1")]


@pytest.mark.parametrize("minutes", [{"minutes": 45}, [45], True, "9" * 21])
def test_a_time_spent_input_that_is_not_a_short_number_is_refused_naming_minutes(minutes):
    done = activity()
    done["value"]["action"]["verb"] = "mark_done"
    done["value"]["action"]["data"] = {"instance_id": "gate-1", "note": "rotated", "minutes": minutes}
    with pytest.raises(InvalidInput) as refused:
        parse_card_action(done)
    assert refused.value.field == "minutes"


def test_the_time_spent_input_is_carried_as_typed_for_the_follow_up_to_read():
    done = activity()
    done["value"]["action"]["verb"] = "mark_done"
    done["value"]["action"]["data"] = {"instance_id": "gate-1", "note": "rotated", "minutes": "45"}
    action = parse_card_action(done)
    assert (action.verb, action.comment, action.minutes) == ("mark_done", "rotated", "45")
