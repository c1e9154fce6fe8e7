"""The Block Kit messages an approver sees in Slack, built from `ApprovalView` (the Teams card's twin).

Pure: a message is a function of the gate's view and, for the person who just acted, what happened
(`Notice`). The same context as the card: the title, what will run (an action's exact command, verbatim, in
a `rich_text_preformatted` element, which Slack shows literally: no mrkdwn, no mentions, nothing to escape
out of), where (repository, ref, commit, run, with links), who asked, the policy's reasons, quality,
compliance, the recommendation when the view has one, the votes so far and the deadline; Approve / Reject
buttons while the gate waits; the outcome and no buttons once it is decided or expired.

Event and policy texts go into `plain_text` objects (Slack renders them as typed: `*bold*` and `<@U1>` stay
characters); the one mrkdwn block holds links built here from the view's https-checked URLs, with `&`, `<`,
`>` escaped as Slack requires. Every Block Kit limit that applies is enforced by clipping here (`LIMITS`) and
checked by `violations` (tests, the demo).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from gatekeeper.gates.view import ApprovalView

APPROVE_ACTION, REJECT_ACTION = "gatekeeper_approve", "gatekeeper_reject"
# An L1 notice's follow-up (the Teams card's Acknowledge / Flag for rollback, `gatekeeper.gates.followup`)
ACKNOWLEDGE_ACTION, FLAG_ROLLBACK_ACTION = "gatekeeper_acknowledge", "gatekeeper_flag_rollback"
FOLLOW_UP_VERBS = {ACKNOWLEDGE_ACTION: "acknowledge", FLAG_ROLLBACK_ACTION: "flag_rollback"}
# An L3 task's Mark done: the button opens a modal asking what was done and the time spent
MARK_DONE_ACTION, MARK_DONE_MODAL = "gatekeeper_mark_done", "gatekeeper_mark_done_modal"
NOTE_BLOCK, NOTE_ACTION = "note", "note_input"
MINUTES_BLOCK, MINUTES_ACTION = "minutes", "minutes_input"
MAX_MINUTES = 24 * 60  # the follow-up service's (and `ports.TimeEntry`'s) bound
FOLLOW_UP_KINDS = ("acknowledge", "flag_rollback", "mark_done")  # what a queued follow-up may ask for
REJECT_MODAL = "gatekeeper_reject_modal"
COMMENT_BLOCK, COMMENT_ACTION = "comment", "comment_input"
MAX_COMMENT = 1000  # the decision service's limit (and the follow-up service's note)

# https://docs.slack.dev/reference/block-kit/blocks and .../block-elements, .../composition-objects
LIMITS = {
    "message_blocks": 50,
    "modal_blocks": 100,
    "header_text": 150,
    "section_text": 3000,
    "section_fields": 10,
    "field_text": 2000,
    "context_elements": 10,
    "actions_elements": 25,
    "button_text": 75,
    "button_value": 2000,
    "action_id": 255,
    "block_id": 255,
    "url": 3000,
    "fallback_text": 4000,
    "modal_title": 24,
    "modal_button": 24,
    "private_metadata": 3000,
    "preformatted_text": 3000,
}
ELLIPSIS = "\u2026"

NoticeKind = Literal["approved", "rejected", "refused", "info"]


@dataclass(frozen=True)
class Notice:
    """What happened to this person's action, shown on top of their message."""

    kind: NoticeKind
    title: str
    detail: str = ""


