"""Evaluate a policy for one event: a pure function from (policy, event, evidence, time) to a decision.

Order of evaluation, each step able only to raise the level (or block), never to lower it:
1. the action: the event's own, else inferred (see `infer_action`);
2. the first matching rule gives the level, or `defaults.level` (L2) when none matches;
3. an active freeze in scope raises to the rule's `on_freeze`, else the freeze's `level` (default L3),
   or blocks;
4. outside business hours (in scope) raises to `outside_level` (default L2), or blocks;
5. quality: a failing result applies `quality.on_fail` (raise to L2/L3 or block), a warning
   `quality.on_warning` when set;
6. a final L2 gets an approval chain: the rule's, else `defaults.approval`; with neither, the reasons say
   so and the orchestrator refuses the gate.
No clock is read here: `at` is given, so the orchestrator can pass its deterministic replay time.
"""

from __future__ import annotations

from datetime import datetime

from gatekeeper.events.model import ActionKind, EventKind, PipelineEvent
from gatekeeper.policy.decision import ApprovalPlan, GateDecision
from gatekeeper.policy.document import PolicyDocument
from gatekeeper.policy.levels import GateLevel
from gatekeeper.policy.rules import MatchContext
from gatekeeper.quality.evidence import QualityEvidence
from gatekeeper.quality.scoring import evaluate_quality

_BUILD_KINDS = (EventKind.RUN_STATUS, EventKind.JOB_STATUS, EventKind.STAGE_STATUS)


def infer_action(event: PipelineEvent) -> tuple[ActionKind | None, str | None]:
    """The event's action, or one inferred from its shape, with the reason when inferred.

    - the event names an action (parsers set it when the source says so): that action;
    - it targets an environment (a deployment protection rule, an ADO environment check): deploy;
    - a run, job or stage status without an environment: build;
    - anything else (alerts, tickets): no action; only rules without `actions` can match it.
    """
    if event.action is not None:
        return event.action, None
    if event.environment:
        return ActionKind.DEPLOY, f"action inferred as deploy: the event targets environment {event.environment!r}"
    if event.kind in _BUILD_KINDS:
        return ActionKind.BUILD, f"action inferred as build: a {event.kind.value} event without an environment"
    return None, "no action given or inferable: only rules without 'actions' can match"


def branch_of(ref: str | None) -> str | None:
    """`refs/heads/main` and `main` -> `main`; tags and other refs have no branch."""
    if ref is None:
        return None
    if ref.startswith("refs/heads/"):
        return ref[len("refs/heads/") :]
    if ref.startswith("refs/"):
        return None
    return ref


def _apply(level: GateLevel, target: str, cause: str, reasons: list[str]) -> tuple[GateLevel, bool]:
    """Raise `level` to `target` (a level or "block"), recording why."""
    if target == "block":
        reasons.append(f"{cause}: the pipeline is blocked")
        return level, True
    raised = level.raise_to(GateLevel(target))
    if raised != level:
        reasons.append(f"{cause}: level raised from {level} to {raised}")
    else:
        reasons.append(f"{cause}: level stays {level} (not below {target})")
    return raised, False


def evaluate(
    policy: PolicyDocument, event: PipelineEvent, evidence: QualityEvidence | None, at: datetime
) -> GateDecision:
    """The gate decision for `event` under `policy` at instant `at` (timezone-aware)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("evaluate: 'at' must be timezone-aware")
    if policy.tenant is not None and policy.tenant != event.tenant_id:
        raise ValueError(f"evaluate: policy is for tenant {policy.tenant!r}, event is for {event.tenant_id!r}")

    reasons: list[str] = []
    action, inferred = infer_action(event)
    if inferred:
        reasons.append(inferred)

    windows = policy.change_windows
    freezes = [f for f in windows.freezes if f.active_at(at) and f.applies_to(event.environment, action)]
    hours = windows.business_hours
    within_hours = hours.contains(at) if hours is not None and hours.applies_to(event.environment, action) else None
    conditions = set()
    if freezes:
        conditions.add("in_freeze")
    if within_hours is not None:
        conditions.add("within_business_hours" if within_hours else "outside_business_hours")

    ctx = MatchContext(
        source=event.source,
        action=action,
        environment=event.environment,
        repository=event.repository,
        branch=branch_of(event.ref),
        labels=frozenset(label.lower() for label in event.labels),
        windows=frozenset(conditions),
    )
    rule = policy.first_match(ctx)
    if rule is not None:
        level = rule.level
        reasons.append(f"rule {rule.name!r} matched: {rule.reason or 'level ' + level}")
    else:
        level = GateLevel(policy.defaults.level)
        reasons.append(f"no rule matched: safe default level {level}")

    blocked = False
    for freeze in freezes:
        target = (rule.on_freeze if rule is not None and rule.on_freeze else None) or freeze.level
        why = f" ({freeze.reason})" if freeze.reason else ""
        cause = f"change freeze {freeze.name!r} until {freeze.end.isoformat()}{why}"
        level, block = _apply(level, target, cause, reasons)
        blocked |= block
    if within_hours is False and hours is not None:
        level, block = _apply(level, hours.outside_level, f"outside business hours ({hours.describe()})", reasons)
        blocked |= block

    quality = evaluate_quality(policy.quality, evidence)
    if quality.summary:
        reasons.append(quality.summary)
    if quality.result == "fail":
        level, block = _apply(level, policy.quality.on_fail, "quality gate failed", reasons)
        blocked |= block
    elif quality.result == "warning" and policy.quality.on_warning is not None:
        level, block = _apply(level, policy.quality.on_warning, "quality gate warning", reasons)
        blocked |= block

    approval: ApprovalPlan | None = None
    if blocked:
        reasons.append("blocked: the pipeline must be rejected whatever the level")
    elif level == GateLevel.L2:
        chain = rule.approval if rule is not None and rule.approval is not None else policy.defaults.approval
        if chain is not None:
            approval = ApprovalPlan(stages=chain.stages)
            source = "the rule's" if chain is (rule.approval if rule else None) else "the default"
            stages = "; then ".join(
                f"{s.name} ({s.quorum} approval(s), timeout {s.timeout}, then {s.on_timeout})" for s in chain.stages
            )
            reasons.append(f"approval by {source} chain: {stages}")
        else:
            reasons.append(
                "L2 needs an approval chain but neither the rule nor defaults.approval names one: "
                "the gate will be refused"
            )
    reasons.append(f"gate level {level}: {level.description}")

    return GateDecision(
        level=level,
        action=action,
        environment=event.environment,
        rule=rule.name if rule is not None else None,
        reasons=reasons,
        quality=quality,
        approval=approval,
        blocked=blocked,
        compliance=tuple(rule.compliance or ()) if rule is not None else (),
    )
