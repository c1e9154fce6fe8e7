"""Block Kit messages (gatekeeper/slack/blocks.py) where tests/unit/test_slack_blocks.py does not go: a command
longer than Slack's preformatted limit is cut and says so (read it all on the page), the plan digest is shown,
a gate without quality evidence says nothing about quality, a follow-up nobody has answered says so, a notice
sits on top of a follow-up message; and `violations`, the checker every Slack test trusts, names each limit
it checks (so a message over a limit cannot pass unnoticed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gatekeeper.contracts.gate import GateStatus
from gatekeeper.slack.blocks import LIMITS, Notice, approval_message, follow_up_message, reject_modal, violations
from tests.unit.test_slack_blocks import view


def texts(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"])


def preformatted(message: dict[str, Any]) -> str:
    (block,) = [b for b in message["blocks"] if b["type"] == "rich_text"]
    return block["elements"][0]["elements"][0]["text"]


def test_a_command_over_slacks_limit_is_cut_and_the_message_says_to_read_it_on_the_page():
    limit = LIMITS["preformatted_text"]
    long = view(command="x" * (limit + 1), title="action: long command")
    message = approval_message(long)
    assert preformatted(message) == "x" * limit and violations(message) == []
    assert "too long for Slack: the first part is shown; read it all on the page" in texts(message)
    exact = approval_message(view(command="y" * limit))  # at the limit: shown whole, no warning
    assert preformatted(exact) == "y" * limit and "too long for Slack" not in texts(exact)
    assert "Command (runs exactly as shown):" in texts(exact)


def test_the_plan_digest_of_an_action_is_shown_under_its_command():
    digest = "sha256:" + "ab" * 32
    message = approval_message(view(command="terraform apply plan.out", plan_digest=digest))
    assert f"Plan digest: {digest}" in texts(message)
    assert "Plan digest" not in texts(approval_message(view(command="terraform apply plan.out")))


def test_a_gate_without_quality_evidence_says_nothing_about_quality():
    message = approval_message(view(quality=None))
    assert "Quality:" not in texts(message) and violations(message) == []
    assert "Quality: fail (score 61.5)" in texts(approval_message(view()))


def test_a_follow_up_nobody_has_answered_says_so_and_a_notice_goes_on_top():
    notice_view = view(status=GateStatus.APPROVED, level="L1", votes=())
    message = follow_up_message(notice_view, [], notice=Notice("info", "Not recorded.", "Already acknowledged."))
    (follow_ups,) = [b for b in message["blocks"] if b.get("block_id") == "follow_ups"]
    assert follow_ups["text"]["text"] == "Follow-up: nobody has responded yet."
    assert message["blocks"][1]["block_id"] == "notice"
    assert "Not recorded. Already acknowledged." in json.dumps(message["blocks"][1])
    assert violations(message) == []


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "plain_text", "text": text}}


@pytest.mark.parametrize(
    ("payload", "modal", "said"),
    [
        ({"text": "t" * 4001, "blocks": []}, False, "text: too long"),
        ({"blocks": [{**section("s"), "block_id": "b" * 256}]}, False, "blocks[0].block_id: too long"),
        ({"blocks": [{"type": "section"}]}, False, "blocks[0]: a section needs text or fields"),
        (
            {"blocks": [{"type": "section", "fields": [{"type": "plain_text", "text": "f" * 2001}]}]},
            False,
            "blocks[0].fields[0]: longer than 2000",
        ),
        (
            {"blocks": [{"type": "context", "elements": [{"type": "plain_text", "text": "c"}] * 11}]},
            False,
            "blocks[0].elements: more than 10",
        ),
        (
            {"blocks": [{"type": "actions", "elements": [{"type": "button", "action_id": "a"}] * 26}]},
            False,
            "blocks[0].elements: more than 25",
        ),
        (
            {"blocks": [{"type": "actions", "elements": [{"type": "button", "action_id": "a", "value": "v" * 2001}]}]},
            False,
            "blocks[0].elements[0].value: too long",
        ),
        (
            {"blocks": [{"type": "actions", "elements": [{"type": "button", "action_id": "a" * 256}]}]},
            False,
            "blocks[0].elements[0].action_id: too long",
        ),
        (
            {
                "blocks": [
                    {
                        "type": "rich_text",
                        "elements": [
                            {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "p" * 3001}]}
                        ],
                    }
                ]
            },
            False,
            "blocks[0]: preformatted text longer than 3000",
        ),
        ({"blocks": [section("m")] * 101}, True, "blocks: 101 > 100"),
        ({"title": {"type": "plain_text", "text": "T" * 25}, "blocks": []}, True, "title: longer than 24"),
        ({"submit": {"type": "plain_text", "text": "S" * 25}, "blocks": []}, True, "submit: longer than 24"),
        ({"close": {"type": "plain_text", "text": "C" * 25}, "blocks": []}, True, "close: longer than 24"),
        ({"private_metadata": "m" * 3001, "blocks": []}, True, "private_metadata: too long"),
    ],
    ids=[
        "fallback-text",
        "block-id",
        "empty-section",
        "field-text",
        "context-elements",
        "actions-elements",
        "button-value",
        "action-id",
        "preformatted",
        "modal-blocks",
        "modal-title",
        "modal-submit",
        "modal-close",
        "private-metadata",
    ],
)
def test_violations_names_each_limit_it_checks(payload: dict[str, Any], modal: bool, said: str):
    assert violations(payload, modal=modal) == [said]


def test_each_checked_limit_is_a_limit_not_an_off_by_one():
    """At each limit exactly: no violation (the modal as sent, and a message filling every limit)."""
    full = {
        "text": "t" * 4000,
        "blocks": [
            {**section("s" * 3000), "block_id": "b" * 255},
            {"type": "context", "elements": [{"type": "plain_text", "text": "c"}] * 10},
            {"type": "actions", "elements": [{"type": "button", "action_id": "a" * 255, "value": "v" * 2000}] * 25},
        ],
    }
    assert violations(full) == []
    modal = {
        **reject_modal("gate-1", "DUANNA0001", "1.1"),
        "private_metadata": "m" * 3000,
        **{key: {"type": "plain_text", "text": key[0] * 24} for key in ("title", "submit", "close")},
    }
    assert violations(modal, modal=True) == []
