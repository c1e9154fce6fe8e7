"""The approval cards: valid Adaptive Cards 1.5 (the official schema, tests/fixtures/adaptive-cards), every state
rendered with the right actions, and event text never interpreted as Markdown."""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft6Validator

from gatekeeper.contracts.gate import GateStatus
from gatekeeper.gates.view import (
    ApprovalView,
    ComplianceTag,
    ObjectiveView,
    QualityView,
    RecommendationView,
    RequesterView,
    StageView,
    VoteView,
)
from gatekeeper.teams.cards import CardNotice, approval_card, follow_up_card, invoke_response, refusal_card

# Source: https://github.com/microsoft/AdaptiveCards/blob/main/schemas/1.5.0/adaptive-card.json
# (commit 93695cf2df1117ab08e36ebe707d0ced18e4e9b3, the last to touch it), vendored as test data with its README.
SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "adaptive-cards" / "adaptive-card-1.5.json"
ANNA, PIET = "0000000a-0000-4000-8000-00000000000a", "0000000b-0000-4000-8000-00000000000b"
NOW = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)


@functools.cache
def validator() -> Draft6Validator:
    assert SCHEMA.is_file(), f"the vendored Adaptive Card 1.5 schema is missing: {SCHEMA}"
    schema = json.loads(SCHEMA.read_text())
    Draft6Validator.check_schema(schema)
    return Draft6Validator(schema)


def assert_valid(card: dict[str, Any]) -> None:
    errors = sorted(validator().iter_errors(card), key=lambda e: list(e.absolute_path))
    assert errors == [], [f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:5]]


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
        "recommendation": RecommendationView(
            verdict="needs_attention",
            confidence=0.43,
            p_approve=0.57,
            model_version="20300601T024000Z-3ecaa9f1",
            reasons=("rule=cab (-0.48): 12 approved and kept, 18 rejected or rolled back (40% good)",),
        ),
        "stage": StageView(
            index=0, name="cab", approvers=(ANNA, PIET, "group:ops"), quorum=2, deadline=NOW, on_timeout="reject"
        ),
        "stages": (("cab", 2),),
        "votes": (VoteView(voter_id=ANNA, decision="approve", stage=0, at=NOW - timedelta(minutes=5)),),
        "deadline": NOW,
        "can_decide": True,
        "page_url": "https://gatekeeper.contoso.com/api/approvals/gate-1/page",
    }
    base.update(changes)
    return ApprovalView(**base)


def texts(card: Any) -> str:
    if isinstance(card, dict):
        own = [card[k] for k in ("text", "title", "value") if isinstance(card.get(k), str)]
        return " ".join(own + [texts(v) for v in card.values() if isinstance(v, dict | list)])
    if isinstance(card, list):
        return " ".join(texts(v) for v in card)
    return ""


def readable(card: Any) -> str:
    return re.sub(r"\\(.)", r"\1", texts(card))


def verbs(card: dict[str, Any]) -> list[str]:
    found = []
    for action in card.get("actions", []):
        if action.get("verb"):
            found.append(action["verb"])
        found += verbs(action.get("card", {}))
    return found


def test_an_open_gate_card_for_an_approver_has_everything_to_decide_and_is_valid():
    card = approval_card(view())
    text = readable(card)
    for expected in (
        "L2 approval: deploy contoso/webshop to production",
        "deploy to production",
        "contoso/webshop",
        "refs/heads/main",
        "a1b2c3d",
        "dev@contoso.com",
        "production deployments need the CAB",
        "Quality: fail (score 61.5)",
        "coverage: 58% < 80%",
        "SOC2 CC8.1",
        "Recommendation: needs attention (confidence 43%, p(approve) 57%, model 20300601T024000Z-3ecaa9f1)",
        "- rule=cab (-0.48): 12 approved and kept, 18 rejected or rolled back (40% good)",
        "2030-06-03 10:00 UTC",
        "approve by " + ANNA,
    ):
        assert expected in text, expected
    assert verbs(card) == ["approve", "reject"]
    reject = next(a for a in card["actions"] if a["title"] == "Reject")
    assert reject["card"]["body"][0]["isRequired"] is True  # reject asks for a comment
    assert card["refresh"]["action"]["verb"] == "refresh" and card["refresh"]["userIds"] == [
        f"8:orgid:{ANNA}",
        f"8:orgid:{PIET}",
    ]
    assert {"title": "Repository", "url": "https://github.com/contoso/webshop"} in [
        {k: a[k] for k in ("title", "url")} for a in card["actions"] if a["type"] == "Action.OpenUrl"
    ]


def test_an_action_level_request_shows_the_command_verbatim():
    card = approval_card(view(command="terraform apply -auto-approve -target=module.db", plan_digest="sha256:abc"))
    command = next(b for b in card["body"] if b.get("fontType") == "Monospace")
    assert readable(command) == "terraform apply -auto-approve -target=module.db"
    assert "Plan digest: sha256:abc" in readable(card)


def test_a_person_who_cannot_decide_gets_no_buttons_but_the_live_card():
    card = approval_card(view(can_decide=False), CardNotice("approved", "You approved this request."))
    assert verbs(card) == [] and "refresh" in card
    assert readable(card["body"][0]) == "You approved this request."


