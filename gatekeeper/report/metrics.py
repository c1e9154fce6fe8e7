"""The report's figures, computed from a tenant's audit entries: pure, typed, no I/O.

Why from the audit log: it is the one sealed, per-tenant, complete record of every gate step, so the report
works the same locally (Azurite) and in Azure, and its numbers can be checked against an audit export.
Telemetry is sampled; the log is not.

`build_report(entries, window)` returns the JSON document the command writes as report.json and the HTML
renders (so both show the same numbers). Which records feed which figure is documented in docs/telemetry.md
("The report"). Everything read from an entry is treated as untrusted: text is cut and stripped of control
characters, probabilities must be finite numbers in [0, 1], times must parse, durations must not be negative,
and the number of rules and stages shown is bounded.

Percentiles are nearest-rank (the smallest value with at least q of the values at or below it), so every
reported percentile is a value that was observed and the known answers in tests are exact.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from gatekeeper.actions.tool import command_tool
from gatekeeper.telemetry import override_kind

FORMAT = "gatekeeper-report/1"
LEVELS = ("L0", "L1", "L2", "L3")
OTHER = "other"
NO_RULE = "(no rule)"
OTHER_RULES = "(other rules)"
OTHER_STAGES = "(other stages)"
OTHER_ENVIRONMENTS = "(other environments)"
MAX_LABEL = 80  # rule names, stage names, model versions: names, not documents
MAX_RULES = 15  # rows in the override table (the rest are summed into one row)
MAX_STAGES = 8  # stages charted by name (the rest are summed into one)
MAX_FITS = 20  # model fits listed (the newest)
MAX_WINDOW = timedelta(days=731)
DAILY_UP_TO = timedelta(days=62)  # longer windows are bucketed by ISO week
MAX_LEAD_TIME = timedelta(days=366)  # a commit time further back is implausible and not counted
CALIBRATION_BINS = 10

# Kinds that land with the recommendations (issue 16, section 2-3); matched by their string values so the
# report reads them whether or not RecordKind names them yet.
OVERRIDE_RECORD = "override"
MODEL_FITTED_RECORD = "model_fitted"
RECOMMENDATION_OVERRIDES = (
    "approved_against_reject",
    "rejected_against_approve",
    "flagged_for_rollback",
    "rolled_back_after_approval",
)
QUALITY_OVERRIDES = ("approved_despite_fail", "approved_despite_warning", "rejected_despite_pass")
OVERRIDE_KINDS = (*QUALITY_OVERRIDES, *RECOMMENDATION_OVERRIDES)
VERDICTS = ("approve", "reject", "needs_attention")
FAILED_STATUSES = frozenset({"failure", "failed", "error"})  # gatekeeper.rollback.steps.FAILED_STATUSES
RESTORED_CONCLUSIONS = frozenset({"success", "succeeded"})
FAILED_CHANGE_STEPS = frozenset({"decided", "requested", "dispatched", "finished", "escalated"})
COMMIT_TIME_KEYS = ("commit_time", "committed_at", "commit_timestamp")
WITHDRAWN = frozenset({"cancelled", "expired"})
UNIDENTIFIED_AGENT = "(unidentified agent)"
OTHER_AGENTS = "(other agents)"
OTHER_TOOLS = "(other tools)"
MAX_AGENTS = 15  # rows per agent and per tool in the AI agents section (the rest are summed into one row)
AGENT_FIGURES = (
    "requests",
    "approved",
    "denied",
    "expired_or_cancelled",
    "pending",
    "executed_after_approval",
    "executed_refused",
)

Bucket = Literal["day", "week"]


@dataclass(frozen=True)
class Entry:
    """One opened audit entry, as much of it as the report reads."""

    kind: str
    at: datetime
    instance_id: str = ""
    actor: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Window:
    """The reporting period [since, until], both timezone-aware; at most MAX_WINDOW long."""

    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("since/until: must be timezone-aware")
        if self.until <= self.since:
            raise ValueError("until: must be later than since")
        if self.until - self.since > MAX_WINDOW:
            raise ValueError(f"since: the window may span at most {MAX_WINDOW.days} days")

    @property
    def bucket(self) -> Bucket:
        return "day" if self.until - self.since <= DAILY_UP_TO else "week"

    @property
    def days(self) -> float:
        return (self.until - self.since).total_seconds() / 86400

    def contains(self, at: datetime | None) -> bool:
        return at is not None and self.since <= at <= self.until

    def bucket_of(self, at: datetime) -> str:
        day = at.astimezone(UTC).date()
        if self.bucket == "week":
            day -= timedelta(days=day.weekday())
        return day.isoformat()

    def buckets(self) -> list[str]:
        first = datetime.fromisoformat(self.bucket_of(self.since)).date()
        last = datetime.fromisoformat(self.bucket_of(self.until)).date()
        step = timedelta(days=7 if self.bucket == "week" else 1)
        out, day = [], first
        while day <= last:
            out.append(day.isoformat())
            day += step
        return out


# --- reading untrusted values --------------------------------------------------------------------------------


def label(value: Any, default: str) -> str:
    """A printable, single-line name of at most MAX_LABEL characters, or `default`."""
    if not isinstance(value, str):
        return default
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in value[: MAX_LABEL * 4]).split())
    if len(text) > MAX_LABEL:
        text = text[: MAX_LABEL - 1] + "\u2026"
    return text or default


def probability(value: Any) -> float | None:
    """A finite number in [0, 1], or None (booleans, text, NaN, out of range)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) and 0.0 <= number <= 1.0 else None


def finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def count(value: Any, limit: int = 10**12) -> int | None:
    """A whole number in [0, limit], or None."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        return None
    return value


def small_index(value: Any) -> int | None:
    return count(value, 999)


def instant(value: Any) -> datetime | None:
    """An RFC 3339 time with a zone (as UTC), or None."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in (0, 1]) of the values, or None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


# --- what the entries say, per gate, stage and deployment ----------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    verdict: str
    p_approve: float | None
    model_version: str

    @classmethod
    def of(cls, value: Any) -> Recommendation | None:
        if not isinstance(value, Mapping):
            return None
        verdict = value.get("verdict")
        return cls(
            verdict=verdict if verdict in VERDICTS else OTHER,
            p_approve=probability(value.get("p_approve")),
            model_version=label(value.get("model_version"), "(unknown)"),
        )


@dataclass
class Gate:
    evaluated_at: datetime | None = None
    level: str | None = None
    rule: str = NO_RULE
    quality: str | None = None
    quality_score: float | None = None
    recommendation: Recommendation | None = None
    received_at: datetime | None = None
    commit_time: datetime | None = None
    final_at: datetime | None = None
    status: str | None = None
    chain_status: str | None = None
    chain_reason: str | None = None

    @property
    def people_decided(self) -> str | None:
        """ "approved"/"rejected" when people closed the chain (not a timeout, not a withdrawal), else None."""
        if self.chain_status in ("approved", "rejected") and self.chain_reason not in ("timeout", *WITHDRAWN):
            return self.chain_status
        return None


@dataclass
class Stage:
    name: str
    requested_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by: Literal["decided", "timed_out", "withdrawn"] | None = None


@dataclass
class Deployment:
    at: datetime
    status: str
    is_rollback: bool
    gate_id: str | None
    commit_time: datetime | None
    environment: str = "(none)"
    failing_at: datetime | None = None
    rollback_at: datetime | None = None
    unhealthy: bool = False
    restored_at: datetime | None = None

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES or self.rollback_at is not None or self.unhealthy


@dataclass(frozen=True)
class Override:
    at: datetime
    gate_id: str
    kind: str
    rule: str | None  # as the override record names it; else the gate's


@dataclass(frozen=True)
class Fit:
    at: datetime
    model_version: str
    samples: int | None
    brier: float | None
    base_rate_brier: float | None


