"""A Teams card action becomes a decision: who clicked, on which gate, and what they see next.

The Bot Connector authenticated the activity (`gatekeeper.teams.auth`); inside it Teams names the person by
`from.aadObjectId` and the tenant by `conversation.tenantId` and `channelData.tenant.id` (both must agree
where both are present). That person becomes a `Principal` like the HTTP route's caller (auth "teams"), and
the one `DecisionService` decides with every check it makes for the API (current-stage approver, tenant, no
self-approval, one vote, deadline): nothing is checked twice or differently here.

The answer is always a card (the invoke response replaces the card the person clicked): the gate's current
state with what happened to their action, or, when they may not see the gate, only why. A refusal is never an
HTTP error to Teams, which would show the person a generic "something went wrong": time spent that is not
whole minutes within 1..1440 is answered on the card, naming the field, before anything is recorded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gatekeeper.errors import DependencyUnavailable, Forbidden, GatekeeperError, Gone, InvalidInput, NotFound
from gatekeeper.gates.view import ApprovalView
from gatekeeper.security.principal import GUID_PATTERN, Principal
from gatekeeper.security.requester import DirectoryUnavailable, UserDirectory
from gatekeeper.teams.cards import (
    ACKNOWLEDGE,
    APPROVE,
    COMMENT_INPUT,
    FLAG_ROLLBACK,
    FOLLOW_UP_TITLES,
    MARK_DONE,
    MAX_COMMENT,
    MINUTES_INPUT,
    NOTE_INPUT,
    REFRESH,
    REJECT,
    REJECT_COMMENT_INPUT,
    CardNotice,
    approval_card,
    follow_up_card,
    refusal_card,
)

log = logging.getLogger("gatekeeper.teams")

CARD_ACTION = "adaptiveCard/action"
TEAMS_CHANNEL = "msteams"
FOLLOW_UPS = (ACKNOWLEDGE, FLAG_ROLLBACK, MARK_DONE)
VERBS = (APPROVE, REJECT, REFRESH, *FOLLOW_UPS)
MAX_ID_CHARS = 200


class Decisions(Protocol):
    """What the bot needs of `gatekeeper.gates.decisions.DecisionService`."""

    def decide(self, instance_id: str, principal: Principal, body: bytes) -> tuple[int, dict[str, Any]]: ...

    def view(self, instance_id: str, principal: Principal) -> ApprovalView: ...


class FollowUps(Protocol):
    """What the bot needs of `gatekeeper.gates.followup.FollowUpService` (L1 notices, L3 tasks)."""

    def act(
        self, instance_id: str, principal: Principal, verb: str, note: str = "", minutes: int | None = None
    ) -> dict[str, Any]: ...

    def view(self, instance_id: str, principal: Principal) -> tuple[ApprovalView, list[dict[str, Any]], bool]: ...


@dataclass(frozen=True)
class CardAction:
    verb: str
    instance_id: str
    comment: str
    voter_oid: str
    tenant_id: str
    name: str | None = None
    upn: str | None = None  # from the directory, never from the activity
    minutes: Any = None  # the time-spent input as typed (a short text or number), read by `parse_minutes`


def _field(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{path} must be an object", field=path)
    return value


def _string(value: Any, path: str, *, max_chars: int = MAX_ID_CHARS) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{path} is required", field=path)
    if len(value) > max_chars:
        raise InvalidInput(f"{path} is longer than {max_chars} characters", field=path)
    return value.strip()


def _guid(value: Any, path: str) -> str:
    text = _string(value, path).lower()
    if not GUID_PATTERN.match(text):
        raise InvalidInput(f"{path} must be an Entra object or tenant id (a GUID)", field=path)
    return text


def parse_card_action(activity: Mapping[str, Any]) -> CardAction:
    """The card action in an `adaptiveCard/action` invoke from Teams; InvalidInput naming the field."""
    if activity.get("type") != "invoke" or activity.get("name") != CARD_ACTION:
        raise InvalidInput(f"only '{CARD_ACTION}' invokes are answered", field="name")
    if activity.get("channelId") != TEAMS_CHANNEL:
        raise InvalidInput(f"card actions are accepted from the '{TEAMS_CHANNEL}' channel only", field="channelId")
    sender = _field(activity.get("from"), "from")
    voter = _guid(sender.get("aadObjectId"), "from.aadObjectId")
    conversation = _field(activity.get("conversation"), "conversation")
    channel_data = activity.get("channelData")
    tenants = {
        path: _guid(value, path)
        for path, value in (
            ("conversation.tenantId", conversation.get("tenantId")),
            (
                "channelData.tenant.id",
                ((channel_data or {}).get("tenant") or {}).get("id") if isinstance(channel_data, Mapping) else None,
            ),
        )
        if value is not None
    }
    if not tenants:
        raise InvalidInput("the activity names no tenant", field="conversation.tenantId")
    if len(set(tenants.values())) != 1:
        raise InvalidInput("conversation.tenantId and channelData.tenant.id disagree", field="channelData.tenant.id")
    value = _field(activity.get("value"), "value")
    action = _field(value.get("action"), "value.action")
    verb = _string(action.get("verb"), "value.action.verb")
    if verb not in VERBS:
        raise InvalidInput(f"value.action.verb must be one of {', '.join(VERBS)}", field="value.action.verb")
    data = _field(action.get("data"), "value.action.data")
    instance_id = _string(data.get("instance_id"), "value.action.data.instance_id")
    comment = data.get(REJECT_COMMENT_INPUT) or data.get(COMMENT_INPUT) or data.get(NOTE_INPUT) or ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise InvalidInput(f"the comment must be text of at most {MAX_COMMENT} characters", field="comment")
    minutes = data.get(MINUTES_INPUT)
    if minutes is not None and (
        isinstance(minutes, bool) or not isinstance(minutes, str | int | float) or len(str(minutes)) > 20
    ):
        raise InvalidInput("the time spent must be a number of minutes", field=MINUTES_INPUT)
    name = sender.get("name")
    return CardAction(
        verb=verb,
        instance_id=instance_id,
        comment=comment.strip(),
        voter_oid=voter,
        tenant_id=next(iter(tenants.values())),
        name=name[:MAX_ID_CHARS] if isinstance(name, str) else None,
        minutes=minutes,
    )


def principal_of(action: CardAction) -> Principal:
    """The person Teams vouches for, as the decision service takes it: object id, tenant and, when the
    directory knows it, the UPN (approvers are often named by UPN); no groups (a card action carries none:
    group approvers are asked about through the directory)."""
    return Principal(
        oid=action.voter_oid,
        tid=action.tenant_id,
        name=action.name,
        upn=action.upn,
        auth="teams",
        groups_overage=True,
    )


def with_directory_name(action: CardAction, directory: UserDirectory | None) -> CardAction:
    """The action with the voter's UPN from the directory. Without a directory, or when it cannot answer
    now, the voter goes on by object id alone (a stage naming them by UPN then says they are not on it)."""
    if directory is None:
        return action
    try:
        user = directory.user(action.voter_oid)
    except DirectoryUnavailable:
        log.warning("card action: the directory could not name the voter")
        return action
    if user is None or user.oid.lower() != action.voter_oid or not user.upn:
        return action
    return replace(action, upn=user.upn)


def _notice_for(problem: GatekeeperError) -> CardNotice:
    kind: Any = "refused"
    if problem.code == "gate-decided":
        kind = "already-decided"
    elif problem.code == "past-deadline":
        kind = "expired"
    return CardNotice(kind, problem.title, problem.detail)


def _card_or_refusal(decisions: Decisions, action: CardAction, notice: CardNotice | None) -> dict[str, Any]:
    """The gate as this person may see it, with `notice` on top; only the notice when they may not see it."""
    try:
        return approval_card(decisions.view(action.instance_id, principal_of(action)), notice)
    except Gone:
        raise
    except (Forbidden, NotFound, InvalidInput) as problem:
        if notice is not None:
            return refusal_card(notice.title, notice.detail)
        return refusal_card(problem.title, problem.detail)


def _follow_up(followups: FollowUps, action: CardAction) -> dict[str, Any]:
    """An L1 acknowledgement or rollback flag, or an L3 "done": recorded (and audited) by the follow-up
    service, answered with the notice's card as the person may now see it."""
    from gatekeeper.gates.followup import parse_minutes

    principal = principal_of(action)
    try:
        minutes = parse_minutes(action.minutes)  # InvalidInput naming `minutes`: shown on the card
        followups.act(action.instance_id, principal, action.verb, action.comment, minutes)
        spent = f" ({minutes} min)" if minutes else ""
        notice = CardNotice("info", f"Recorded: {FOLLOW_UP_TITLES[action.verb]}{spent}.", action.comment)
    except DependencyUnavailable as problem:
        return refusal_card(problem.title, problem.detail)
    except GatekeeperError as problem:
        log.info("card follow-up refused: %s %s", action.verb, problem.code)
        notice = CardNotice("refused", problem.title, problem.detail)
    try:
        view, done, can_act = followups.view(action.instance_id, principal)
    except GatekeeperError as problem:
        return refusal_card(
            notice.title if notice.kind == "refused" else problem.title, notice.detail or problem.detail
        )
    return follow_up_card(view, done, can_act=can_act, notice=notice)