@pytest.mark.parametrize("status", [GateStatus.APPROVED, GateStatus.REJECTED])
def test_a_decided_gate_is_a_read_only_summary(status):
    card = approval_card(
        view(status=status, can_decide=True, decided_at=NOW, outcome="quorum reached"),
        CardNotice("already-decided", "The gate has already been decided"),
    )
    assert verbs(card) == [] and "refresh" not in card  # even if the view said it could decide
    assert f"Decided {status.value} at 2030-06-03 10:00 UTC: quorum reached" in readable(card)


def test_a_refusal_card_shows_only_why():
    card = refusal_card("Wrong tenant", "The identity belongs to a different Microsoft Entra ID tenant than this gate.")
    assert "webshop" not in readable(card) and verbs(card) == []
    assert invoke_response(card) == {
        "statusCode": 200,
        "type": "application/vnd.microsoft.card.adaptive",
        "value": card,
    }


def test_an_unresolved_requester_says_so():
    who = RequesterView(resolved=False, display="octocat", note="requester unresolved: no Entra identity")
    assert "requester unresolved: no Entra identity (claimed: octocat)" in readable(approval_card(view(requester=who)))


HOSTILE = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=300)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(title=HOSTILE, repository=HOSTILE, reason=HOSTILE)
def test_event_text_stays_text_and_the_card_stays_valid(title, repository, reason):
    card = approval_card(view(title=title, repository=repository, reasons=(reason,)))
    for block in _text_blocks(card):
        # every Markdown-active character is escaped: no link, emphasis or HTML can be formed from event text
        assert re.search(r"(?<!\\)[\[\]()*_`<>#|~]", re.sub(r"\\\\", "", block)) is None, block


def _text_blocks(card: Any) -> list[str]:
    if isinstance(card, dict):
        own = [card["text"]] if card.get("type") == "TextBlock" else []
        own += [f["value"] for f in card.get("facts", [])] + [f["title"] for f in card.get("facts", [])]
        return own + [t for v in card.values() if isinstance(v, dict | list) for t in _text_blocks(v)]
    if isinstance(card, list):
        return [t for v in card for t in _text_blocks(v)]
    return []


@pytest.mark.parametrize(
    ("status", "level", "expected"),
    [
        (GateStatus.APPROVED, "L1", ["acknowledge", "flag_rollback"]),
        (GateStatus.HUMAN_TASK, "L3", ["mark_done"]),
    ],
)
def test_follow_up_cards_for_l1_notices_and_l3_tasks_are_valid(status, level, expected):
    done = [{"verb": "acknowledge", "by": ANNA, "at": NOW, "note": "looked fine"}]
    card = follow_up_card(view(status=status, level=level, stage=None, can_decide=False), done, can_act=True)
    assert verbs(card) == expected and "refresh" not in card
    assert f"acknowledged by {ANNA} 2030-06-03 10:00 UTC: looked fine" in readable(card)
    if level == "L3":
        note = next(b for b in card["body"] if b.get("id") == "note")
        assert note["isRequired"] is True
    closed = follow_up_card(view(status=status, level=level, stage=None), done, can_act=False)
    assert verbs(closed) == []


HOSTILE_EXAMPLES = (
    "[click](https://evil.example)",
    "<script>alert(1)</script>",
    "**bold** _it_ `code` # h",
    "\u202e\x00\x07",
)


def test_every_card_variant_is_valid_against_the_official_schema():
    """Adaptive Card 1.5, checked with the official schema (tests/fixtures/adaptive-cards: see SCHEMA)."""
    done = [{"verb": "mark_done", "by": ANNA, "at": NOW, "note": "rotated"}]
    variants = [
        approval_card(view()),
        approval_card(view(recommendation=None)),
        approval_card(view(command="terraform apply -target=module.db", plan_digest="sha256:abc")),
        approval_card(view(can_decide=False), CardNotice("approved", "You approved this request.", "ok")),
        approval_card(view(status=GateStatus.APPROVED, decided_at=NOW), CardNotice("already-decided", "Decided")),
        approval_card(view(status=GateStatus.REJECTED, decided_at=NOW, outcome="timeout")),
        refusal_card("Wrong tenant", "another tenant"),
        follow_up_card(view(status=GateStatus.APPROVED, level="L1", stage=None), [], can_act=True),
        follow_up_card(view(status=GateStatus.HUMAN_TASK, level="L3", stage=None), done, can_act=True),
        follow_up_card(view(status=GateStatus.HUMAN_TASK, level="L3", stage=None), done, can_act=False),
        *(approval_card(view(title=t, repository=t, reasons=(t,), command=t)) for t in HOSTILE_EXAMPLES),
    ]
    for card in variants:
        assert_valid(card)


def test_refresh_names_at_most_60_approvers_as_teams_user_mris():
    """Teams refreshes by itself the cards of the users named in `userIds` (user MRIs, at most 60)."""
    many = tuple(f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(75))
    stage = StageView(
        index=0, name="ops", approvers=(*many, "ops@contoso.com"), quorum=1, deadline=NOW, on_timeout="reject"
    )
    ids = approval_card(view(stage=stage))["refresh"]["userIds"]
    assert len(ids) == 60
    assert ids == [f"8:orgid:{oid}" for oid in sorted(many)[:60]]