@dataclass
class AgentAction:
    """An action an AI agent asked for (`action_requested` with `via` mcp, an `agent`, or an mcp-guard
    command) and what became of it. Only the agent and the command's tool name are kept, never the command."""

    requested_at: datetime
    agent: str
    tool: str
    answer: str | None  # the immediate answer: approved | denied | human_only; None while people decide
    withdrawn_at: datetime | None = None  # action_cancelled / action_expired
    executed_at: datetime | None = None  # `executed` reported for the approved action
    refused_at: datetime | None = None  # `executed` reported for an action that was not approved (refused)


@dataclass
class History:
    """The facts of a tenant's entries, keyed by gate, stage and watch; built by `collect`."""

    gates: dict[str, Gate] = field(default_factory=dict)
    actions: dict[str, AgentAction] = field(default_factory=dict)
    stages: dict[tuple[str, int], Stage] = field(default_factory=dict)
    deployments: dict[str, Deployment] = field(default_factory=dict)
    overrides: list[Override] = field(default_factory=list)
    fits: list[Fit] = field(default_factory=list)
    in_window: int = 0


def _commit_time(data: Mapping[str, Any]) -> datetime | None:
    for key in COMMIT_TIME_KEYS:
        found = instant(data.get(key))
        if found is not None:
            return found
    return None


def collect(entries: Iterable[Entry], window: Window) -> History:
    """One pass over the entries (in log order); first facts win, so an activity that ran twice counts once."""
    h = History()
    for e in entries:
        if window.contains(e.at):
            h.in_window += 1
        data = e.data if isinstance(e.data, Mapping) else {}
        gate = h.gates.setdefault(e.instance_id, Gate()) if e.instance_id else Gate()
        kind = e.kind
        if kind == "event_received":
            if gate.received_at is None:
                gate.received_at, gate.commit_time = e.at, _commit_time(data)
        elif kind == "decision" and data.get("final") is True:
            if gate.final_at is None:
                chain = _mapping(data.get("chain"))
                gate.final_at, gate.status = e.at, label(data.get("status"), OTHER)
                gate.chain_status, gate.chain_reason = _text(chain, "status"), _text(chain, "reason")
        elif kind == "decision" and "level" in data:
            if gate.evaluated_at is None:
                level = data.get("level")
                quality = _mapping(data.get("quality"))
                gate.evaluated_at = e.at
                gate.level = level if level in LEVELS else OTHER
                gate.rule = label(data.get("rule"), NO_RULE)
                gate.quality = _text(quality, "result")
                gate.quality_score = finite(quality.get("score"))
                gate.recommendation = Recommendation.of(data.get("recommendation"))
        elif kind == "approval_requested":
            index = small_index(data.get("stage"))
            if index is not None and e.instance_id:
                stage = h.stages.setdefault((e.instance_id, index), Stage(name=f"stage {index + 1}"))
                if stage.requested_at is None:
                    stage.requested_at = e.at
                    stage.name = label(data.get("stage_name"), stage.name)
        elif kind in ("approval_decided", "approval_escalated", "approval_expired", "approval_withdrawn"):
            _close_stage(h, e, data)
        elif kind == "follow_up" and data.get("action") == "flag_rollback" and e.instance_id:
            h.overrides.append(Override(e.at, e.instance_id, "flagged_for_rollback", None))
        elif kind == OVERRIDE_RECORD:
            what = data.get("kind")
            gate_id = label(data.get("gate"), "") or e.instance_id
            rule = label(data.get("rule"), "") or None
            h.overrides.append(Override(e.at, gate_id, what if what in RECOMMENDATION_OVERRIDES else OTHER, rule))
        elif kind == MODEL_FITTED_RECORD:
            h.fits.append(
                Fit(
                    e.at,
                    label(data.get("model_version"), "(unknown)"),
                    count(data.get("samples"), 10**9),
                    probability(data.get("brier")),
                    probability(data.get("base_rate_brier")),
                )
            )
        elif kind in ("deployment_finished", "health_check", "rollback") and e.instance_id:
            _watch(h, e, data)
        elif kind.startswith("action_") and e.instance_id:
            _agent_action(h, e, data)
    return h


