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
from gatekeeper.gates.store import GateRecord, StoredVote

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


class ObjectiveView(_Frozen):
    name: str
    detail: str = ""


class QualityView(_Frozen):
    result: str  # pass | warn | fail | unknown
    score: float | None = None
    failing: tuple[ObjectiveView, ...] = ()


class ComplianceTag(_Frozen):
    framework: str
    control: str


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


class AuditView(_Frozen):
    """The audit entries of this gate and where their inclusion proofs are served."""

    entry_ids: tuple[str, ...] = ()
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
    upn = next((a for a in who.aliases if "@" in a), None)
    return RequesterView(
        resolved=who.resolved, oid=who.oid, display=who.display, upn=upn, seen_as=who.seen_as, note=note
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
    return url if url and url.startswith("https://") and not any(c.isspace() for c in url) else None


def _quality(record: GateRecord) -> QualityView | None:
    if record.quality is None:
        return None
    failing = record.subject.get("quality_failing")
    objectives = tuple(
        ObjectiveView(name=str(o.get("name", "")), detail=str(o.get("detail", "")))
        for o in (failing if isinstance(failing, list) else [])
        if isinstance(o, dict) and o.get("name")
    )
    return QualityView(result=record.quality, score=record.quality_score, failing=objectives)


def _compliance(record: GateRecord) -> tuple[ComplianceTag, ...]:
    tags = record.subject.get("compliance")
    return tuple(
        ComplianceTag(framework=str(t["framework"]), control=str(t["control"]))
        for t in (tags if isinstance(tags, list) else [])
        if isinstance(t, dict) and t.get("framework") and t.get("control")
    )


def build_view(
    record: GateRecord,
    votes: Sequence[StoredVote] = (),
    *,
    can_decide: bool = False,
    base_url: str | None = None,
    audit_entry_ids: Sequence[str] = (),
) -> ApprovalView:
    """The view of `record` with its stored `votes`. `can_decide` is the caller's (False for a system view,
    e.g. a card sent to everyone); `base_url` is the app's public URL (GATEKEEPER_APPROVAL_BASE_URL)."""
    subject = record.subject
    stages = record.plan.stages if record.plan else ()
    current = stages[record.stage] if record.stage is not None and record.stage < len(stages) else None
    base = base_url.rstrip("/") if base_url else None
    gate = quote(record.instance_id, safe="")
    tenant = quote(record.tenant_id, safe="")
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
        repository_url=_https(_text(subject, "repository_url")),
        ref=_text(subject, "ref"),
        commit=_text(subject, "commit"),
        commit_url=_https(_text(subject, "commit_url")),
        run_id=_text(subject, "run_id"),
        run_url=_https(_text(subject, "run_url")),
        version_tags=_texts(subject, "version_tags"),
        artifact_ids=_texts(subject, "artifact_ids"),
        requester=_requester(record),
        rule=record.rule,
        reasons=record.reasons,
        quality=_quality(record),
        compliance=_compliance(record),
        audit=AuditView(
            entry_ids=tuple(audit_entry_ids),
            proof_endpoint=f"{base}/api/tenants/{tenant}/audit/export" if base else None,
        ),
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
