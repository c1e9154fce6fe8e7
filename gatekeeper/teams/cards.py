"""The Adaptive Cards (schema 1.5, Universal Actions) an approver sees in Teams, built from `ApprovalView`.

Pure: a card is a function of the gate's view and, for an answer to a card action, of what happened to that
person's action (`CardNotice`). One card for every state, so an approver never has to open anything else to
decide: the title, what will run (the exact command for an action-level request, else the deployment), where
(repository, ref, commit, with links), who asked, the policy's reasons, the quality verdict and its failing
objectives, compliance tags, the votes so far and the deadline; `Action.Execute` Approve / Reject while the
gate waits (Reject needs a comment), and `refresh` for the stage's approvers so each sees live state. A
decided or expired gate renders as a read-only summary without buttons.

Every text that comes from an event or policy goes through `plain_text`, so a repository called
`[click](https://evil)` shows as those characters. Links come only from the view's https-checked URLs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from gatekeeper.gates.view import ApprovalView, plain_text
from gatekeeper.security.principal import GUID_PATTERN

CARD_VERSION = "1.5"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
APPROVE, REJECT, REFRESH = "approve", "reject", "refresh"
ACKNOWLEDGE, FLAG_ROLLBACK, MARK_DONE = "acknowledge", "flag_rollback", "mark_done"
NOTE_INPUT = "note"
MINUTES_INPUT = "minutes"  # an L3 task's time spent (optional, whole minutes 1..1440)
MAX_MINUTES = 24 * 60
COMMENT_INPUT = "comment"
REJECT_COMMENT_INPUT = "reject_comment"
MAX_COMMENT = 1000
MAX_FACT_CHARS = 500

NoticeKind = Literal["approved", "rejected", "refused", "already-decided", "expired", "info"]


@dataclass(frozen=True)
class CardNotice:
    """What happened to this person's action, shown at the top of the card they get back."""

    kind: NoticeKind
    title: str
    detail: str = ""

    @property
    def color(self) -> str:
        return {"approved": "Good", "rejected": "Attention", "refused": "Warning"}.get(self.kind, "Accent")