def _agent_action(h: History, e: Entry, data: Mapping[str, Any]) -> None:
    """An agent's action: requested (first entry wins), withdrawn, or reported on."""
    if e.kind == "action_requested":
        command = data.get("command")
        tool = command_tool(command)
        agent = label(data.get("agent"), "")
        is_guard = isinstance(command, str) and command.startswith("mcp-tool ")
        if e.instance_id in h.actions or not (agent or data.get("via") == "mcp" or is_guard):
            return
        answer = data.get("answer")
        h.actions[e.instance_id] = AgentAction(
            e.at, agent or UNIDENTIFIED_AGENT, tool, answer if answer in ("approved", "denied", "human_only") else None
        )
        return
    action = h.actions.get(e.instance_id)
    if action is None:
        return  # not an agent's, or requested before what was read
    if e.kind in ("action_cancelled", "action_expired"):
        action.withdrawn_at = action.withdrawn_at or e.at
    elif e.kind == "action_reported" and data.get("outcome") == "executed":
        if data.get("refused") is True:
            action.refused_at = action.refused_at or e.at
        elif data.get("refused") is False and data.get("approved") is True:
            action.executed_at = action.executed_at or e.at


def _close_stage(h: History, e: Entry, data: Mapping[str, Any]) -> None:
    """The stage's own outcome record (by the system, after a vote or a timer), never a single vote."""
    if e.kind == "approval_decided" and "chain_status" not in data:
        return  # a person's vote, or a refused one
    index = small_index(data.get("stage"))
    if index is None or not e.instance_id:
        return
    stage = h.stages.setdefault((e.instance_id, index), Stage(name=label(data.get("stage_name"), f"stage {index + 1}")))
    if stage.closed_at is not None:
        return
    stage.closed_at = e.at
    stage.closed_by = {"approval_decided": "decided", "approval_withdrawn": "withdrawn"}.get(e.kind, "timed_out")  # type: ignore[assignment]


def _watch(h: History, e: Entry, data: Mapping[str, Any]) -> None:
    if e.kind == "deployment_finished":
        if e.instance_id not in h.deployments:
            h.deployments[e.instance_id] = Deployment(
                at=e.at,
                status=label(data.get("status"), "").lower(),
                is_rollback=data.get("is_rollback") is True,
                gate_id=label(data.get("gate_id"), "") or None,
                commit_time=_commit_time(data),
                environment=label(data.get("environment"), "(none)"),
            )
        return
    deployment = h.deployments.get(e.instance_id)
    if deployment is None:
        return  # a watch whose start lies before what was read
    if e.kind == "health_check":
        if data.get("result") == "fail" and deployment.failing_at is None:
            deployment.failing_at = e.at
        if data.get("final") is True and data.get("verdict") == "unhealthy":
            deployment.unhealthy = True
        return
    step = data.get("step")
    if step in FAILED_CHANGE_STEPS and deployment.rollback_at is None:
        deployment.rollback_at = e.at
    conclusion = data.get("conclusion")
    if (
        step == "finished"
        and isinstance(conclusion, str)
        and conclusion.lower() in RESTORED_CONCLUSIONS
        and deployment.restored_at is None
    ):
        deployment.restored_at = e.at


# --- the figures ---------------------------------------------------------------------------------------------