def answer(
    decisions: Decisions,
    action: CardAction,
    directory: UserDirectory | None = None,
    followups: FollowUps | None = None,
) -> dict[str, Any]:
    """The card that answers `action`: a refresh shows the current state, a vote is decided and shown, an
    L1/L3 follow-up is recorded and shown."""
    action = with_directory_name(action, directory)
    if action.verb in FOLLOW_UPS:
        if followups is None:
            return refusal_card("Not available", "Follow-ups are not taken here.")
        return _follow_up(followups, action)
    try:
        if action.verb == REFRESH:
            return _card_or_refusal(decisions, action, None)
        if action.verb == REJECT and not action.comment:
            needed = CardNotice(
                "refused", "A comment is required to reject.", "Nothing was recorded; say why and reject again."
            )
            return _card_or_refusal(decisions, action, needed)
        body = json.dumps({"decision": action.verb, "comment": action.comment}).encode()
        decisions.decide(action.instance_id, principal_of(action), body)
        notice = (
            CardNotice("approved", "You approved this request.", action.comment)
            if action.verb == APPROVE
            else CardNotice("rejected", "You rejected this request.", action.comment)
        )
        return _card_or_refusal(decisions, action, notice)
    except DependencyUnavailable as problem:
        return refusal_card(problem.title, problem.detail + " Nothing was recorded unless the card says so.")
    except GatekeeperError as problem:
        log.info("card action refused: %s %s", action.verb, problem.code)
        try:
            return _card_or_refusal(decisions, action, _notice_for(problem))
        except GatekeeperError:
            return refusal_card(problem.title, problem.detail)
