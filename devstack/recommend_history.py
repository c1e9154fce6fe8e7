"""Generated gate histories with a known structure, written through the real audit log (issue 16): the
recommendation tests learn from them, and the demo seeds its tenant's "last weeks" with one.

Each gate is the entries the gate steps write: `event_received`, the evaluation `decision`, the final
`decision` (with the approval chain when people decided), and where asked a rollback (`deployment_finished`
naming the gate, then `rollback` dispatched) or an `override`."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

GOOD_VOTE = {"voter_id": "00000000-0000-0000-0000-00000000000a", "decision": "approve"}


@dataclass(frozen=True)
class Kind:
    """A family of gates: `count` gates of `rule`, of which `rejected` are rejected by people, `rolled_back`
    approved then rolled back, `flagged` (L1) flagged for rollback, `overridden` approved against a "reject"
    recommendation; the rest approved and kept."""

    rule: str
    environment: str
    repository: str
    count: int
    level: str = "L2"
    rejected: int = 0
    rolled_back: int = 0
    flagged: int = 0
    overridden: int = 0
    quality: str = "pass"
    compliance: tuple[tuple[str, str], ...] = ()
    source: str = "generic"


def gate_entries(kind: Kind, at: datetime, outcome: str) -> list[dict[str, Any]]:
    """The entries of one gate whose outcome is approved / rejected / rolled_back / flagged / overridden /
    human_task."""
    gate = "g" + uuid.uuid4().hex
    facts = {
        "source": kind.source,
        "kind": "gate_request",
        "action": "deploy",
        "environment": kind.environment,
        "repository": kind.repository,
        "ref": "refs/heads/main",
        "received_at": at.isoformat(),
    }
    decision: dict[str, Any] = {
        "level": kind.level,
        "action": "deploy",
        "environment": kind.environment,
        "rule": kind.rule,
        "reasons": [f"rule {kind.rule!r} matched: level {kind.level}"],
        "quality": {"result": kind.quality, "score": 90.0 if kind.quality == "pass" else 40.0, "objectives": []},
        "approval": None,
        "blocked": False,
    }
    if kind.compliance:
        decision["compliance"] = [{"framework": f, "control": c} for f, c in kind.compliance]
    if outcome == "overridden":
        decision["recommendation"] = {
            "verdict": "reject",
            "confidence": 0.7,
            "p_approve": 0.2,
            "model_version": "generated",
            "factors": [],
        }
    status = {"rejected": "rejected", "human_task": "human_task"}.get(outcome, "approved")
    chain: dict[str, Any] | None = None
    if kind.level == "L2":
        reason = "rejected" if status == "rejected" else "quorum"
        chain = {"status": status, "reason": reason, "stage": 0, "votes": [GOOD_VOTE]}
    entries = [
        _entry("event_received", gate, at, facts),
        _entry("decision", gate, at, decision),
        _entry("decision", gate, at + timedelta(minutes=20), {"final": True, "status": status, "chain": chain}),
    ]
    later = at + timedelta(hours=2)
    if outcome == "rolled_back":
        watch = "w" + uuid.uuid4().hex
        entries.append(_entry("deployment_finished", watch, later, {"gate_id": gate, "environment": kind.environment}))
        entries.append(_entry("rollback", watch, later + timedelta(minutes=30), {"step": "dispatched", "ok": True}))
    if outcome == "flagged":
        override = {"kind": "flagged_for_rollback", "rule": kind.rule, "recommended": None}
        entries.append(_entry("override", gate, later, {**override, "decided": "flag_rollback", "gate": gate}))
    if outcome == "overridden":
        override = {"kind": "approved_against_reject", "rule": kind.rule, "recommended": "reject"}
        entries.append(_entry("override", gate, later, {**override, "decided": "approved", "gate": gate}))
    return entries


def _entry(kind: str, instance_id: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": kind,
        "actor": "system:gatekeeper",
        "instance_id": instance_id,
        "subject": kind,
        "data": data,
        "at": at,
    }


def generate(kinds: list[Kind], now: datetime, *, days: int = 80, seed: int = 7) -> list[dict[str, Any]]:
    """All gates of `kinds`, spread at random (seeded) over the last `days` days, entries in time order."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, nothing secret
    gates: list[tuple[datetime, list[dict[str, Any]]]] = []
    for kind in kinds:
        outcomes = (
            ["rejected"] * kind.rejected
            + ["rolled_back"] * kind.rolled_back
            + ["flagged"] * kind.flagged
            + ["overridden"] * kind.overridden
        )
        default = "human_task" if kind.level == "L3" else "approved"
        outcomes += [default] * (kind.count - len(outcomes))
        rng.shuffle(outcomes)
        for outcome in outcomes:
            at = now - timedelta(days=days) + timedelta(seconds=rng.randrange(days * 86400 - 4 * 3600))
            gates.append((at, gate_entries(kind, at, outcome)))
    gates.sort(key=lambda g: g[0])
    return [entry for _, entries in gates for entry in entries]


def write(audit: Any, entries: list[dict[str, Any]]) -> None:
    """Append through the real audit log, in transactions of up to 99 entries."""
    audit.append_many(entries)