def _text(value: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": plain_text(value), "wrap": True, **style}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "none"


def _fact(title: str, value: str | None) -> dict[str, str] | None:
    if not value:
        return None
    short = value if len(value) <= MAX_FACT_CHARS else value[: MAX_FACT_CHARS - 1] + "\u2026"
    return {"title": plain_text(title), "value": plain_text(short)}


def _facts(*pairs: tuple[str, str | None]) -> dict[str, Any] | None:
    facts = [f for f in (_fact(t, v) for t, v in pairs) if f is not None]
    return {"type": "FactSet", "facts": facts} if facts else None


def _requester(view: ApprovalView) -> str:
    who = view.requester
    if who.resolved is False:
        claimed = f" (claimed: {who.display})" if who.display else ""
        return (who.note or "requester unresolved") + claimed
    name = who.upn or who.display or who.oid or "unknown"
    seen = f" via {', '.join(who.seen_as)}" if who.seen_as else ""
    return name + seen


def _what(view: ApprovalView) -> list[dict[str, Any]]:
    if view.command:
        blocks = [_text("Command (runs exactly as shown)", weight="Bolder", spacing="Medium")]
        blocks.append({"type": "TextBlock", "text": plain_text(view.command), "wrap": True, "fontType": "Monospace"})
        if view.plan_digest:
            blocks.append(_text(f"Plan digest: {view.plan_digest}", isSubtle=True, size="Small"))
        return blocks
    what = f"{view.action or 'deploy'} to {view.environment or 'an unnamed environment'}"
    return [_text(what, weight="Bolder", spacing="Medium")]


def _quality(view: ApprovalView) -> list[dict[str, Any]]:
    if view.quality is None:
        return []
    score = f" (score {view.quality.score:g})" if view.quality.score is not None else ""
    blocks = [
        _text(
            f"Quality: {view.quality.result}{score}", color="Attention" if view.quality.result == "fail" else "Default"
        )
    ]
    blocks += [
        _text(f"- {o.name}: {o.detail}" if o.detail else f"- {o.name}", size="Small") for o in view.quality.failing
    ]
    return blocks


def _votes(view: ApprovalView) -> list[dict[str, Any]]:
    if not view.votes:
        return [_text("No votes yet.", isSubtle=True)]
    lines = []
    for vote in view.votes:
        comment = f": {vote.comment}" if vote.comment else ""
        lines.append(
            _text(
                f"{vote.decision} by {vote.voter_id} at {_when(vote.at)} (stage {vote.stage + 1}){comment}",
                size="Small",
            )
        )
    return lines


def _links(view: ApprovalView) -> list[dict[str, Any]]:
    links = [
        ("Repository", view.repository_url),
        ("Commit", view.commit_url),
        ("Run", view.run_url),
        ("Plan", view.plan_url),
        ("Open the approval page", view.page_url if view.page_url and view.page_url.startswith("https://") else None),
    ]
    return [{"type": "Action.OpenUrl", "title": title, "url": url} for title, url in links if url]


def _body(view: ApprovalView) -> list[dict[str, Any]]:
    stage = view.stage
    body: list[dict[str, Any]] = [
        _text(f"{view.level} approval: {view.title}", size="Large", weight="Bolder"),
        *_what(view),
    ]
    where = _facts(
        ("Repository", view.repository),
        ("Ref", view.ref),
        ("Commit", view.commit),
        ("Environment", view.environment),
        ("Run", view.run_id),
        ("Version", ", ".join(view.version_tags) or None),
        ("Artifacts", ", ".join(view.artifact_ids) or None),
        ("Requested by", _requester(view)),
        ("Rule", view.rule),
        (
            "Stage",
            f"{stage.name} ({stage.index + 1} of {len(view.stages)}), {stage.quorum} approval(s) needed"
            if stage
            else None,
        ),
        ("Deadline", _when(view.deadline) if view.deadline else None),
        ("Gate", view.instance_id),
    )
    if where:
        body.append(where)
    if view.reasons:
        body.append(_text("Why approval is needed", weight="Bolder", spacing="Medium"))
        body += [_text(f"- {reason}", size="Small") for reason in view.reasons]
    body += _quality(view)
    if view.recommendation is not None:
        body.append(_text(f"Recommendation: {view.recommendation.headline()}", spacing="Medium"))
        body += [_text(f"- {reason}", size="Small") for reason in view.recommendation.reasons]
    if view.compliance:
        tags = ", ".join(f"{t.framework} {t.control}" for t in view.compliance)
        body.append(_text(f"Compliance: {tags}", size="Small"))
    body.append(_text("Votes", weight="Bolder", spacing="Medium"))
    body += _votes(view)
    return body


def _notice(notice: CardNotice) -> dict[str, Any]:
    items = [_text(notice.title, weight="Bolder", color=notice.color)]
    if notice.detail:
        items.append(_text(notice.detail, size="Small"))
    return {"type": "Container", "style": "emphasis", "items": items}


TEAMS_USER_MRI_PREFIX = "8:orgid:"
MAX_REFRESH_USERS = 60


def _refresh(view: ApprovalView) -> dict[str, Any]:
    approvers = view.stage.approvers if view.stage else ()
    # userIds are Teams user MRIs (`8:orgid:<Entra object id>`), at most 60: Teams refreshes those users' cards
    # by itself; anyone else sees a manual refresh. Approvers named by UPN or group are left to that.
    oids = sorted({a.lower() for a in approvers if GUID_PATTERN.match(a.lower())})
    user_ids = [f"{TEAMS_USER_MRI_PREFIX}{oid}" for oid in oids[:MAX_REFRESH_USERS]]
    refresh: dict[str, Any] = {
        "type": "Refresh",
        "action": {"type": "Action.Execute", "verb": REFRESH, "data": {"instance_id": view.instance_id}},
    }
    if user_ids:
        refresh["userIds"] = user_ids
    return refresh


def _decision_inputs(view: ApprovalView) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    comment = {
        "type": "Input.Text",
        "id": COMMENT_INPUT,
        "label": "Comment (optional when approving)",
        "isMultiline": True,
        "maxLength": MAX_COMMENT,
        "placeholder": "Why? (shown to the requester and kept in the audit log)",
    }
    data = {"instance_id": view.instance_id}
    actions = [
        {
            "type": "Action.Execute",
            "title": "Approve",
            "verb": APPROVE,
            "data": data,
            "style": "positive",
            "associatedInputs": "auto",
        },
        {
            "type": "Action.ShowCard",
            "title": "Reject",
            "card": {
                "type": "AdaptiveCard",
                "body": [
                    {
                        **comment,
                        "id": REJECT_COMMENT_INPUT,
                        "label": "Why reject? (required)",
                        "isRequired": True,
                        "errorMessage": "A comment is required to reject.",
                    }
                ],
                "actions": [
                    {"type": "Action.Execute", "title": "Reject", "verb": REJECT, "data": data, "style": "destructive"}
                ],
            },
        },
    ]
    return [comment], actions


def approval_card(view: ApprovalView, notice: CardNotice | None = None) -> dict[str, Any]:
    """The card for `view`: with Approve / Reject while the viewer may decide (`view.can_decide`), read-only
    otherwise; a decided or expired gate is the read-only summary. `notice` says what happened to the
    viewer's own action."""
    body: list[dict[str, Any]] = []
    if notice is not None:
        body.append(_notice(notice))
    if view.decided:
        body.append(_outcome(view))
    body += _body(view)
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "fallbackText": plain_text(f"Approval: {view.title} ({view.status.value})"),
    }
    actions = _links(view)
    if not view.decided:
        card["refresh"] = _refresh(view)
        if view.can_decide:
            inputs, decision_actions = _decision_inputs(view)
            body += inputs
            actions = decision_actions + actions
        elif notice is None:
            body.append(_text("You cannot decide on this gate now.", isSubtle=True))
    card["body"] = body
    if actions:
        card["actions"] = actions
    return card


