"""The approval page's HTML: an `ApprovalView` rendered for a browser, with no script at all.

Why its own module: the page is a public contract (`GET /api/approvals/{id}/page`) that people read and act
on from mail and the Teams activity feed, so what it shows and how it escapes must be testable without a
host. Every value from events and policy passes through `html.escape` (`_e`) before it reaches the markup,
links are emitted only for the view's https URLs, and the one inline stylesheet is allowed by its hash in the
Content-Security-Policy (`HEADERS`), so nothing else can style, script or load into the page.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape
from urllib.parse import quote

from gatekeeper.contracts.gate import GateStatus
from gatekeeper.gates.view import ApprovalView

STYLE = """
:root{color-scheme:light}
body{margin:0;font:16px/1.5 "Segoe UI",system-ui,sans-serif;color:#1b1b1b;background:#f3f4f6}
header{background:#1f2937;color:#fff;padding:.75rem 1.5rem}
header p{margin:0;font-weight:600}
main{max-width:52rem;margin:1.5rem auto;padding:1.5rem;background:#fff;border:1px solid #d1d5db;border-radius:6px}
h1{font-size:1.5rem;margin:0 0 .5rem}
h2{font-size:1.15rem;margin:1.5rem 0 .5rem;border-bottom:1px solid #e5e7eb;padding-bottom:.25rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:0}
dt{font-weight:600}
dd{margin:0;overflow-wrap:anywhere}
pre{background:#111827;color:#f9fafb;padding:.75rem;border-radius:4px;overflow-x:auto;white-space:pre-wrap;
overflow-wrap:anywhere}
code{font-family:Consolas,"Courier New",monospace}
a{color:#1d4ed8}
a:focus,button:focus,textarea:focus{outline:3px solid #b45309;outline-offset:2px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;border-bottom:1px solid #e5e7eb;padding:.25rem .5rem;vertical-align:top}
th{white-space:nowrap}
td{overflow-wrap:anywhere}
.status{font-weight:600}
.warning{background:#fef3c7;border-left:4px solid #b45309;padding:.5rem .75rem}
.notice{border-left:4px solid #b91c1c;background:#fef2f2;padding:.5rem .75rem}
.notice h2{border:0;margin:0;font-size:1rem}
.done{border-left:4px solid #166534;background:#f0fdf4;padding:.5rem .75rem}
.forms{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:1rem}
form{border:1px solid #d1d5db;border-radius:6px;padding:1rem}
label{display:block;font-weight:600;margin-bottom:.25rem}
textarea{width:100%;box-sizing:border-box;font:inherit;border:1px solid #6b7280;border-radius:4px}
button{margin-top:.75rem;font:inherit;font-weight:600;padding:.5rem 1.25rem;border:0;border-radius:4px;color:#fff;
cursor:pointer}
button.approve{background:#166534}
button.reject{background:#b91c1c}
""".strip()

STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()

CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src '{STYLE_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
}
"""Every answer of the page routes carries these (the page, its error pages and its redirects)."""

HTML_MEDIA_TYPE = "text/html"

_STATUS_LABEL = {
    GateStatus.EVALUATED: "Evaluated",
    GateStatus.AWAITING_APPROVAL: "Waiting for approval",
    GateStatus.APPROVED: "Approved",
    GateStatus.REJECTED: "Rejected",
    GateStatus.HUMAN_TASK: "Handed to a person",
}


def page_path(instance_id: str) -> str:
    """The page's path, as links, forms and the login redirect name it (`ApprovalView.page_url`'s path)."""
    return f"/api/approvals/{quote(instance_id, safe='')}/page"


def _e(value: object) -> str:
    """Escaped for HTML text and quoted attribute values."""
    return escape(str(value), quote=True)


def _when(value: datetime | None) -> str:
    if value is None:
        return "not set"
    return f'<time datetime="{_e(value.isoformat())}">{_e(value.strftime("%Y-%m-%d %H:%M UTC"))}</time>'


def _link(text: str | None, url: str | None) -> str:
    """The text, linked only when the view gave an https URL (never `javascript:` or `data:`)."""
    shown = _e(text) if text else (_e(url) if url else "")
    if url and url.startswith("https://"):
        return f'<a href="{_e(url)}" rel="noreferrer noopener">{shown}</a>'
    return shown


def _rows(pairs: Iterable[tuple[str, str | None]]) -> str:
    """<dt>/<dd> pairs; values are markup already escaped by the caller, None rows are left out."""
    return "".join(f"<dt>{_e(name)}</dt><dd>{value}</dd>" for name, value in pairs if value)


def _list(items: Iterable[str], *, ordered: bool = False) -> str:
    tag = "ol" if ordered else "ul"
    body = "".join(f"<li>{item}</li>" for item in items)
    return f"<{tag}>{body}</{tag}>" if body else ""


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section aria-labelledby="{anchor}"><h2 id="{anchor}">{_e(heading)}</h2>{body}</section>'


def _what(view: ApprovalView) -> str:
    if view.kind == "action" and view.command:
        body = f'<p>This exact command will run:</p><pre aria-label="Command"><code>{_e(view.command)}</code></pre>' + (
            "<dl>"
            + _rows(
                [
                    ("Plan digest", f"<code>{_e(view.plan_digest)}</code>" if view.plan_digest else None),
                    ("Full plan", _link("the full plan", view.plan_url) if view.plan_url else None),
                    ("Environment", _e(view.environment) if view.environment else None),
                ]
            )
            + "</dl>"
        )
    else:
        body = (
            "<dl>"
            + _rows(
                [
                    ("Action", _e(view.action or "deployment")),
                    ("Environment", _e(view.environment) if view.environment else None),
                    ("Source", _e(view.source) if view.source else None),
                    ("Level", _e(view.level)),
                ]
            )
            + "</dl>"
        )
    return _section("what", "What will run", body)


def _where(view: ApprovalView) -> str:
    rows = [
        ("Repository", _link(view.repository, view.repository_url) if view.repository else None),
        ("Ref", f"<code>{_e(view.ref)}</code>" if view.ref else None),
        ("Commit", _link(view.commit, view.commit_url) if view.commit else None),
        ("Run", _link(view.run_id, view.run_url) if view.run_id else None),
        ("Version tags", ", ".join(_e(t) for t in view.version_tags) or None),
        ("Artifacts", ", ".join(_e(a) for a in view.artifact_ids) or None),
    ]
    body = "<dl>" + _rows(rows) + "</dl>" if any(v for _, v in rows) else "<p>No repository was named.</p>"
    return _section("where", "Where", body)


def _who(view: ApprovalView) -> str:
    who = view.requester
    rows = [
        ("Name (as the source claimed it)", _e(who.display) if who.display else None),
        ("Directory name", _e(who.upn) if who.upn else None),
        ("Entra object id", f"<code>{_e(who.oid)}</code>" if who.oid else None),
        ("Seen as", ", ".join(f"<code>{_e(s)}</code>" for s in who.seen_as) or None),
    ]
    if who.resolved is True:
        state = "<p>Authenticated identity, resolved in the directory.</p>"
    elif who.resolved is False:
        state = f'<p class="warning"><strong>Unresolved.</strong> {_e(who.note or "requester unresolved")}</p>'
    else:
        state = '<p class="warning">This gate was evaluated before requesters were resolved.</p>'
    return _section("who", "Who asked", state + ("<dl>" + _rows(rows) + "</dl>" if any(v for _, v in rows) else ""))


def _why(view: ApprovalView) -> str:
    body = (f"<p>Policy rule: <code>{_e(view.rule)}</code></p>" if view.rule else "") + (
        _list(_e(r) for r in view.reasons) or "<p>The policy gave no reasons.</p>"
    )
    return _section("why", "Why approval is needed", body)


def _quality(view: ApprovalView) -> str:
    quality = view.quality
    if quality is None:
        return _section("quality", "Quality", "<p>No quality evidence was sent.</p>")
    score = f" (score {quality.score:.2f})" if quality.score is not None else ""
    failing = _list(
        f"<strong>{_e(o.name)}</strong>" + (f": {_e(o.detail)}" if o.detail else "") for o in quality.failing
    )
    body = f"<p>Verdict: <strong>{_e(quality.result)}</strong>{_e(score)}</p>" + (
        "<p>Failing objectives:</p>" + failing if failing else ""
    )
    return _section("quality", "Quality", body)


def _recommendation(view: ApprovalView) -> str:
    advice = view.recommendation
    if advice is None:
        return ""
    body = (
        f"<p>Recommended: <strong>{_e(advice.verdict.replace('_', ' '))}</strong>"
        f" (confidence {advice.confidence:.0%}, p(approve) {advice.p_approve:.0%},"
        f" model <code>{_e(advice.model_version)}</code>). Advice only: you decide.</p>"
        + _list(_e(r) for r in advice.reasons)
    )
    return _section("recommendation", "Recommendation", body)


def _compliance(view: ApprovalView) -> str:
    if not view.compliance:
        return ""
    return _section(
        "compliance",
        "Compliance",
        _list(f"{_e(tag.framework)} <code>{_e(tag.control)}</code>" for tag in view.compliance),
    )


def _chain(view: ApprovalView) -> str:
    current = view.stage.index if view.stage else None
    stages = _list(
        [
            f'<span aria-current="step">{_e(name)} (current), {quorum} approval(s) needed</span>'
            if index == current
            else f"{_e(name)}, {quorum} approval(s) needed"
            for index, (name, quorum) in enumerate(view.stages)
        ],
        ordered=True,
    )
    rows = ""
    if view.stage is not None:
        rows = (
            "<dl>"
            + _rows(
                [
                    ("Current stage approvers", ", ".join(f"<code>{_e(a)}</code>" for a in view.stage.approvers)),
                    ("On timeout", _e(view.stage.on_timeout)),
                ]
            )
            + "</dl>"
        )
    deadline = f"<p>Deadline: {_when(view.deadline)}</p>" if view.deadline else ""
    return _section("chain", "Approval chain", (stages or "<p>No approval stages.</p>") + rows + deadline)


def _votes(view: ApprovalView) -> str:
    if not view.votes:
        return _section("votes", "Votes so far", "<p>No votes yet.</p>")
    rows = "".join(
        f"<tr><td><code>{_e(v.voter_id)}</code></td><td>{_e(v.decision)}</td><td>{v.stage + 1}</td>"
        f"<td>{_when(v.at)}</td><td>{_e(v.comment)}</td></tr>"
        for v in view.votes
    )
    table = (
        '<table><caption class="status">Votes recorded for this gate</caption><thead><tr>'
        '<th scope="col">Voter</th><th scope="col">Decision</th><th scope="col">Stage</th>'
        '<th scope="col">At</th><th scope="col">Comment</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )
    return _section("votes", "Votes so far", table)


def _audit(view: ApprovalView) -> str:
    ids = _list(f"<code>{_e(i)}</code>" for i in view.audit.entry_ids)
    body = ("<p>Audit entries of this gate:</p>" + ids if ids else "<p>Audit entries are listed in the export.</p>") + (
        f"<p>Inclusion proofs: <code>{_e(view.audit.proof_endpoint)}</code></p>" if view.audit.proof_endpoint else ""
    )
    return _section("audit", "Audit", body)


def _decision(view: ApprovalView, form_token: str | None, viewer_oid: str | None, now: datetime) -> str:
    mine = [v for v in view.votes if viewer_oid and v.voter_id.lower() == viewer_oid.lower()]
    yours = (
        f'<p class="done" role="status">Your vote: <strong>{_e(mine[-1].decision)}</strong>, recorded '
        f"{_when(mine[-1].at)}.</p>"
        if mine
        else ""
    )
    if view.decided:
        outcome = _STATUS_LABEL.get(view.status, view.status.value)
        body = (
            f'<p class="status">Outcome: <strong>{_e(outcome)}</strong>'
            + (f" at {_when(view.decided_at)}" if view.decided_at else "")
            + "</p>"
            + (f"<p>{_e(view.outcome)}</p>" if view.outcome else "")
            + "<p>This gate is closed: no more decisions are taken.</p>"
        )
        return _section("decision", "Outcome", yours + body)
    if view.deadline is not None and view.deadline <= now:
        body = (
            f'<p class="status">Expired: the deadline passed at {_when(view.deadline)}.</p>'
            "<p>No more decisions are taken; the approval chain applies its timeout rule.</p>"
        )
        return _section("decision", "Outcome", yours + body)
    if not view.can_decide or not form_token:
        why = (
            "You have voted on this gate."
            if mine
            else "You cannot decide on this gate now: it is not waiting for you (another stage, or not yet asking)."
        )
        return _section("decision", "Your decision", yours + f"<p>{_e(why)}</p>")
    action = _e(page_path(view.instance_id))
    token = _e(form_token)
    forms = (
        '<div class="forms">'
        f'<form method="post" action="{action}" aria-label="Approve">'
        f'<input type="hidden" name="token" value="{token}">'
        '<input type="hidden" name="decision" value="approve">'
        '<label for="approve-comment">Comment (optional)</label>'
        '<textarea id="approve-comment" name="comment" rows="3" maxlength="1000"></textarea>'
        '<button type="submit" class="approve">Approve</button></form>'
        f'<form method="post" action="{action}" aria-label="Reject">'
        f'<input type="hidden" name="token" value="{token}">'
        '<input type="hidden" name="decision" value="reject">'
        '<label for="reject-comment">Why you reject (required)</label>'
        '<textarea id="reject-comment" name="comment" rows="3" maxlength="1000" required '
        'aria-required="true"></textarea>'
        '<button type="submit" class="reject">Reject</button></form>'
        "</div>"
    )
    return _section("decision", "Your decision", f"<p>Deadline: {_when(view.deadline)}</p>" + forms)


def _notice(title: str, detail: str) -> str:
    return f'<div class="notice" role="alert"><h2>{_e(title)}</h2><p>{_e(detail)}</p></div>'


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_e(title)} - Gatekeeper</title><style>{STYLE}</style></head>"
        "<body><header><p>Gatekeeper approval</p></header>"
        f"<main>{body}</main></body></html>"
    )


def render_page(
    view: ApprovalView,
    *,
    now: datetime,
    form_token: str | None = None,
    viewer_oid: str | None = None,
    notice: tuple[str, str] | None = None,
) -> str:
    """The page for `view` as the viewer sees it: forms only when `view.can_decide` and a form token is
    given, the outcome instead of buttons once decided or past the deadline, `notice` (title, detail) as an
    alert on top (a refused decision, with the same wording as the API's problem+json)."""
    status = _STATUS_LABEL.get(view.status, view.status.value)
    decision = _decision(view, form_token, viewer_oid, now)
    closed = view.decided or (view.deadline is not None and view.deadline <= now)  # the outcome comes first
    body = (
        f"<h1>{_e(view.title or 'Approval request')}</h1>"
        f'<p class="status">Status: {_e(status)} &middot; Level {_e(view.level)}</p>'
        + (_notice(*notice) if notice else "")
        + (decision if closed else "")
        + _what(view)
        + _where(view)
        + _who(view)
        + _why(view)
        + _quality(view)
        + _recommendation(view)
        + _compliance(view)
        + _chain(view)
        + _votes(view)
        + ("" if closed else decision)
        + _audit(view)
        + f"<p>Gate <code>{_e(view.instance_id)}</code></p>"
    )
    return _document(view.title or "Approval request", body)


def render_problem(status: int, title: str, detail: str) -> str:
    """A refusal as a small page: the problem+json's title and detail, nothing else."""
    return _document(title, f"<h1>{_e(title)}</h1><p>{_e(detail)}</p><p>HTTP status {int(status)}</p>")
