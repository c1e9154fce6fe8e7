"""Audit histories with known answers for the report's tests: entries shaped as the gate, chain, follow-up
and watch steps record them (gatekeeper/gates, orchestrators/approval_chain.py, gatekeeper/rollback/steps.py),
plus the `override` and `model_fitted` entries and the `recommendation` on L2 decisions that the
recommendations work records (issue 16)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gatekeeper.report.metrics import Entry, Window

SYSTEM = "system:gatekeeper"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(days=30))
APPROVER = "0c7f3a52-1d4e-4b8a-9f60-7e2d5c3b1a01"
OPS_AGENT = "7b1e4c2a-5d3f-4e6a-8b9c-0d1e2f3a4b5c"  # an agent's client application (`azp`)


@dataclass
class History:
    """Entries in log order, built step by step; `add` is the one place an entry is made."""

    entries: list[tuple[str, datetime, str, str, dict[str, Any]]] = field(default_factory=list)

    def add(self, kind: str, at: datetime, instance_id: str, data: dict[str, Any], actor: str = SYSTEM) -> None:
        self.entries.append((kind, at, instance_id, actor, data))

    def as_entries(self) -> list[Entry]:
        ordered = sorted(self.entries, key=lambda e: e[1])
        return [Entry(kind, at, instance_id, actor, data) for kind, at, instance_id, actor, data in ordered]

    def gate(
        self,
        gate_id: str,
        at: datetime,
        level: str,
        rule: str | None,
        *,
        quality: str = "pass",
        score: float | None = None,
        recommendation: dict[str, Any] | None = None,
        stages: tuple[tuple[str, float, str], ...] = (),
        final: str | None = None,
        chain_reason: str | None = None,
        commit_time: str | None = None,
    ) -> datetime:
        """One gate: received, evaluated, its stages (name, minutes, "decided" | "timed_out"), its outcome.
        Returns when it closed. `final` None leaves it open."""
        received: dict[str, Any] = {"source": "github", "commit": "9f2c1ab", "environment": "production"}
        if commit_time is not None:
            received["commit_time"] = commit_time
        self.add("event_received", at, gate_id, received)
        decision: dict[str, Any] = {
            "level": level,
            "rule": rule,
            "reasons": ["by rule"],
            "quality": {"result": quality, "score": score, "objectives": []},
            "approval": None,
            "blocked": False,
        }
        if recommendation is not None:
            decision["recommendation"] = recommendation
        self.add("decision", at, gate_id, decision)
        now = at
        for index, (name, minutes, how) in enumerate(stages):
            self.add("approval_requested", now, gate_id, {"stage": index, "stage_name": name, "quorum": 1})
            now += timedelta(minutes=minutes)
            if how == "decided":
                vote = {"vote": 0, "stage": index, "decision": "approve", "comment": "ok", "upn": "a@contoso.com"}
                self.add("approval_decided", now, gate_id, vote, actor=APPROVER)
                closing = "approval_decided"
            else:
                closing = "approval_expired" if index == len(stages) - 1 else "approval_escalated"
            self.add(
                closing,
                now,
                gate_id,
                {"stage": index, "stage_name": name, "outcome": "X", "chain_status": "pending", "approvals": []},
            )
        if final is not None:
            chain = {"status": final, "reason": chain_reason or final, "votes": []} if stages else None
            self.add("decision", now, gate_id, {"final": True, "status": final, "level": level, "chain": chain})
        return now

    def deployment(
        self,
        watch_id: str,
        at: datetime,
        *,
        gate_id: str | None = None,
        status: str = "success",
        commit_time: str | None = None,
        is_rollback: bool = False,
        failing_after: float | None = None,
        rollback_after: float | None = None,
        restored_after: float | None = None,
        healthy: bool = True,
    ) -> None:
        """A finished deployment and its watch; `*_after` in minutes after it finished."""
        data: dict[str, Any] = {
            "environment": "production",
            "repository": "contoso/web",
            "status": status,
            "gate_id": gate_id,
            "is_rollback": is_rollback,
            "watched": True,
        }
        if commit_time is not None:
            data["commit_time"] = commit_time
        self.add("deployment_finished", at, watch_id, data)
        self.add("health_check", at + timedelta(minutes=1), watch_id, {"round": 1, "result": "pass", "probes": []})
        if failing_after is not None:
            self.add("health_check", at + timedelta(minutes=failing_after), watch_id, {"round": 2, "result": "fail"})
        if rollback_after is not None:
            when = at + timedelta(minutes=rollback_after)
            self.add("rollback", when, watch_id, {"step": "decided", "level": "L1", "reason": "unhealthy"})
            self.add("rollback", when, watch_id, {"step": "dispatched", "ok": True})
        if restored_after is not None:
            self.add(
                "rollback",
                at + timedelta(minutes=restored_after),
                watch_id,
                {"step": "finished", "conclusion": "success", "result": "run finished: success"},
            )
        elif healthy and rollback_after is None:
            self.add("health_check", at + timedelta(minutes=10), watch_id, {"final": True, "verdict": "healthy"})

    def action(
        self,
        action_id: str,
        at: datetime,
        command: str,
        *,
        agent: str | None = OPS_AGENT,
        via: str | None = "mcp",
        level: str = "L2",
        final: str | None = None,
        chain_reason: str | None = None,
        withdrawn: str | None = None,
        reports: tuple[tuple[str, bool], ...] = (),
        minutes: float = 5,
    ) -> None:
        """One action request as gatekeeper.actions.service records it, its gate (an action is a gate), and what
        became of it: `final` the gate's outcome ("approved", "rejected", "human_task"; L0/L1/L3 answer at once),
        `withdrawn` "cancelled" | "expired" before people decided, `reports` (outcome, refused) at the end."""
        immediate = {"L0": "approved", "L1": "approved", "L3": "human_only"}.get(level)
        data: dict[str, Any] = {
            "action_id": action_id,
            "command": command,
            "command_sha256": "0" * 64,
            "action": "infrastructure_change",
            "environment": "production",
            "resource": None,
            "level": level,
            "answer": immediate or "pending",
            "auth": "entra",
            "requester": [f"entra:oid:{APPROVER}"],
            "requested_by": "ops-agent",
        }
        if via is not None:
            data["via"] = via
        if agent is not None:
            data["agent"] = agent
        self.add("action_requested", at, action_id, data, actor="ops-agent@contoso.com")
        end = at + timedelta(minutes=minutes)
        if withdrawn is not None:
            self.gate(action_id, at, level, "agents")
            self.add(f"action_{withdrawn}", end, action_id, {"reason": withdrawn, "chain_ended": True, "level": level})
            chain = {"status": "rejected", "reason": withdrawn, "votes": []}
            self.add("decision", end, action_id, {"final": True, "status": "rejected", "level": level, "chain": chain})
        elif immediate is not None:
            self.gate(action_id, at, level, "agents", final={"L3": "human_task"}.get(level, "approved"))
        elif final is not None:
            how = "timed_out" if chain_reason == "timeout" else "decided"
            end = self.gate(action_id, at, level, "agents", stages=(("operators", minutes, how),), final=final,
                            chain_reason=chain_reason)  # fmt: skip
        else:
            self.gate(action_id, at, level, "agents")
        for outcome, refused in reports:
            end += timedelta(minutes=1)
            report = {"outcome": outcome, "exit_code": 0, "detail": "", "status": "?", "refused": refused}
            report["approved"] = (not refused and final == "approved") or (immediate == "approved" and not refused)
            self.add("action_reported", end, action_id, {**report, **({"agent": agent} if agent else {})})

    def flag(self, gate_id: str, at: datetime) -> None:
        self.add("follow_up", at, gate_id, {"action": "flag_rollback", "level": "L1", "note": ""}, actor=APPROVER)

    def override(self, gate_id: str, at: datetime, kind: str, rule: str | None) -> None:
        data = {"kind": kind, "rule": rule, "recommended": "reject", "decided": "approve", "gate": gate_id}
        self.add("override", at, gate_id, {**data, "model_version": "m1"})

    def fit(self, at: datetime, version: str, samples: Any, brier: Any, base: Any) -> None:
        data = {"model_version": version, "samples": samples, "brier": brier, "base_rate_brier": base, "features": []}
        self.add("model_fitted", at, "", data)


def recommendation(p_approve: Any, verdict: str = "approve", model: str = "m1") -> dict[str, Any]:
    return {"verdict": verdict, "confidence": 0.8, "p_approve": p_approve, "model_version": model, "factors": []}


def rich_history() -> History:
    """A month of gates, approvals, overrides, deployments and recommendations, with hostile text in one rule:
    used by the browser test and the integration test (its figures are asserted in the unit tests)."""
    h = History()
    day = timedelta(days=1)
    for i in range(24):
        at = T0 + i * day + timedelta(hours=1)
        level = ("L0", "L1", "L2", "L2", "L3", "L2")[i % 6]
        rule = {"L0": "builds", "L1": "staging", "L2": "production-deploy", "L3": "privilege-escalation"}[level]
        if level == "L2":
            approved = i % 5 != 0
            p = 0.85 if i % 4 else 0.2
            h.gate(
                f"gate-{i}",
                at,
                level,
                rule if i % 7 else '<script>alert("x")</script> $\\frac{a}{b}$',
                quality="fail" if i % 8 == 2 else "pass",
                score=80.0,
                recommendation=recommendation(p, "approve" if p > 0.5 else "reject"),
                stages=(("release managers", 10 + i, "decided"), ("change advisory board", 30 + 2 * i, "decided")),
                final="approved" if approved else "rejected",
                commit_time=(at - timedelta(hours=5)).isoformat(),
            )
            if approved:
                h.deployment(
                    f"watch-{i}",
                    at + timedelta(hours=2),
                    gate_id=f"gate-{i}",
                    failing_after=5 if i % 3 == 0 else None,
                    rollback_after=6 if i % 3 == 0 else None,
                    restored_after=20 if i % 3 == 0 else None,
                )
        else:
            h.gate(f"gate-{i}", at, level, rule, final="human_task" if level == "L3" else "approved")
            if level == "L1" and i % 2:
                h.flag(f"gate-{i}", at + timedelta(hours=3))
    h.override("gate-3", T0 + 3 * day + timedelta(hours=2), "approved_against_reject", None)
    h.gate(
        "gate-timeout",
        T0 + 25 * day,
        "L2",
        "production-deploy",
        quality="fail",
        stages=(("release managers", 480, "timed_out"),),
        final="rejected",
        chain_reason="timeout",
    )
    h.fit(T0 + 7 * day, "m1", 120, 0.12, 0.21)
    h.fit(T0 + 14 * day, "m2", 10**30, 1.7, 0.2)
    agent_actions(h)
    return h


def agent_actions(h: History) -> None:
    """Agents' actions with known figures (asserted in tests/unit/test_report_metrics.py): 6 requests by the
    ops agent (1 unidentified agent, 1 not an agent), through mcp-guard and the MCP server."""
    at = T0 + timedelta(days=10)
    delete = 'mcp-tool kubectl_delete_namespace {"name":"prod-legacy"}'
    h.action("act-1", at, delete, via=None, final="rejected", reports=(("skipped", False), ("executed", True)))
    h.action("act-2", at + timedelta(hours=1), delete, via=None, final="approved", reports=(("executed", False),))
    h.action("act-3", at + timedelta(hours=2), "kubectl scale deploy/web --replicas=3", level="L1",
             reports=(("executed", False),))  # fmt: skip
    h.action("act-4", at + timedelta(hours=3), "/usr/bin/psql -c 'DROP TABLE orders'", level="L3")
    h.action("act-5", at + timedelta(hours=4), "TOKEN=abc ./rotate-keys.sh prod", withdrawn="cancelled")
    h.action("act-6", at + timedelta(hours=5), delete, via=None, final="rejected", chain_reason="timeout")
    h.action("act-7", at + timedelta(hours=6), "terraform apply", agent=None, via="mcp")  # still pending
    h.action("act-8", at + timedelta(hours=7), "make deploy", agent=None, via=None, final="approved")  # a pipeline
