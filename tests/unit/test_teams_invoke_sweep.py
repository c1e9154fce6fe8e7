"""`gatekeeper.teams.invoke.answer` and friends with recording decision / follow-up services and a directory:
the edges a hand sweep of planted bugs found untested (docs/mutation.md, second sweep)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from gatekeeper.errors import Conflict, DependencyUnavailable, Forbidden, GatekeeperError, NotFound
from gatekeeper.gates.view import ApprovalView
from gatekeeper.security.principal import Principal
from gatekeeper.security.requester import DirectoryUnavailable, DirectoryUser
from gatekeeper.teams.invoke import CardAction, answer, parse_card_action, principal_of, with_directory_name
from tests.unit.test_teams_cards import view
from tests.unit.test_teams_invoke import activity

ANNA = "0000000a-0000-4000-8000-00000000000a"
MALLORY = "0000000e-0000-4000-8000-00000000000e"
TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def card_action(verb: str = "approve", **kw: Any) -> CardAction:
    return CardAction(
        verb=verb, instance_id="gate-1", comment=kw.pop("comment", ""), voter_oid=ANNA, tenant_id=TID, **kw
    )


def texts(card: Any) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"].replace("\\", ""))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card)
    return found


def notice_colors(card: dict[str, Any]) -> list[str]:
    return [
        item["color"]
        for block in card.get("body", [])
        if block.get("type") == "Container" and block.get("style") == "emphasis"
        for item in block.get("items", [])
        if "color" in item
    ]


class Directory:
    def __init__(self, answer: DirectoryUser | None = None, down: bool = False) -> None:
        self.answer, self.down, self.asked = answer, down, []

    def user(self, id_or_upn: str) -> DirectoryUser | None:
        self.asked.append(id_or_upn)
        if self.down:
            raise DirectoryUnavailable("graph down")
        return self.answer


class Decisions:
    def __init__(self, decide_raises: GatekeeperError | None = None) -> None:
        self.decide_raises = decide_raises
        self.principals: list[Principal] = []

    def decide(self, instance_id: str, principal: Principal, body: bytes) -> tuple[int, dict[str, Any]]:
        self.principals.append(principal)
        if self.decide_raises:
            raise self.decide_raises
        return 200, json.loads(body)

    def view(self, instance_id: str, principal: Principal) -> ApprovalView:
        return view(can_decide=False)


class FollowUps:
    def __init__(self, act_raises: GatekeeperError | None = None, view_raises: GatekeeperError | None = None) -> None:
        self.act_raises, self.view_raises = act_raises, view_raises
        self.acts: list[tuple[str, str, int | None]] = []
        self.views = 0

    def act(self, instance_id: str, principal: Principal, verb: str, note: str = "", minutes: int | None = None):
        self.acts.append((verb, note, minutes))
        if self.act_raises:
            raise self.act_raises
        return {}

    def view(self, instance_id: str, principal: Principal) -> tuple[ApprovalView, list[dict[str, Any]], bool]:
        self.views += 1
        if self.view_raises:
            raise self.view_raises
        return view(level="L1", can_decide=False), [], True


def test_a_display_name_from_the_activity_is_cut_at_200_characters():
    long = activity(**{"from": {"id": "29:x", "aadObjectId": ANNA, "name": "N" * 5000}})
    assert parse_card_action(long).name == "N" * 200


def test_a_card_voter_is_asked_about_through_the_group_directory_not_taken_as_in_no_group():
    """A card action carries no groups: an approver named by group must be looked up, never read as 'in none'."""
    principal = principal_of(card_action())
    assert principal.groups_overage is True and principal.groups == frozenset()


def test_the_directory_names_the_voter_only_with_the_voters_own_entry():
    own = Directory(DirectoryUser(oid=ANNA.upper(), upn="anna@contoso.com"))
    assert with_directory_name(card_action(), own).upn == "anna@contoso.com"
    assert own.asked == [ANNA]
    # a directory answering with someone else's entry must not lend the voter that person's UPN
    other = Directory(DirectoryUser(oid=MALLORY, upn="cab-chair@contoso.com"))
    assert with_directory_name(card_action(), other).upn is None
    assert with_directory_name(card_action(), Directory(DirectoryUser(oid=ANNA))).upn is None


def test_a_directory_outage_leaves_the_voter_by_object_id_and_the_vote_is_still_decided():
    decisions = Decisions()
    card = answer(decisions, card_action(), Directory(down=True))
    (principal,) = decisions.principals
    assert principal.oid == ANNA and principal.upn is None
    assert "You approved this request." in texts(card)


def test_a_vote_on_a_gate_already_decided_is_shown_as_such_not_as_a_refusal():
    decided = Conflict("The gate was decided a moment ago.", code="gate-decided", title="Already decided")
    card = answer(Decisions(decide_raises=decided), card_action())
    assert "Already decided" in texts(card)
    assert notice_colors(card) == ["Accent"]  # information, not the warning of a refusal
    refused = Forbidden("You are not an approver of this stage.")
    assert notice_colors(answer(Decisions(decide_raises=refused), card_action())) == ["Warning"]


def test_the_time_spent_reaches_the_follow_up_service_for_every_verb_so_it_can_refuse_it():
    """The follow-up service refuses minutes on anything but a done task; the card must not drop them first."""
    for verb in ("acknowledge", "flag_rollback", "mark_done"):
        followups = FollowUps()
        answer(Decisions(), replace(card_action(verb), minutes="30"), followups=followups)
        assert followups.acts == [(verb, "", 30)]


def test_a_follow_up_whose_service_is_down_answers_the_outage_without_reading_the_gate():
    followups = FollowUps(act_raises=DependencyUnavailable("Storage did not answer.", title="Storage unavailable"))
    card = answer(Decisions(), card_action("acknowledge"), followups=followups)
    assert followups.views == 0
    assert texts(card)[:2] == ["Storage unavailable", "Storage did not answer."]


def test_a_refused_follow_up_on_a_gate_the_person_cannot_see_names_the_refusal_not_the_lookup():
    followups = FollowUps(
        act_raises=Forbidden("Only the tenant's operators acknowledge notices.", title="Not an operator"),
        view_raises=NotFound("No such gate.", title="Unknown gate"),
    )
    card = answer(Decisions(), card_action("acknowledge"), followups=followups)
    shown = texts(card)
    assert "Not an operator" in shown and "Only the tenant's operators acknowledge notices." in shown
    assert "Unknown gate" not in shown
    # a recorded follow-up whose card cannot be read back says why the card cannot be shown
    lost = FollowUps(view_raises=NotFound("No such gate.", title="Unknown gate"))
    shown = texts(answer(Decisions(), card_action("acknowledge", comment="seen"), followups=lost))
    assert "Unknown gate" in shown and "seen" in shown