def clip(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters in mrkdwn (docs: "Escaping text")."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text or " ", limit), "emoji": False}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _plain(text, LIMITS["section_text"])}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "none"


def _link(url: str | None, label: str) -> str | None:
    if not url or not url.startswith("https://") or len(url) > LIMITS["url"]:
        return None
    safe = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E").replace(" ", "%20")
    return f"<{safe}|{mrkdwn_escape(label)}>"


def _what(view: ApprovalView) -> list[dict[str, Any]]:
    if view.command:
        limit = LIMITS["preformatted_text"]
        shown = view.command
        blocks: list[dict[str, Any]] = [_section("Command (runs exactly as shown):")]
        if len(shown) > limit:
            blocks = [_section("Command (too long for Slack: the first part is shown; read it all on the page):")]
            shown = shown[:limit]
        blocks.append(
            {
                "type": "rich_text",
                "elements": [{"type": "rich_text_preformatted", "elements": [{"type": "text", "text": shown}]}],
            }
        )
        if view.plan_digest:
            blocks.append(_context(f"Plan digest: {view.plan_digest}"))
        return blocks
    return [_section(f"{view.action or 'deploy'} to {view.environment or 'an unnamed environment'}")]


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_plain(text, LIMITS["section_text"])]}


def _fields(pairs: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
    """Label/value pairs as sections of at most 10 plain-text fields each."""
    fields = [_plain(f"{label}: {value}", LIMITS["field_text"]) for label, value in pairs if value]
    size = LIMITS["section_fields"]
    return [{"type": "section", "fields": fields[i : i + size]} for i in range(0, len(fields), size)]


def _recommendation(view: ApprovalView) -> str | None:
    value = getattr(view, "recommendation", None)  # present once the recommender adds it to the view
    if value is None:
        return None
    summary = getattr(value, "summary", None) or getattr(value, "text", None) or value
    return str(summary) if summary else None


def _votes(view: ApprovalView) -> str:
    if not view.votes:
        return "Votes: none yet."
    lines = ["Votes:"]
    for vote in view.votes:
        comment = f": {vote.comment}" if vote.comment else ""
        lines.append(f"- {vote.decision} by {vote.voter_id} at {_when(vote.at)} (stage {vote.stage + 1}){comment}")
    return "\n".join(lines)


def _outcome(view: ApprovalView) -> str:
    reason = f" ({view.outcome})" if view.outcome else ""
    return f"Decided: {view.status.value}{reason} at {_when(view.decided_at)}. Nothing more to do here."


def _buttons(view: ApprovalView) -> dict[str, Any]:
    value = clip(view.instance_id, LIMITS["button_value"])
    return {
        "type": "actions",
        "block_id": "decision",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": _plain("Approve", LIMITS["button_text"]),
                "style": "primary",
                "value": value,
            },
            {
                "type": "button",
                "action_id": REJECT_ACTION,
                "text": _plain("Reject\u2026", LIMITS["button_text"]),
                "style": "danger",
                "value": value,
            },
        ],
    }


def fallback_text(view: ApprovalView) -> str:
    """The notification text (push, screen readers): plain, one line."""
    state = "Approval needed" if not view.decided else f"Approval {view.status.value}"
    return clip(" ".join(f"{state}: {view.title}".split()), LIMITS["fallback_text"])