def build_report(
    entries: Iterable[Entry],
    window: Window,
    *,
    tenant: str,
    generated_at: datetime,
    unreadable: int = 0,
    truncated: bool = False,
) -> dict[str, Any]:
    """The report document (report.json). `unreadable`: entries whose data did not open (skipped);
    `truncated`: the reader stopped at its bound, so the oldest entries in the window are missing."""
    h = collect(entries, window)
    gates = gate_levels(h, window)
    latency = approval_latency(h, window)
    overrides = override_frequency(h, window)
    dora = dora_metrics(h, window)
    calibration = recommendation_calibration(h, window)
    agents = agent_actions(h, window)
    return {
        "format": FORMAT,
        "tenant": tenant,
        "since": window.since.astimezone(UTC).isoformat(),
        "until": window.until.astimezone(UTC).isoformat(),
        "generated_at": generated_at.astimezone(UTC).isoformat(),
        "bucket": window.bucket,
        "entries": {"in_window": h.in_window, "unreadable": unreadable, "truncated": truncated},
        "empty": h.in_window == 0,
        "summary": {
            "gates": gates["total"],
            "approval_p50_minutes": latency["overall"]["p50"],
            "approval_p95_minutes": latency["overall"]["p95"],
            "overrides": overrides["total"],
            "override_rate": overrides["rate"],
            "deployments": dora["deployments"],
            "deployments_per_day": dora["deployment_frequency"]["per_day"],
            "change_failure_rate": dora["change_failure_rate"]["rate"],
            "time_to_restore_p50_minutes": dora["time_to_restore"]["p50"],
            "brier": calibration["brier"],
            "base_rate_brier": calibration["base_rate_brier"],
        },
        "gates": gates,
        "approval_latency": latency,
        "overrides": overrides,
        "dora": dora,
        "calibration": calibration,
        "agents": agents,
    }


def gate_levels(h: History, window: Window) -> dict[str, Any]:
    """Gates evaluated in the window by level, per bucket; outcomes of the gates that closed in it."""
    keys = (*LEVELS, OTHER)
    series = {b: dict.fromkeys(keys, 0) for b in window.buckets()}
    totals: Counter[str] = Counter()
    for gate in h.gates.values():
        if gate.level is not None and window.contains(gate.evaluated_at):
            assert gate.evaluated_at is not None
            series[window.bucket_of(gate.evaluated_at)][gate.level] += 1
            totals[gate.level] += 1
    outcomes: Counter[str] = Counter()
    for gate in h.gates.values():
        if window.contains(gate.final_at):
            decided = gate.people_decided
            by = "people" if decided else "timeout" if gate.chain_reason == "timeout" else "policy"
            outcomes[f"{gate.status or OTHER} ({by})"] += 1
    return {
        "total": sum(totals.values()),
        "by_level": {k: totals[k] for k in keys},
        "series": [{"bucket": b, **counts} for b, counts in series.items()],
        "outcomes": [{"outcome": k, "gates": v} for k, v in sorted(outcomes.items(), key=lambda kv: (-kv[1], kv[0]))],
    }


