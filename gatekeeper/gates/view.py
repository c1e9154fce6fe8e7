"""What an approver sees of one gate: one typed view for every channel (card, page, API, mail).

The Teams card, the browser page, `GET /api/approvals/{id}` and the fallback mail all render this one model,
so an approver gets the same context wherever they decide: what will run and where, who asked (as an
authenticated identity, or "unresolved"), the policy's reasons and compliance mappings, the quality verdict,
the audit entries of this gate, the votes so far and the deadline. It is built from the stored gate record
and votes only (`build_view`), never from a request, so nothing a caller sends can change what is shown.

Every text here comes from events and policy: renderers must escape it (HTML) or pass it as plain text
(Adaptive Card `TextBlock`s render Markdown: use `plain_text`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from gatekeeper.contracts.gate import GateStatus
from gatekeeper.events.common import https_link
from gatekeeper.gates.store import AuditRef, GateRecord, StoredVote
from gatekeeper.ports import NotificationDetail

ViewKind = Literal["deployment", "action"]
DECIDED = frozenset({GateStatus.APPROVED, GateStatus.REJECTED, GateStatus.HUMAN_TASK})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RequesterView(_Frozen):
    """Who asked. `resolved` None: gates evaluated before requesters were resolved."""

    resolved: bool | None
    oid: str | None = None
    display: str | None = None  # the name the source claimed: shown, never trusted
    upn: str | None = None  # the directory's name for `oid`, when known
    seen_as: tuple[str, ...] = ()  # namespaced source identities: github:login:octocat, azure-devops:unique:...
    note: str | None = None  # why it is unresolved, and what policy required because of it
    display_name: str | None = None  # the directory's displayName for `oid` (Entra), when known

    def describe(self) -> str:
        """One line for every channel: "Anna Jansen (anna@contoso.com), as github:login:anna", or
        "unresolved (seen as ...)"; plain text, to be escaped by the renderer."""
        seen = f"as {', '.join(self.seen_as)}" if self.seen_as else ""
        if self.resolved:
            name = self.display_name or self.upn or self.oid or "resolved"
            who = f"{name} ({self.upn})" if self.upn and name != self.upn else name
            return f"{who}, {seen}" if seen else who
        if self.resolved is None:
            return f"{self.display or 'unknown'}" + (f", {seen}" if seen else "")
        shown = self.display or ", ".join(self.seen_as) or "nobody named"
        return f"unresolved (seen as {shown})"


class ObjectiveView(_Frozen):
    name: str
    detail: str = ""
    verdict: str = "fail"  # fail | warning


class QualityView(_Frozen):
    result: str  # pass | warn | fail | unknown
    score: float | None = None
    failing: tuple[ObjectiveView, ...] = ()


class ComplianceTag(_Frozen):
    framework: str
    control: str


class RecommendationView(_Frozen):
    """The L2 recommendation (gatekeeper.recommend) as approvers read it: advice, never the decision."""

    verdict: str  # approve | reject | needs_attention
    confidence: float
    p_approve: float
    model_version: str
    reasons: tuple[str, ...] = ()  # the top factors, "name (weight): detail"

    def headline(self) -> str:
        verdict = self.verdict.replace("_", " ")
        return (
            f"{verdict} (confidence {self.confidence:.0%}, p(approve) {self.p_approve:.0%}, model {self.model_version})"
        )


class StageView(_Frozen):
    index: int
    name: str
    approvers: tuple[str, ...]
    quorum: int
    deadline: datetime | None
    on_timeout: str


class VoteView(_Frozen):
    voter_id: str
    decision: str
    stage: int
    at: datetime
    comment: str = ""


class AuditEntryView(_Frozen):
    seq: int
    kind: str
    at: datetime


class AuditView(_Frozen):
    """The audit entries of this gate and where their inclusion proofs are served. `entry_ids` are the
    entries' sequence numbers in the tenant's log (as text); `proof_endpoint` is the audit export in bundle
    form from the gate's first entry on: the bundle holds every entry up to the newest, the signed
    checkpoints and the consistency proofs, from which `gatekeeper audit verify` proves each entry's
    inclusion (there is no per-entry proof route)."""

    entry_ids: tuple[str, ...] = ()
    entries: tuple[AuditEntryView, ...] = ()
    proof_endpoint: str | None = None


class ApprovalView(_Frozen):
    instance_id: str
    tenant_id: str
    kind: ViewKind = "deployment"
    status: GateStatus
    level: str
    title: str
    # what will run, and where
    command: str | None = None  # action-level requests: the exact command line, shown verbatim
    plan_digest: str | None = None
    plan_url: str | None = None
    source: str | None = None
    action: str | None = None
    environment: str | None = None
    repository: str | None = None
    repository_url: str | None = None
    ref: str | None = None
    commit: str | None = None
    commit_url: str | None = None
    run_id: str | None = None
    run_url: str | None = None
    version_tags: tuple[str, ...] = ()
    artifact_ids: tuple[str, ...] = ()
    # why
    requester: RequesterView
    rule: str | None = None
    reasons: tuple[str, ...] = ()
    quality: QualityView | None = None
    compliance: tuple[ComplianceTag, ...] = ()
    recommendation: RecommendationView | None = None
    audit: AuditView = AuditView()
    # the chain
    stage: StageView | None = None
    stages: tuple[tuple[str, int], ...] = ()  # (name, quorum) of every stage
    votes: tuple[VoteView, ...] = ()
    deadline: datetime | None = None
    can_decide: bool = False
    decided_at: datetime | None = None
    outcome: str | None = None
    # where to act
    page_url: str | None = None
    api_url: str | None = None

    @property
    def decided(self) -> bool:
        """Decided or expired: the view shows the outcome, never buttons."""
        return self.status in DECIDED

    def to_api(self) -> dict[str, Any]:
        """The `GET /api/approvals/{id}` document: the fields that route always had, in their shapes (times as
        `isoformat()`), plus the context fields, added so existing clients keep working."""
        document = self.model_dump(mode="json", exclude={"stages", "stage", "votes", "deadline", "decided_at"})
        document["subject"] = {
            "source": self.source,
            "repository": self.repository,
            "environment": self.environment,
            "ref": self.ref,
            "commit": self.commit,
            "run_id": self.run_id,
            "action": self.action,
        }
        document["stage"] = (
            None
            if self.stage is None
            else {
                **self.stage.model_dump(mode="json"),
                "approvers": list(self.stage.approvers),
                "deadline": _iso(self.stage.deadline),
            }
        )
        document["stages"] = [{"name": name, "quorum": quorum} for name, quorum in self.stages]
        document["votes"] = [{**v.model_dump(mode="json"), "at": v.at.isoformat()} for v in self.votes]
        document["deadline"] = _iso(self.deadline)
        document["decided_at"] = _iso(self.decided_at)
        return document


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def plain_text(value: str | None) -> str:
    """`value` safe for a Markdown-rendering text field (Adaptive Card TextBlock, Teams, Slack mrkdwn):
    every character that Markdown or the card host would interpret is escaped, so a repository called
    `[click](https://evil)` shows as those characters, not as a link."""
    if not value:
        return ""
    out = []
    for ch in value:
        if ch in "\\`*_{}[]()#+-.!|<>~&":
            out.append("\\" + ch)
        elif ch in "\r\n\t" or ch.isprintable():
            out.append(ch)
        else:
            out.append("\ufffd")
    return "".join(out)


def _requester(record: GateRecord) -> RequesterView:
    who = record.requested_by
    if who is None:
        return RequesterView(resolved=None, seen_as=tuple(record.requester))
    note = None
    if not who.resolved:
        note = "requester unresolved: " + (who.note or "no Entra identity could be matched")
        if record.extra_approver_stage is not None:
            note += f"; one extra distinct approver is required at stage {record.extra_approver_stage + 1}"
    upn = who.upn or next((a for a in who.aliases if "@" in a), None)
    return RequesterView(
        resolved=who.resolved,
        oid=who.oid,
        display=who.display,
        upn=upn,
        seen_as=who.seen_as,
        note=note,
        display_name=who.display_name,
    )


def _text(subject: dict[str, Any], key: str) -> str | None:
    value = subject.get(key)
    return value if isinstance(value, str) and value else None


def _texts(subject: dict[str, Any], key: str) -> tuple[str, ...]:
    value = subject.get(key)
    if not isinstance(value, list | tuple):
        return ()
    return tuple(v for v in value if isinstance(v, str) and v)


def _https(url: str | None) -> str | None:
    """Links are shown only when they are https URLs: an event cannot smuggle `javascript:` into a page."""
    return https_link(url)


def _quality(record: GateRecord) -> QualityView | None:
    if record.quality is None:
        return None
    objectives = tuple(ObjectiveView(name=o.name, detail=o.detail, verdict=o.verdict) for o in record.quality_failing)
    return QualityView(result=record.quality, score=record.quality_score, failing=objectives)


def _recommendation(record: GateRecord) -> RecommendationView | None:
    found = record.recommendation
    if not isinstance(found, dict):
        return None
    try:
        factors = [f for f in found.get("factors") or () if isinstance(f, dict)]
        return RecommendationView(
            verdict=str(found["verdict"]),
            confidence=float(found["confidence"]),
            p_approve=float(found["p_approve"]),
            model_version=str(found["model_version"]),
            reasons=tuple(
                f"{f.get('name')} ({float(f.get('weight', 0.0)):+.2f}): {f.get('detail', '')}"[:300]
                for f in factors[:5]
            ),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _compliance(record: GateRecord) -> tuple[ComplianceTag, ...]:
    return tuple(ComplianceTag(framework=t.framework, control=t.control) for t in record.compliance)


def _audit(record: GateRecord, refs: Sequence[AuditRef], base: str | None) -> AuditView:
    entries = tuple(AuditEntryView(seq=r.seq, kind=r.kind, at=r.at) for r in refs)
    endpoint = None
    if base:
        tenant = quote(record.tenant_id, safe="")
        since = min((r.at for r in refs), default=record.created_at)
        endpoint = f"{base}/api/tenants/{tenant}/audit/export?format=bundle&from={quote(since.isoformat(), safe='')}"
    return AuditView(entry_ids=tuple(str(e.seq) for e in entries), entries=entries, proof_endpoint=endpoint)


def build_view(
    record: GateRecord,
    votes: Sequence[StoredVote] = (),
    *,
    can_decide: bool = False,
    base_url: str | None = None,
    audit: Sequence[AuditRef] = (),
) -> ApprovalView:
    """The view of `record` with its stored `votes` and the audit entries noted for it. `can_decide` is the
    caller's (False for a system view, e.g. a card sent to everyone); `base_url` is the app's public URL
    (GATEKEEPER_APPROVAL_BASE_URL). Context fields come from the record's own fields; `subject` keys are
    read as a fallback (and for action-level requests: `command`, `plan_digest`, `plan_url`)."""
    subject = record.subject
    stages = record.plan.stages if record.plan else ()
    current = stages[record.stage] if record.stage is not None and record.stage < len(stages) else None
    base = base_url.rstrip("/") if base_url else None
    gate = quote(record.instance_id, safe="")
    return ApprovalView(
        instance_id=record.instance_id,
        tenant_id=record.tenant_id,
        kind="action" if _text(subject, "command") else "deployment",
        status=record.status,
        level=record.level,
        title=record.title,
        command=_text(subject, "command"),
        plan_digest=_text(subject, "plan_digest"),
        plan_url=_https(_text(subject, "plan_url")),
        source=_text(subject, "source"),
        action=_text(subject, "action"),
        environment=_text(subject, "environment"),
        repository=_text(subject, "repository"),
        repository_url=_https(record.repository_url or _text(subject, "repository_url")),
        ref=_text(subject, "ref"),
        commit=_text(subject, "commit"),
        commit_url=_https(record.commit_url or _text(subject, "commit_url")),
        run_id=_text(subject, "run_id"),
        run_url=_https(record.run_url or _text(subject, "run_url")),
        version_tags=record.version_tags or _texts(subject, "version_tags"),
        artifact_ids=record.artifact_ids or _texts(subject, "artifact_ids"),
        requester=_requester(record),
        rule=record.rule,
        reasons=record.reasons,
        quality=_quality(record),
        compliance=_compliance(record),
        recommendation=_recommendation(record),
        audit=_audit(record, audit, base),
        stage=None
        if current is None or record.stage is None
        else StageView(
            index=record.stage,
            name=current.name,
            approvers=current.approvers,
            quorum=current.quorum,
            deadline=record.deadline,
            on_timeout=current.on_timeout.value,
        ),
        stages=tuple((s.name, s.quorum) for s in stages),
        votes=tuple(
            VoteView(voter_id=v.voter_id, decision=v.decision.value, stage=v.stage, at=v.at, comment=v.comment)
            for v in votes
        ),
        deadline=record.deadline,
        can_decide=can_decide,
        decided_at=record.decided_at,
        outcome=record.outcome_reason,
        page_url=f"{base}/api/approvals/{gate}/page" if base else None,
        api_url=f"{base}/api/approvals/{gate}" if base else None,
    )


def _clip(text: str, limit: int = 1000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def notification_details(view: ApprovalView) -> tuple[NotificationDetail, ...]:
    """The view as labelled lines for channels that render text (the fallback mail): the same context as the
    card and the page, in the same order. Plain text; the mail escapes it."""
    lines: list[tuple[str, str | None, str | None]] = [
        ("Command", view.command, view.plan_url),
        ("Plan digest", view.plan_digest, None),
        ("Action", " to ".join(x for x in (view.action, view.environment) if x) or None, None),
        ("Repository", view.repository or view.repository_url, view.repository_url),
        ("Ref", view.ref, None),
        ("Commit", view.commit, view.commit_url),
        ("Run", view.run_id or view.run_url, view.run_url),
        ("Version tags", ", ".join(view.version_tags) or None, None),
        ("Artifacts", ", ".join(view.artifact_ids) or None, None),
        ("Requested by", view.requester.describe(), None),
        ("Requester note", view.requester.note, None),
        ("Rule", view.rule, None),
        ("Reasons", "; ".join(view.reasons) or None, None),
    ]
    if view.quality is not None:
        score = f", score {view.quality.score:g}" if view.quality.score is not None else ""
        failing = "; ".join(
            f"{o.name} ({o.verdict}{': ' + o.detail if o.detail else ''})" for o in view.quality.failing
        )
        lines.append(("Quality", f"{view.quality.result}{score}" + (f"; {failing}" if failing else ""), None))
    lines.append(("Compliance", ", ".join(f"{t.framework} {t.control}" for t in view.compliance) or None, None))
    if view.recommendation is not None:
        reasons = "; ".join(view.recommendation.reasons)
        text = view.recommendation.headline() + (f"; {reasons}" if reasons else "")
        lines.append(("Recommendation", text, None))
    if view.stage is not None:
        deadline = f", decide before {view.stage.deadline:%Y-%m-%d %H:%M} UTC" if view.stage.deadline else ""
        lines.append(("Stage", f"{view.stage.name}: {view.stage.quorum} approval(s) needed{deadline}", None))
    votes = "; ".join(f"{v.voter_id} {v.decision}" for v in view.votes)
    lines.append(("Votes so far", votes or None, None))
    lines.append(("Audit entries", ", ".join(view.audit.entry_ids) or None, view.audit.proof_endpoint))
    return tuple(
        NotificationDetail(label=label, text=_clip(text), url=url)
        for label, text, url in lines
        if text and text.strip()
    )
