"""A tenant's past gates and how they ended, read back from its own audit log.

One pass over the tenant's entries (they are in time order) joins, per gate instance, the `event_received`
facts, the evaluation `decision`, the final `decision` (status and the approval chain), the `override`
entries, and rollbacks: a `rollback` dispatched by a watch whose `deployment_finished` named the gate, or an
`override` of kind `rolled_back_after_approval`. History is sealed per tenant: the caller hands in one
tenant's log and nothing here can reach another's.

Outcome of a gate, as the model learns it: `approved` (and not rolled back or flagged), `rejected` (by
people), or `rolled_back` (approved, then rolled back or flagged for rollback: counts as bad).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from gatekeeper.recommend.features import ROLLBACK_LOOKBACK_DAYS, gate_features, service_key

Outcome = Literal["approved", "rejected", "rolled_back"]
BAD_OVERRIDES = frozenset({"flagged_for_rollback", "rolled_back_after_approval"})
MAX_GATES = 200_000  # a bound on one refit's memory; older gates beyond it are not read


class Entry(Protocol):
    """What is read from an audit record (gatekeeper.audit.records.AuditRecord has this shape)."""

    @property
    def kind(self) -> str: ...

    @property
    def instance_id(self) -> str: ...

    @property
    def at(self) -> datetime: ...

    @property
    def data(self) -> dict[str, Any]: ...


@dataclass
class GateHistory:
    """One gate as the audit log tells it."""

    instance_id: str
    at: datetime
    level: str | None = None
    rule: str | None = None
    blocked: bool = False
    compliance: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    status: str | None = None  # approved | rejected | human_task (final decision)
    human: bool = False  # the chain was decided by people (not a timeout, cancellation or policy)
    overrides: list[str] = field(default_factory=list)
    rolled_back: bool = False
    rolled_back_at: datetime | None = None
    recent_rollbacks: int = 0
    recommended: str | None = None
    model_version: str | None = None

    @property
    def service(self) -> str:
        return service_key(self.facts.get("repository"), self.facts.get("environment"))

    @property
    def outcome(self) -> Outcome | None:
        """What the model learns from, or None for a gate that teaches nothing (not decided, timed out,
        blocked by policy, L3)."""
        if self.status == "approved":
            bad = self.rolled_back or any(k in BAD_OVERRIDES for k in self.overrides)
            return "rolled_back" if bad else "approved"
        if self.status == "rejected" and self.human:
            return "rejected"
        return None

    def features(self) -> dict[str, str]:
        return gate_features(self.facts, self.decision, self.at, self.recent_rollbacks)


def _human(chain: Any) -> bool:
    if not isinstance(chain, Mapping):
        return False
    return chain.get("status") in ("approved", "rejected") and chain.get("reason") not in (
        "timeout",
        "cancelled",
        "expired",
    )


def read_history(entries: Iterable[Entry], since: datetime | None = None) -> list[GateHistory]:
    """Every gate evaluated at or after `since`, in evaluation order, with its outcome and overrides."""
    gates: dict[str, GateHistory] = {}
    facts: dict[str, dict[str, Any]] = {}
    watch_gate: dict[str, str] = {}
    rollback_times: dict[str, list[datetime]] = {}
    for entry in entries:
        kind, iid, data = entry.kind, entry.instance_id, entry.data
        if kind == "event_received" and iid:
            facts[iid] = dict(data)
        elif kind == "decision" and iid:
            if data.get("final"):
                gate = gates.get(iid)
                if gate is not None:
                    gate.status = str(data.get("status") or "") or None
                    gate.human = _human(data.get("chain"))
            elif "level" in data and (since is None or entry.at >= since) and len(gates) < MAX_GATES:
                gate = GateHistory(instance_id=iid, at=entry.at, facts=facts.pop(iid, {}), decision=dict(data))
                gate.level = str(data.get("level"))
                gate.rule = data.get("rule") if isinstance(data.get("rule"), str) else None
                gate.blocked = bool(data.get("blocked"))
                mappings = data.get("compliance")
                gate.compliance = tuple(
                    f"{c.get('framework')} {c.get('control')}"
                    for c in (mappings if isinstance(mappings, list) else ())
                    if isinstance(c, Mapping)
                )
                recommendation = data.get("recommendation")
                if isinstance(recommendation, Mapping):
                    gate.recommended = str(recommendation.get("verdict"))
                    gate.model_version = str(recommendation.get("model_version"))
                cutoff = entry.at - timedelta(days=ROLLBACK_LOOKBACK_DAYS)
                gate.recent_rollbacks = sum(1 for t in rollback_times.get(gate.service, ()) if cutoff <= t <= entry.at)
                gates[iid] = gate
        elif kind == "override":
            target = gates.get(str(data.get("gate") or iid))
            if target is not None and isinstance(data.get("kind"), str):
                target.overrides.append(data["kind"])
                if data["kind"] == "rolled_back_after_approval":
                    _note_rollback(target, entry.at, rollback_times)
        elif kind == "deployment_finished" and iid and isinstance(data.get("gate_id"), str):
            watch_gate[iid] = data["gate_id"]
        elif kind == "rollback" and data.get("step") == "dispatched" and data.get("ok"):
            target = gates.get(watch_gate.get(iid, ""))
            if target is not None and target.status == "approved":
                _note_rollback(target, entry.at, rollback_times)
    return sorted(gates.values(), key=lambda g: g.at)


def _note_rollback(gate: GateHistory, at: datetime, times: dict[str, list[datetime]]) -> None:
    if not gate.rolled_back:  # the watch's rollback and its override entry are one incident
        gate.rolled_back, gate.rolled_back_at = True, at
        times.setdefault(gate.service, []).append(at)


def recent_rollbacks(history: Iterable[GateHistory], keep_days: int = 30) -> dict[str, list[str]]:
    """The times (ISO) of the last rollbacks per service, for the model to count "recent incidents" when it
    is asked later; bounded (5 per service, 500 services, the last `keep_days` of the history)."""
    found: dict[str, list[datetime]] = {}
    for gate in history:
        if gate.rolled_back_at is not None:
            found.setdefault(gate.service, []).append(gate.rolled_back_at)
    if not found:
        return {}
    newest = max(t for times in found.values() for t in times)
    cutoff = newest - timedelta(days=keep_days)
    kept = {s: sorted(t for t in times if t >= cutoff)[-5:] for s, times in found.items()}
    ordered = sorted(((s, t) for s, t in kept.items() if t), key=lambda item: item[1][-1], reverse=True)[:500]
    return {s: [t.isoformat() for t in times] for s, times in ordered}