def approval_message(view: ApprovalView, notice: Notice | None = None) -> dict[str, Any]:
    """`{"text", "blocks"}` for chat.postMessage / chat.update: buttons while `view.can_decide` and the gate
    waits, the outcome without buttons once decided or expired; `notice` on top for the person who acted."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(f"{view.level} approval: {view.title}", LIMITS["header_text"])}
    ]
    if notice is not None:
        blocks.append(_section(f"{notice.title} {notice.detail}".strip()))
    if view.decided:
        blocks.append({**_section(_outcome(view)), "block_id": "outcome"})
    blocks += _what(view)
    stage = view.stage
    blocks += _fields(
        [
            ("Repository", view.repository),
            ("Ref", view.ref),
            ("Commit", view.commit),
            ("Environment", view.environment),
            ("Run", view.run_id),
            ("Version", ", ".join(view.version_tags) or None),
            ("Artifacts", ", ".join(view.artifact_ids) or None),
            ("Requested by", view.requester.describe()),
            ("Rule", view.rule),
            (
                "Stage",
                f"{stage.name} ({stage.index + 1} of {len(view.stages)}), {stage.quorum} approval(s) needed"
                if stage
                else None,
            ),
            ("Deadline", _when(view.deadline) if view.deadline else None),
        ]
    )
    page = view.page_url if view.page_url and view.page_url.startswith("https://") else None
    links = [
        link
        for link in (
            _link(view.repository_url, "Repository"),
            _link(view.commit_url, "Commit"),
            _link(view.run_url, "Run"),
            _link(view.plan_url, "Plan"),
            _link(page, "Approval page"),
        )
        if link
    ]
    if links:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "  \u00b7  ".join(links)}})
    if view.reasons:
        blocks.append(_section("Why approval is needed:\n" + "\n".join(f"- {r}" for r in view.reasons)))
    if view.quality is not None:
        score = f" (score {view.quality.score:g})" if view.quality.score is not None else ""
        lines = [f"Quality: {view.quality.result}{score}"]
        lines += [f"- {o.name}: {o.detail}" if o.detail else f"- {o.name}" for o in view.quality.failing]
        blocks.append(_section("\n".join(lines)))
    if view.compliance:
        blocks.append(_section("Compliance: " + ", ".join(f"{t.framework} {t.control}" for t in view.compliance)))
    recommendation = _recommendation(view)
    if recommendation:
        blocks.append(_section(f"Recommendation: {recommendation}"))
    blocks.append({**_section(_votes(view)), "block_id": "votes"})
    if not view.decided and view.can_decide:
        blocks.append(_buttons(view))
    audit = f", audit entries {', '.join(view.audit.entry_ids[-5:])}" if view.audit.entry_ids else ""
    blocks.append(_context(f"Gate {view.instance_id}{audit}"))
    return {"text": fallback_text(view), "blocks": blocks[: LIMITS["message_blocks"]]}


FOLLOW_UP_DONE = {"acknowledge": "Acknowledged", "flag_rollback": "Flagged for rollback", "mark_done": "Marked done"}


def _follow_ups(done: list[dict[str, Any]]) -> str:
    """Who did what with the notice so far (the follow-up service's rows): person, when, minutes, note."""
    if not done:
        return "Follow-up: nobody has responded yet."
    lines = ["Follow-up:"]
    for entry in done[-20:]:
        who = entry.get("upn") or entry.get("by") or "someone"
        at = entry.get("at")
        when = f" at {_when(at)}" if isinstance(at, datetime) else ""
        minutes = f" ({entry['minutes']} min)" if entry.get("minutes") else ""
        note = f": {entry['note']}" if entry.get("note") else ""
        verb = FOLLOW_UP_DONE.get(str(entry.get("verb")), str(entry.get("verb")))
        lines.append(f"- {verb} by {who}{when}{minutes}{note}")
    return "\n".join(lines)


def _follow_up_buttons(view: ApprovalView, task: bool) -> dict[str, Any]:
    value = clip(view.instance_id, LIMITS["button_value"])
    if task:
        elements = [
            {
                "type": "button",
                "action_id": MARK_DONE_ACTION,
                "text": _plain("Mark done\u2026", LIMITS["button_text"]),
                "style": "primary",
                "value": value,
            }
        ]
    else:
        elements = [
            {
                "type": "button",
                "action_id": ACKNOWLEDGE_ACTION,
                "text": _plain("Acknowledge", LIMITS["button_text"]),
                "value": value,
            },
            {
                "type": "button",
                "action_id": FLAG_ROLLBACK_ACTION,
                "text": _plain("Flag for rollback", LIMITS["button_text"]),
                "style": "danger",
                "value": value,
            },
        ]
    return {"type": "actions", "block_id": "follow_up", "elements": elements}


def follow_up_message(
    view: ApprovalView, done: list[dict[str, Any]] | None = None, *, notice: Notice | None = None
) -> dict[str, Any]:
    """`{"text", "blocks"}` for an L1 notice (the change ran without approval: review it) or an L3 task (a
    person must carry it out): the same context as an approval, never vote buttons (there is nothing to vote
    on). As sent (`done` None): an L1 notice offers Acknowledge and Flag for rollback, an L3 task Mark done
    (a modal asks for the note and the time spent), the Teams card's actions (`gatekeeper.gates.followup`).
    Once someone acted on this message (`done`: the follow-up service's rows), it says who did what, with
    `notice` for the person who acted, and has no buttons."""
    task = view.status.value == "human_task"
    headline = f"L3 human action required: {view.title}" if task else f"L1 executed, please review: {view.title}"
    what = (
        "Automation refused this change (level L3). A person must review it, carry it out by hand and mark it "
        "done with a note."
        if task
        else "This change ran without approval (level L1): this is the notice that it did. Please review it: "
        "acknowledge it, or flag it for rollback."
    )
    shown = approval_message(view.model_copy(update={"can_decide": False}))
    blocks = [b for b in shown["blocks"] if b.get("block_id") not in ("votes", "outcome")]
    blocks[0] = {"type": "header", "text": _plain(headline, LIMITS["header_text"])}
    blocks.insert(1, _section(what))
    if notice is not None:
        blocks.insert(1, {**_section(f"{notice.title} {notice.detail}".strip()), "block_id": "notice"})
    if done is None:
        blocks.insert(len(blocks) - 1, _follow_up_buttons(view, task))  # before the gate's context line
    else:
        blocks.insert(len(blocks) - 1, {**_section(_follow_ups(done)), "block_id": "follow_ups"})
    text = clip(" ".join(headline.split()), LIMITS["fallback_text"])
    return {"text": text, "blocks": blocks[: LIMITS["message_blocks"]]}


def mark_done_modal(instance_id: str, channel: str, ts: str) -> dict[str, Any]:
    """The `views.open` view for marking an L3 task done: what was done (required) and the time spent in
    minutes (optional, 1..1440; checked again on submit). `private_metadata` says which gate and message."""
    return {
        "type": "modal",
        "callback_id": MARK_DONE_MODAL,
        "private_metadata": clip(f"{instance_id}|{channel}|{ts}", LIMITS["private_metadata"]),
        "title": _plain("Mark the task done", LIMITS["modal_title"]),
        "submit": _plain("Mark done", LIMITS["modal_button"]),
        "close": _plain("Cancel", LIMITS["modal_button"]),
        "blocks": [
            _section(f"Gate {instance_id}: say what was done. It is kept in the audit log (and the PSA ticket)."),
            {
                "type": "input",
                "block_id": NOTE_BLOCK,
                "label": _plain("What was done? (required)", 2000),
                "element": {
                    "type": "plain_text_input",
                    "action_id": NOTE_ACTION,
                    "multiline": True,
                    "min_length": 1,
                    "max_length": MAX_COMMENT,
                },
            },
            {
                "type": "input",
                "block_id": MINUTES_BLOCK,
                "optional": True,
                "label": _plain("Time spent (minutes)", 2000),
                "hint": _plain(f"Whole minutes, 1 to {MAX_MINUTES}; logged on the task's PSA ticket.", 2000),
                "element": {
                    "type": "number_input",
                    "action_id": MINUTES_ACTION,
                    "is_decimal_allowed": False,
                    "min_value": "1",
                    "max_value": str(MAX_MINUTES),
                },
            },
        ],
    }


def reject_modal(instance_id: str, channel: str, ts: str) -> dict[str, Any]:
    """The `views.open` view for a rejection: one required comment; `private_metadata` says which gate and
    which message (the gate id is checked again by the decision service on submit)."""
    metadata = f"{instance_id}|{channel}|{ts}"
    return {
        "type": "modal",
        "callback_id": REJECT_MODAL,
        "private_metadata": clip(metadata, LIMITS["private_metadata"]),
        "title": _plain("Reject the request", LIMITS["modal_title"]),
        "submit": _plain("Reject", LIMITS["modal_button"]),
        "close": _plain("Cancel", LIMITS["modal_button"]),
        "blocks": [
            _section(f"Gate {instance_id}: say why. The requester sees it and it is kept in the audit log."),
            {
                "type": "input",
                "block_id": COMMENT_BLOCK,
                "label": _plain("Why reject? (required)", 2000),
                "element": {
                    "type": "plain_text_input",
                    "action_id": COMMENT_ACTION,
                    "multiline": True,
                    "min_length": 1,
                    "max_length": MAX_COMMENT,
                },
            },
        ],
    }


# --- checking ------------------------------------------------------------------------------------------------


def _text_of(obj: Any) -> str:
    return obj.get("text", "") if isinstance(obj, dict) else ""


def violations(payload: dict[str, Any], *, modal: bool = False) -> list[str]:
    """Every Block Kit limit `payload` (a message or a modal view) breaks, as `path: what`; empty when valid."""
    found: list[str] = []
    blocks = payload.get("blocks", [])
    limit = LIMITS["modal_blocks"] if modal else LIMITS["message_blocks"]
    if len(blocks) > limit:
        found.append(f"blocks: {len(blocks)} > {limit}")
    if len(payload.get("text", "")) > LIMITS["fallback_text"]:
        found.append("text: too long")
    if modal:
        for key, lim in (("title", "modal_title"), ("submit", "modal_button"), ("close", "modal_button")):
            if len(_text_of(payload.get(key))) > LIMITS[lim]:
                found.append(f"{key}: longer than {LIMITS[lim]}")
        if len(payload.get("private_metadata", "")) > LIMITS["private_metadata"]:
            found.append("private_metadata: too long")
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        kind = block.get("type")
        if len(block.get("block_id", "")) > LIMITS["block_id"]:
            found.append(f"{where}.block_id: too long")
        if kind == "header" and len(_text_of(block.get("text"))) > LIMITS["header_text"]:
            found.append(f"{where}.text: header longer than {LIMITS['header_text']}")
        if kind == "section":
            if "text" not in block and "fields" not in block:
                found.append(f"{where}: a section needs text or fields")
            if len(_text_of(block.get("text"))) > LIMITS["section_text"]:
                found.append(f"{where}.text: longer than {LIMITS['section_text']}")
            fields = block.get("fields", [])
            if len(fields) > LIMITS["section_fields"]:
                found.append(f"{where}.fields: more than {LIMITS['section_fields']}")
            found += [
                f"{where}.fields[{j}]: longer than {LIMITS['field_text']}"
                for j, f in enumerate(fields)
                if len(_text_of(f)) > LIMITS["field_text"]
            ]
        if kind == "context" and len(block.get("elements", [])) > LIMITS["context_elements"]:
            found.append(f"{where}.elements: more than {LIMITS['context_elements']}")
        if kind == "actions":
            elements = block.get("elements", [])
            if len(elements) > LIMITS["actions_elements"]:
                found.append(f"{where}.elements: more than {LIMITS['actions_elements']}")
            for j, element in enumerate(elements):
                if len(_text_of(element.get("text"))) > LIMITS["button_text"]:
                    found.append(f"{where}.elements[{j}].text: longer than {LIMITS['button_text']}")
                if len(element.get("value", "")) > LIMITS["button_value"]:
                    found.append(f"{where}.elements[{j}].value: too long")
                if len(element.get("action_id", "")) > LIMITS["action_id"]:
                    found.append(f"{where}.elements[{j}].action_id: too long")
        if kind == "rich_text":
            for element in block.get("elements", []):
                for item in element.get("elements", []):
                    if len(item.get("text", "")) > LIMITS["preformatted_text"]:
                        found.append(f"{where}: preformatted text longer than {LIMITS['preformatted_text']}")
    return found