def _minutes(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds() / 60


def _stats(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": _r(percentile(values, 0.5)), "p95": _r(percentile(values, 0.95))}


def approval_latency(h: History, window: Window) -> dict[str, Any]:
    """Minutes from a stage's approval request to its close by people, per stage name and bucket (of the
    close); stages closed by their timeout are counted beside, not averaged in."""
    decided: dict[str, list[tuple[datetime, float]]] = {}
    timed_out: Counter[str] = Counter()
    for stage in h.stages.values():
        if not window.contains(stage.closed_at):
            continue
        if stage.closed_by == "timed_out":
            timed_out[stage.name] += 1
            decided.setdefault(stage.name, [])
        elif stage.closed_by == "decided":
            minutes = _minutes(stage.requested_at, stage.closed_at)
            if minutes is not None:
                assert stage.closed_at is not None
                decided.setdefault(stage.name, []).append((stage.closed_at, minutes))
    ranked = sorted(decided, key=lambda n: (-(len(decided[n]) + timed_out[n]), n))
    shown, rest = ranked[:MAX_STAGES], ranked[MAX_STAGES:]
    groups: dict[str, list[tuple[datetime, float]]] = {n: decided[n] for n in shown}
    timeouts = {n: timed_out[n] for n in shown}
    if rest:
        groups[OTHER_STAGES] = [v for n in rest for v in decided[n]]
        timeouts[OTHER_STAGES] = sum(timed_out[n] for n in rest)
    stages, series = [], []
    for name, values in groups.items():
        stages.append({"stage": name, **_stats([m for _, m in values]), "timed_out": timeouts[name]})
        per_bucket: dict[str, list[float]] = {}
        for at, minutes in values:
            per_bucket.setdefault(window.bucket_of(at), []).append(minutes)
        series += [{"bucket": b, "stage": name, **_stats(per_bucket[b])} for b in sorted(per_bucket)]
    everything = [m for values in groups.values() for _, m in values]
    return {
        "unit": "minutes",
        "overall": {**_stats(everything), "timed_out": sum(timeouts.values())},
        "stages": stages,
        "series": series,
    }


def override_frequency(h: History, window: Window) -> dict[str, Any]:
    """Overrides in the window (recorded `override` entries, L1 flags for rollback, and approvers going
    against the quality verdict), one per gate and kind, per rule; rate = overrides / gates of the rule
    evaluated in the window."""
    candidates = list(h.overrides)
    for gate_id, gate in h.gates.items():
        decision = gate.people_decided
        kind = override_kind(decision, gate.quality, gate.quality_score) if decision else None
        if kind is not None and gate.final_at is not None:
            candidates.append(Override(gate.final_at, gate_id, kind, None))
    seen: set[tuple[str, str]] = set()
    per_rule: dict[str, Counter[str]] = {}
    for o in sorted(candidates, key=lambda o: o.at):
        if (o.gate_id, o.kind) in seen:
            continue
        seen.add((o.gate_id, o.kind))
        if not window.contains(o.at):
            continue
        known = h.gates.get(o.gate_id)
        rule = o.rule or (known.rule if known is not None else NO_RULE)
        per_rule.setdefault(rule, Counter())[o.kind] += 1
    gates_per_rule: Counter[str] = Counter(
        g.rule for g in h.gates.values() if g.level is not None and window.contains(g.evaluated_at)
    )
    names = set(per_rule) | set(gates_per_rule)

    def row(rule: str, kinds: Counter[str], gates: int) -> dict[str, Any]:
        total = sum(kinds.values())
        return {
            "rule": rule,
            "gates": gates,
            "overrides": total,
            "rate": _rate(total, gates),
            "by_kind": {k: kinds[k] for k in (*OVERRIDE_KINDS, OTHER) if kinds[k]},
        }

    ordered = sorted(names, key=lambda r: (-sum(per_rule.get(r, Counter()).values()), -gates_per_rule[r], r))
    rows = [row(r, per_rule.get(r, Counter()), gates_per_rule[r]) for r in ordered[:MAX_RULES]]
    rest = ordered[MAX_RULES:]
    if rest:
        merged: Counter[str] = Counter()
        for r in rest:
            merged.update(per_rule.get(r, Counter()))
        rows.append(row(OTHER_RULES, merged, sum(gates_per_rule[r] for r in rest)))
    by_kind: Counter[str] = Counter()
    for kinds in per_rule.values():
        by_kind.update(kinds)
    total, gates = sum(by_kind.values()), sum(gates_per_rule.values())
    return {
        "total": total,
        "gates": gates,
        "rate": _rate(total, gates),
        "by_kind": {k: by_kind[k] for k in (*OVERRIDE_KINDS, OTHER)},
        "rules": rows,
    }


def dora_metrics(h: History, window: Window) -> dict[str, Any]:
    """Deployment frequency, lead time, change failure rate and time to restore, from the deployments that
    finished in the window (rollback runs themselves are not deployments)."""
    shipped = [d for d in h.deployments.values() if not d.is_rollback and window.contains(d.at)]
    series = {b: {"deployments": 0, "failed": 0} for b in window.buckets()}
    for d in shipped:
        series[window.bucket_of(d.at)]["deployments"] += 1
        series[window.bucket_of(d.at)]["failed"] += int(d.failed)
    successful = [d for d in shipped if d.status not in FAILED_STATUSES]
    lead: list[float] = []
    request_lead: list[float] = []
    for d in shipped:
        gate = h.gates.get(d.gate_id) if d.gate_id else None
        committed = d.commit_time or (gate.commit_time if gate else None)
        hours = _minutes(committed, d.at)
        if hours is not None and committed is not None and d.at - committed <= MAX_LEAD_TIME:
            lead.append(hours / 60)
        asked = _minutes(gate.received_at if gate else None, d.at)
        if asked is not None:
            request_lead.append(asked / 60)
    failed = [d for d in shipped if d.failed]
    restore: list[float] = []
    for d in failed:
        minutes = _minutes(d.failing_at or d.rollback_at, d.restored_at)
        if minutes is not None:
            restore.append(minutes)
    return {
        "deployments": len(shipped),
        "deployment_frequency": {
            "successful": len(successful),
            "per_day": round(len(successful) / window.days, 4),
            "per_week": round(len(successful) / window.days * 7, 4),
        },
        "lead_time": {
            "unit": "hours",
            **_stats(lead),
            "without_commit_time": len(shipped) - len(lead),
        },
        "request_to_deploy": {"unit": "hours", **_stats(request_lead)},
        "change_failure_rate": {
            "failed": len(failed),
            "deployments": len(shipped),
            "rate": _rate(len(failed), len(shipped)),
        },
        "time_to_restore": {"unit": "minutes", **_stats(restore), "not_restored": len(failed) - len(restore)},
        "environments": _per_environment(shipped),
        "series": [{"bucket": b, **v} for b, v in series.items()],
    }


def _per_environment(shipped: list[Deployment]) -> list[dict[str, Any]]:
    """Deployments and failed changes per environment, the busiest first (MAX_STAGES rows, then the rest)."""
    counts: dict[str, list[int]] = {}
    for d in shipped:
        row = counts.setdefault(d.environment, [0, 0])
        row[0] += 1
        row[1] += int(d.failed)
    ranked = sorted(counts, key=lambda e: (-counts[e][0], e))
    rows: list[tuple[str, int, int]] = [(e, counts[e][0], counts[e][1]) for e in ranked[:MAX_STAGES]]
    if len(ranked) > MAX_STAGES:
        rest = ranked[MAX_STAGES:]
        rows.append((OTHER_ENVIRONMENTS, sum(counts[e][0] for e in rest), sum(counts[e][1] for e in rest)))
    return [{"environment": e, "deployments": n, "failed": f, "change_failure_rate": _rate(f, n)} for e, n, f in rows]


def recommendation_calibration(h: History, window: Window) -> dict[str, Any]:
    """How well `p_approve` predicted people's decisions on the gates closed in the window: a reliability
    diagram (ten equal bins), the Brier score, and the Brier score of always predicting the base rate."""
    pairs: list[tuple[float, int, str]] = []
    verdicts: dict[str, Counter[str]] = {v: Counter() for v in (*VERDICTS, OTHER)}
    for gate in h.gates.values():
        decision = gate.people_decided
        rec = gate.recommendation
        if rec is None or decision is None or not window.contains(gate.final_at):
            continue
        verdicts[rec.verdict][decision] += 1
        if rec.p_approve is not None:
            pairs.append((rec.p_approve, int(decision == "approved"), rec.model_version))
    n = len(pairs)
    brier = sum((p - y) ** 2 for p, y, _ in pairs) / n if n else None
    base = sum(y for _, y, _ in pairs) / n if n else None
    base_brier = base * (1 - base) if base is not None else None
    bins = []
    for i in range(CALIBRATION_BINS):
        inside = [(p, y) for p, y, _ in pairs if min(int(p * CALIBRATION_BINS), CALIBRATION_BINS - 1) == i]
        bins.append(
            {
                "lower": i / CALIBRATION_BINS,
                "upper": (i + 1) / CALIBRATION_BINS,
                "n": len(inside),
                "mean_predicted": _r(sum(p for p, _ in inside) / len(inside), 4) if inside else None,
                "observed": _r(sum(y for _, y in inside) / len(inside), 4) if inside else None,
            }
        )
    models = []
    for version in sorted({v for _, _, v in pairs}):
        own = [(p, y) for p, y, v in pairs if v == version]
        models.append(
            {"model_version": version, "n": len(own), "brier": _r(sum((p - y) ** 2 for p, y in own) / len(own), 4)}
        )
    fits = sorted((f for f in h.fits if window.contains(f.at)), key=lambda f: f.at)[-MAX_FITS:]
    return {
        "n": n,
        "brier": _r(brier, 4),
        "base_rate": _r(base, 4),
        "base_rate_brier": _r(base_brier, 4),
        "skill": _r(1 - brier / base_brier, 4) if brier is not None and base_brier else None,
        "bins": bins,
        "verdicts": [
            {"verdict": v, "gates": sum(c.values()), "approved": c["approved"], "rejected": c["rejected"]}
            for v, c in verdicts.items()
            if v != OTHER or c
        ],
        "models": models[:MAX_RULES],
        "fits": [
            {
                "at": f.at.isoformat(),
                "model_version": f.model_version,
                "samples": f.samples,
                "brier": _r(f.brier, 4),
                "base_rate_brier": _r(f.base_rate_brier, 4),
            }
            for f in fits
        ],
    }


def _agent_status(h: History, action_id: str, action: AgentAction, until: datetime) -> str:
    """approved | denied | expired_or_cancelled | pending, as known at `until` (the rules of
    gatekeeper.actions.state: a withdrawal first, then the immediate answer, then the gate's outcome)."""
    if action.withdrawn_at is not None and action.withdrawn_at <= until:
        return "expired_or_cancelled"
    if action.answer is not None:
        return "approved" if action.answer == "approved" else "denied"
    gate = h.gates.get(action_id)
    if gate is None or gate.final_at is None or gate.final_at > until:
        return "pending"
    if gate.status == "approved":
        return "approved"
    if gate.chain_reason == "timeout" or gate.chain_reason in WITHDRAWN:
        return "expired_or_cancelled"
    return "denied"


def agent_actions(h: History, window: Window) -> dict[str, Any]:
    """Actions AI agents asked for in the window, per agent and per tool: how many, how they were decided (as
    known at the end of the window), how many ran after approval, and how many were reported `executed`
    although not approved (refused: an agent claiming it ran a denied command)."""
    per_agent: dict[str, Counter[str]] = {}
    per_tool: dict[str, Counter[str]] = {}
    for action_id, action in h.actions.items():
        if not window.contains(action.requested_at):
            continue
        figures: Counter[str] = Counter(requests=1)
        figures[_agent_status(h, action_id, action, window.until)] += 1
        if action.executed_at is not None and action.executed_at <= window.until:
            figures["executed_after_approval"] += 1
        if action.refused_at is not None and action.refused_at <= window.until:
            figures["executed_refused"] += 1
        per_agent.setdefault(action.agent, Counter()).update(figures)
        per_tool.setdefault(action.tool, Counter()).update(figures)
    total: Counter[str] = Counter()
    for figures in per_agent.values():
        total.update(figures)
    return {
        **{k: total[k] for k in AGENT_FIGURES},
        "by_agent": _agent_rows("agent", per_agent, OTHER_AGENTS),
        "by_tool": _agent_rows("tool", per_tool, OTHER_TOOLS),
    }


def _agent_rows(key: str, groups: dict[str, Counter[str]], rest_name: str) -> list[dict[str, Any]]:
    """The groups with the most denials first (then requests, then name); MAX_AGENTS rows, the rest summed."""
    ranked = sorted(groups, key=lambda n: (-groups[n]["denied"], -groups[n]["requests"], n))
    rows = [(n, groups[n]) for n in ranked[:MAX_AGENTS]]
    if len(ranked) > MAX_AGENTS:
        merged: Counter[str] = Counter()
        for n in ranked[MAX_AGENTS:]:
            merged.update(groups[n])
        rows.append((rest_name, merged))
    return [{key: name, **{k: figures[k] for k in AGENT_FIGURES}} for name, figures in rows]