def _outcome(view: ApprovalView) -> dict[str, Any]:
    outcome = view.status.value.replace("_", " ")
    reason = f": {view.outcome}" if view.outcome else ""
    return {
        "type": "Container",
        "style": "good" if view.status.value == "approved" else "attention",
        "items": [_text(f"Decided {outcome} at {_when(view.decided_at)}{reason}", weight="Bolder")],
    }


FOLLOW_UP_TITLES = {ACKNOWLEDGE: "acknowledged", FLAG_ROLLBACK: "flagged for rollback", MARK_DONE: "marked done"}


def follow_up_card(
    view: ApprovalView,
    done: list[dict[str, Any]],
    *,
    can_act: bool,
    notice: CardNotice | None = None,
) -> dict[str, Any]:
    """The card for an L1 notice (the change ran: Acknowledge / Flag for rollback) or an L3 task (a person
    must do it: Mark done, with a note and optionally the time spent), with what people did so far; buttons
    only while `can_act`."""
    task = view.status.value == "human_task"
    headline = f"L3 human action required: {view.title}" if task else f"L1 executed, please review: {view.title}"
    body: list[dict[str, Any]] = [_notice(notice)] if notice is not None else []
    body.append(_text(headline, size="Large", weight="Bolder"))
    body += _body(view)[1:]  # the same context as an approval, without its headline
    body.append(_text("Follow-up", weight="Bolder", spacing="Medium"))
    if done:
        for entry in done:
            note = f" ({entry['minutes']} min)" if entry.get("minutes") else ""
            note += f": {entry['note']}" if entry.get("note") else ""
            when = entry["at"].strftime("%Y-%m-%d %H:%M UTC") if isinstance(entry.get("at"), datetime) else ""
            body.append(
                _text(
                    f"{FOLLOW_UP_TITLES.get(entry['verb'], entry['verb'])} by {entry['by']} {when}{note}", size="Small"
                )
            )
    else:
        body.append(_text("Nobody has responded yet.", isSubtle=True))
    data = {"instance_id": view.instance_id}
    actions: list[dict[str, Any]] = []
    if can_act and task:
        body.append(
            {
                "type": "Input.Text",
                "id": NOTE_INPUT,
                "label": "What was done? (required)",
                "isMultiline": True,
                "isRequired": True,
                "maxLength": MAX_COMMENT,
                "errorMessage": "Say what was done.",
            }
        )
        body.append(
            {
                "type": "Input.Number",
                "id": MINUTES_INPUT,
                "label": "Time spent (minutes, optional)",
                "min": 1,
                "max": MAX_MINUTES,
                "errorMessage": f"Whole minutes, 1 to {MAX_MINUTES}.",
            }
        )
        actions.append(
            {"type": "Action.Execute", "title": "Mark done", "verb": MARK_DONE, "data": data, "style": "positive"}
        )
    elif can_act:
        body.append(
            {
                "type": "Input.Text",
                "id": NOTE_INPUT,
                "label": "Note (optional)",
                "isMultiline": True,
                "maxLength": MAX_COMMENT,
            }
        )
        actions.append(
            {
                "type": "Action.Execute",
                "title": "Acknowledge",
                "verb": ACKNOWLEDGE,
                "data": data,
                "associatedInputs": "auto",
            }
        )
        actions.append(
            {
                "type": "Action.Execute",
                "title": "Flag for rollback",
                "verb": FLAG_ROLLBACK,
                "data": data,
                "style": "destructive",
            }
        )
    actions += _links(view)
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "fallbackText": plain_text(headline),
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return card


def refusal_card(title: str, detail: str) -> dict[str, Any]:
    """A card for an action that names no gate this person may see (unknown gate, another tenant): it says
    why and shows nothing of any gate."""
    return {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": [_notice(CardNotice("refused", title, detail))],
    }


def invoke_response(card: dict[str, Any]) -> dict[str, Any]:
    """The body of the HTTP 200 answer to an `adaptiveCard/action` invoke that replaces the card."""
    return {"statusCode": 200, "type": CARD_CONTENT_TYPE, "value": card}
