"""The Slack side, pure parts: Block Kit messages within Slack's limits and never interpreted, the v0 signature,
interaction payloads read strictly, the tenant's Slack settings validated naming the field, the manifest."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gatekeeper.contracts.gate import GateStatus
from gatekeeper.errors import InvalidInput, Unauthenticated
from gatekeeper.gates.followup import parse_minutes
from gatekeeper.gates.view import (
    ApprovalView,
    ComplianceTag,
    ObjectiveView,
    QualityView,
    RequesterView,
    StageView,
    VoteView,
)
from gatekeeper.security.requester import parse_external
from gatekeeper.slack.blocks import (
    ACKNOWLEDGE_ACTION,
    APPROVE_ACTION,
    FLAG_ROLLBACK_ACTION,
    LIMITS,
    MARK_DONE_ACTION,
    MARK_DONE_MODAL,
    MINUTES_ACTION,
    MINUTES_BLOCK,
    NOTE_ACTION,
    NOTE_BLOCK,
    REJECT_ACTION,
    Notice,
    approval_message,
    follow_up_message,
    mark_done_modal,
    reject_modal,
    violations,
)
from gatekeeper.slack.edge import interaction_payload, parse_interaction, verify
from gatekeeper.slack.manifest import BOT_SCOPES, slack_app_manifest
from gatekeeper.tenancy.model import TenantRecord

ANNA = "0000000a-0000-4000-8000-00000000000a"
NOW = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)
SECRET = b"8f742231b10e8888abcd99yyyzzz85a5"


def view(**changes: Any) -> ApprovalView:
    base: dict[str, Any] = {
        "instance_id": "gate-1",
        "tenant_id": "contoso",
        "status": GateStatus.AWAITING_APPROVAL,
        "level": "L2",
        "title": "deploy contoso/webshop to production",
        "action": "deploy",
        "environment": "production",
        "repository": "contoso/webshop",
        "repository_url": "https://github.com/contoso/webshop",
        "ref": "refs/heads/main",
        "commit": "a1b2c3d",
        "commit_url": "https://github.com/contoso/webshop/commit/a1b2c3d",
        "requester": RequesterView(resolved=True, oid="000000de-0000-4000-8000-0000000000de", upn="dev@contoso.com"),
        "rule": "cab",
        "reasons": ("production deployments need the CAB",),
        "quality": QualityView(
            result="fail", score=61.5, failing=(ObjectiveView(name="coverage", detail="58% < 80%"),)
        ),
        "compliance": (ComplianceTag(framework="SOC2", control="CC8.1"),),
        "stage": StageView(index=0, name="cab", approvers=(ANNA,), quorum=1, deadline=NOW, on_timeout="reject"),
        "stages": (("cab", 1),),
        "votes": (VoteView(voter_id=ANNA, decision="approve", stage=0, at=NOW - timedelta(minutes=5)),),
        "deadline": NOW,
        "can_decide": True,
        "page_url": "https://gatekeeper.contoso.com/api/approvals/gate-1/page",
    }
    base.update(changes)
    return ApprovalView(**base)


def dump(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"])


def buttons(message: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


# --- Block Kit ---------------------------------------------------------------------------------------------------


def test_a_waiting_request_carries_the_whole_context_and_both_buttons():
    message = approval_message(view())
    text = dump(message)
    for expected in (
        "L2 approval: deploy contoso/webshop to production",
        "Repository: contoso/webshop",
        "Commit: a1b2c3d",
        "Requested by: dev@contoso.com",
        "production deployments need the CAB",
        "Quality: fail (score 61.5)",
        "coverage: 58% < 80%",
        "Compliance: SOC2 CC8.1",
        "approve by " + ANNA,
        "Deadline: 2030-06-03 10:00 UTC",
        "<https://github.com/contoso/webshop/commit/a1b2c3d|Commit>",
    ):
        assert expected in text, expected
    assert buttons(message) == [APPROVE_ACTION, REJECT_ACTION] and violations(message) == []


def test_a_decided_gate_shows_the_outcome_and_no_buttons():
    decided = view(status=GateStatus.APPROVED, outcome="quorum reached", decided_at=NOW)
    message = approval_message(decided)
    assert buttons(message) == [] and "Decided: approved (quorum reached)" in dump(message)
    assert message["text"] == "Approval approved: deploy contoso/webshop to production"
    noticed = approval_message(view(can_decide=False), Notice("approved", "You approved this request."))
    assert buttons(noticed) == [] and "You approved this request." in dump(noticed)


def test_an_action_command_is_shown_verbatim_in_a_preformatted_element_never_as_mrkdwn():
    command = "kubectl delete ns prod && echo `*pwned*` <!channel> <https://evil.example|click> &amp;"
    message = approval_message(view(kind="action", command=command))
    (rich,) = [b for b in message["blocks"] if b["type"] == "rich_text"]
    assert rich["elements"][0]["type"] == "rich_text_preformatted"
    assert rich["elements"][0]["elements"][0]["text"] == command  # exactly as it will run
    mrkdwn = [
        b["text"]["text"]
        for b in message["blocks"]
        if b["type"] == "section" and b.get("text", {}).get("type") == "mrkdwn"
    ]
    assert all("evil" not in t and "<!channel>" not in t for t in mrkdwn)


def test_event_texts_are_plain_text_and_link_labels_are_escaped():
    hostile = "<!everyone> *bold* <https://evil.example|here>"
    message = approval_message(view(repository=hostile, reasons=(hostile,), title=hostile))
    for block in message["blocks"]:
        for obj in [block.get("text"), *block.get("fields", [])]:
            if isinstance(obj, dict) and hostile in obj.get("text", ""):
                assert obj["type"] == "plain_text"
    links = [b for b in message["blocks"] if b.get("text", {}).get("type") == "mrkdwn"]
    assert links and all("evil" not in b["text"]["text"] for b in links)
    tricky = view(repository_url="https://github.com/a|b>c<d&e")
    (link,) = [b for b in approval_message(tricky)["blocks"] if b.get("text", {}).get("type") == "mrkdwn"]
    assert "<https://github.com/a%7Cb%3Ec%3Cd&e|Repository>" in link["text"]["text"]


@settings(derandomize=True, max_examples=40, deadline=None)
@given(
    title=st.text(min_size=1, max_size=400),
    command=st.text(min_size=1, max_size=9000),
    reasons=st.lists(st.text(min_size=1, max_size=900), max_size=30),
    votes=st.integers(min_value=0, max_value=120),
)
def test_any_view_yields_a_message_within_block_kit_limits(title, command, reasons, votes):
    many = tuple(
        VoteView(voter_id=f"user{i}@contoso.com", decision="approve", stage=0, at=NOW, comment="c" * 900)
        for i in range(votes)
    )
    hostile = view(
        title=title,
        kind="action",
        command=command,
        reasons=tuple(reasons),
        votes=many,
        version_tags=tuple(f"v{i}" for i in range(20)),
        artifact_ids=tuple("a" * 200 for _ in range(20)),
    )
    for shown in (hostile, hostile.model_copy(update={"status": GateStatus.REJECTED})):
        message = approval_message(shown)
        assert violations(message) == []
        assert len(message["blocks"]) <= LIMITS["message_blocks"]
    for shown in (hostile.model_copy(update={"status": s}) for s in (GateStatus.APPROVED, GateStatus.HUMAN_TASK)):
        follow_up = follow_up_message(shown)  # L1 notice, L3 task
        assert violations(follow_up) == []
        assert APPROVE_ACTION not in json.dumps(follow_up) and REJECT_ACTION not in json.dumps(follow_up)


def test_l1_notices_and_l3_tasks_carry_the_context_and_no_vote_buttons():
    voted = view(votes=(VoteView(voter_id=ANNA, decision="approve", stage=0, at=NOW),))
    notice = follow_up_message(voted.model_copy(update={"status": GateStatus.APPROVED, "level": "L1"}))
    task = follow_up_message(voted.model_copy(update={"status": GateStatus.HUMAN_TASK, "level": "L3"}))
    assert notice["text"].startswith("L1 executed, please review: deploy contoso/webshop")
    assert task["text"].startswith("L3 human action required: deploy contoso/webshop")
    for message in (notice, task):
        shown = json.dumps(message["blocks"])
        assert violations(message) == []
        assert APPROVE_ACTION not in shown and REJECT_ACTION not in shown and "Votes:" not in shown
        assert "Decided:" not in shown and "contoso/webshop" in shown and "Approval page" in shown
    assert "ran without approval (level L1)" in json.dumps(notice["blocks"])
    (actions,) = [b for b in notice["blocks"] if b["type"] == "actions"]  # the L1 follow-up, as on the Teams card
    assert [e["action_id"] for e in actions["elements"]] == [ACKNOWLEDGE_ACTION, FLAG_ROLLBACK_ACTION]
    assert {e["value"] for e in actions["elements"]} == {"gate-1"}
    (actions,) = [b for b in task["blocks"] if b["type"] == "actions"]  # the L3 task's one action: Mark done
    assert [e["action_id"] for e in actions["elements"]] == [MARK_DONE_ACTION]
    assert {e["value"] for e in actions["elements"]} == {"gate-1"}
    assert "carry it out by hand" in json.dumps(task["blocks"])


def test_the_mark_done_modal_asks_for_a_required_note_and_optional_bounded_minutes():
    modal = mark_done_modal("gate-1", "DUANNA0001", "1900000001.000001")
    assert violations(modal, modal=True) == [] and modal["callback_id"] == MARK_DONE_MODAL
    assert modal["private_metadata"] == "gate-1|DUANNA0001|1900000001.000001"
    inputs = {b["block_id"]: b for b in modal["blocks"] if b["type"] == "input"}
    assert set(inputs) == {NOTE_BLOCK, MINUTES_BLOCK}
    note, minutes = inputs[NOTE_BLOCK], inputs[MINUTES_BLOCK]
    assert not note.get("optional") and note["element"]["min_length"] == 1 and note["element"]["max_length"] == 1000
    assert minutes["optional"] is True and minutes["element"]["type"] == "number_input"
    assert minutes["element"]["is_decimal_allowed"] is False
    assert (minutes["element"]["min_value"], minutes["element"]["max_value"]) == ("1", "1440")


def test_a_follow_up_acted_on_says_who_did_what_and_has_no_buttons_any_more():
    task = view(status=GateStatus.HUMAN_TASK, level="L3", votes=())
    done = [
        {
            "verb": "mark_done",
            "by": ANNA,
            "upn": "ops@contoso.com",
            "at": NOW,
            "note": "rotated *by hand*",
            "minutes": 45,
        }
    ]
    message = follow_up_message(task, done)
    shown = dump(message)
    assert buttons(message) == [] and violations(message) == []
    assert "Marked done by ops@contoso.com at 2030-06-03 10:00 UTC (45 min): rotated *by hand*" in shown
    (said,) = [b for b in message["blocks"] if b.get("block_id") == "follow_ups"]
    assert said["text"]["type"] == "plain_text"  # the note is shown as typed, never as mrkdwn
    flagged = follow_up_message(
        task.model_copy(update={"status": GateStatus.APPROVED, "level": "L1"}),
        [{"verb": "flag_rollback", "by": ANNA, "upn": None, "at": NOW, "note": ""}],
    )
    assert buttons(flagged) == [] and f"Flagged for rollback by {ANNA} at" in dump(flagged)


def test_violations_finds_each_broken_limit():
    broken = {
        "text": "x",
        "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]
        + [{"type": "section", "text": {"type": "plain_text", "text": "s" * 3001}}]
        + [{"type": "section", "fields": [{"type": "plain_text", "text": "f"}] * 11}]
        + [
            {
                "type": "actions",
                "elements": [{"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "b" * 76}}],
            }
        ]
        + [{"type": "divider"}] * 47,
    }
    found = violations(broken)
    assert found == [
        "blocks: 51 > 50",
        "blocks[0].text: header longer than 150",
        "blocks[1].text: longer than 3000",
        "blocks[2].fields: more than 10",
        "blocks[3].elements[0].text: longer than 75",
    ]


def test_the_reject_modal_is_within_limits_and_needs_a_comment():
    modal = reject_modal("gate-1", "DUANNA0001", "1900000001.000001")
    assert violations(modal, modal=True) == []
    (comment,) = [b for b in modal["blocks"] if b["type"] == "input"]
    assert comment["element"]["min_length"] == 1 and comment["element"]["max_length"] == 1000
    assert modal["private_metadata"] == "gate-1|DUANNA0001|1900000001.000001"


# --- signature ---------------------------------------------------------------------------------------------------


def signed(body: bytes, stamp: int, secret: bytes = SECRET) -> dict[str, str]:
    digest = hmac.new(secret, b"v0:%d:" % stamp + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": f"v0={digest}"}


def test_the_v0_signature_verifies_with_any_of_the_tenants_secrets_within_five_minutes():
    body, now = b"payload=%7B%7D", 1_900_000_000
    verify(body, signed(body, now - 299), [b"old-secret", SECRET], now=lambda: now)
    for headers in (
        signed(body, now - 301),  # stale
        signed(body, now + 301),  # from the future
        signed(body, now, b"another-secret"),  # forged
        {"X-Slack-Request-Timestamp": "12ab", "X-Slack-Signature": signed(body, now)["X-Slack-Signature"]},
        {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": "v1=" + "0" * 64},
        {},
    ):
        with pytest.raises(Unauthenticated) as refused:
            verify(body, headers, [SECRET], now=lambda: now)
        assert refused.value.code == "slack-signature"  # one answer for every failure
    with pytest.raises(Unauthenticated):
        verify(b"\xff\xfe", signed(b"\xff\xfe", now), [SECRET], now=lambda: now)


@settings(derandomize=True, max_examples=50, deadline=None)
@given(body=st.binary(min_size=1, max_size=200), flip=st.integers(min_value=0, max_value=199))
def test_any_change_to_a_signed_body_is_refused(body, flip):
    now = 1_900_000_000
    text = body.decode("latin-1").encode("utf-8")
    headers = signed(text, now)
    index = flip % len(text)
    changed = text[:index] + bytes([(text[index] + 1) % 128 or 1]) + text[index + 1 :]
    if changed != text:
        with pytest.raises(Unauthenticated):
            verify(changed, headers, [SECRET], now=lambda: now)


# --- payloads ----------------------------------------------------------------------------------------------------


def press(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": "T9TK3CUKW"},
        "user": {"id": "UA8RXUSPL", "team_id": "T9TK3CUKW"},
        "channel": {"id": "DA8RXUSPL"},
        "container": {"message_ts": "1548261231.000200"},
        "trigger_id": "12321423423.333649436676.d8c1bb837935619ccad0f624c448ffb3",
        "actions": [{"action_id": APPROVE_ACTION, "value": "gate-1"}],
    }
    payload.update(changes)
    return payload


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"team": {"id": "not-a-team"}}, "team.id"),
        ({"user": {"id": "UA8RXUSPL", "team_id": "TOTHER0001"}}, "user.team_id"),
        ({"user": {"id": "<@U1>"}}, "user.id"),
        ({"actions": []}, "actions"),
        ({"actions": [{"action_id": APPROVE_ACTION, "value": "../other"}]}, "actions[0].value"),
        ({"channel": {"id": "not a channel"}}, "channel.id"),
        ({"container": {"message_ts": "x"}}, "container.message_ts"),
        ({"trigger_id": "t" * 201}, "trigger_id"),
    ],
)
def test_a_bad_interaction_field_is_named(changes, field):
    with pytest.raises(InvalidInput) as refused:
        parse_interaction(press(**changes))
    assert refused.value.field == field


def test_other_actions_and_payload_types_are_ignored():
    assert parse_interaction(press(actions=[{"action_id": "something_else", "value": "x"}])) is None
    assert parse_interaction(press(type="view_closed")) is None
    taken = parse_interaction(press())
    assert taken is not None and (taken.kind, taken.instance_id, taken.user_id) == ("approve", "gate-1", "UA8RXUSPL")


def submit_done(note: Any = "rotated by hand", minutes: Any = "45") -> dict[str, Any]:
    """A view_submission of the mark-done modal, as Slack sends it (the number input's value is text)."""
    values: dict[str, Any] = {NOTE_BLOCK: {NOTE_ACTION: {"type": "plain_text_input", "value": note}}}
    values[MINUTES_BLOCK] = {MINUTES_ACTION: {"type": "number_input", "value": minutes}}
    return {
        "type": "view_submission",
        "team": {"id": "T9TK3CUKW"},
        "user": {"id": "UA8RXUSPL", "team_id": "T9TK3CUKW"},
        "view": {
            "callback_id": MARK_DONE_MODAL,
            "team_id": "T9TK3CUKW",
            "private_metadata": "gate-1|DA8RXUSPL|1548261231.000200",
            "state": {"values": values},
        },
    }


def test_the_mark_done_button_and_the_modal_submit_are_read_with_the_note_and_minutes():
    pressed = parse_interaction(press(actions=[{"action_id": MARK_DONE_ACTION, "value": "gate-1"}]))
    assert pressed is not None and (pressed.kind, pressed.instance_id) == ("mark_done-open", "gate-1")
    done = parse_interaction(submit_done(" rotated by hand ", "45"))
    assert done is not None and (done.kind, done.comment, done.minutes) == ("mark_done", "rotated by hand", 45)
    assert (done.instance_id, done.channel, done.ts) == ("gate-1", "DA8RXUSPL", "1548261231.000200")
    for empty in (None, ""):  # time spent is optional
        left = parse_interaction(submit_done(minutes=empty))
        assert left is not None and left.minutes is None


MINUTES_PATH = f"view.state.values.{MINUTES_BLOCK}.{MINUTES_ACTION}.value"


@pytest.mark.parametrize("minutes", ["0", "-5", "1441", "1.5", "45 min", "9" * 400, "1e3", [45]])
def test_time_spent_outside_whole_minutes_1_to_1440_is_refused_naming_the_field(minutes):
    with pytest.raises(InvalidInput) as refused:
        parse_interaction(submit_done(minutes=minutes))
    assert refused.value.field == MINUTES_PATH


def test_an_oversize_note_is_refused_naming_the_field():
    with pytest.raises(InvalidInput) as refused:
        parse_interaction(submit_done(note="x" * 1001))
    assert refused.value.field == f"view.state.values.{NOTE_BLOCK}.{NOTE_ACTION}.value"


@settings(derandomize=True, max_examples=200)
@given(st.one_of(st.integers(), st.floats(), st.text(max_size=12), st.booleans(), st.none()))
def test_parse_minutes_accepts_exactly_whole_minutes_from_1_to_1440(value):
    try:
        minutes = parse_minutes(value, "m")
    except InvalidInput as refused:
        assert refused.field == "m"
        return
    if minutes is None:
        assert value is None or (isinstance(value, str) and not value.strip())
    else:
        assert 1 <= minutes <= 1440 and not isinstance(value, bool)
        assert float(str(value).strip()) == minutes


def test_the_form_body_is_bounded_and_strict():
    for body in (b"payload=%7B%7D&extra=1", b"nothing", b"payload=" + b"%5B" * 200 + b"%5D" * 200, b"\xff"):
        with pytest.raises(InvalidInput):
            interaction_payload(body)
    with pytest.raises(InvalidInput):  # duplicate keys
        interaction_payload(b"payload=" + b'{"type":"a","type":"b"}'.replace(b'"', b"%22"))


# --- tenant settings, identities, manifest -----------------------------------------------------------------------


def tenant(slack: Any) -> TenantRecord:
    return TenantRecord.model_validate({"tenant_id": "contoso", "display_name": "Contoso", "slack": slack})


@pytest.mark.parametrize(
    ("slack", "field"),
    [
        ({"team_id": "contoso", "bot_token": "env:B", "signing_secrets": ["env:S"]}, "slack.team_id"),
        ({"team_id": "T0123ABCD", "bot_token": "xoxb-1234", "signing_secrets": ["env:S"]}, "slack.bot_token"),
        ({"team_id": "T0123ABCD", "bot_token": "env:B", "signing_secrets": []}, "slack.signing_secrets"),
        ({"team_id": "T0123ABCD", "bot_token": "env:B", "signing_secrets": ["secret"]}, "slack.signing_secrets"),
        (
            {"team_id": "T0123ABCD", "bot_token": "env:B", "signing_secrets": ["env:S"], "default_channel": "#ops"},
            "slack.default_channel",
        ),
        ({"team_id": "T0123ABCD", "bot_token": "env:B", "signing_secrets": ["env:S"], "dm": True}, "slack.dm"),
    ],
)
def test_slack_settings_are_validated_naming_the_field(slack, field):
    with pytest.raises(ValidationError) as refused:
        tenant(slack)
    where = ".".join(str(p) for p in refused.value.errors()[0]["loc"])
    assert where.startswith(field)


def test_the_workspace_is_one_of_the_tenants_identities():
    record = tenant(
        {"team_id": "T0123ABCD", "bot_token": "env:B", "signing_secrets": ["env:S"], "default_channel": "C0123"}
    )
    assert "slack:team:t0123abcd" in record.all_identities
    assert record.slack is not None and record.slack.direct_messages and record.slack.link_by_email


def test_slack_users_are_linkable_identities():
    assert parse_external("slack:user:T0123ABCD/U0456EFGH") == "slack:user:t0123abcd/u0456efgh"
    with pytest.raises(ValueError):
        parse_external("slack:channel:C0123")


def test_the_manifest_declares_the_scopes_and_the_https_request_urls():
    manifest = slack_app_manifest("https://gk.contoso.com/", "Contoso Gatekeeper")
    assert manifest["oauth_config"]["scopes"]["bot"] == list(BOT_SCOPES)
    assert manifest["settings"]["interactivity"]["request_url"] == "https://gk.contoso.com/api/slack/interactions"
    assert manifest["settings"]["event_subscriptions"]["request_url"] == "https://gk.contoso.com/api/slack/events"
    for base, name, field in (
        ("http://gk.contoso.com", "x", "GATEKEEPER_APPROVAL_BASE_URL"),
        (None, "x", "GATEKEEPER_APPROVAL_BASE_URL"),
        ("https://gk.contoso.com", "n" * 36, "--name"),
    ):
        with pytest.raises(InvalidInput) as refused:
            slack_app_manifest(base, name)
        assert refused.value.field == field
