"""The demo's recommendation act: the tenant's earlier weeks as history, the model fitted from it, and at the
end `policy recommend` over the same evidence (issue 16)."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from devstack.recommend_history import Kind, generate
from gatekeeper.cli import main as gatekeeper_cli
from gatekeeper.recommend.store import refit

# Contoso's last two months, as its gates left them in the audit log: the octo-repo production deployments
# were always approved and never rolled back; production infrastructure changes were rejected now and then.
HISTORY = [
    Kind(
        "production-deploy",
        "production",
        "octo-org/octo-repo",
        80,
        source="github",
        compliance=(("SOC2", "CC8.1"), ("ISO27001", "A.8.32")),
    ),
    Kind("production-infrastructure", "production", "contoso/platform-infra", 12, rejected=4),
]


def seed_and_fit(demo: Any, tenant: str, now: datetime) -> tuple[int, int]:
    """Write the history through the tenant's real audit log, fit the model from it, say so; the seq range of
    the history's entries (the audit listing shows it as one line)."""
    t = demo.timeline
    t.section("0. Contoso's last two months: the history the L2 recommendation learns from")
    services = demo.gates.services
    audit = services.audit_for(tenant)
    records = audit.append_many(generate(HISTORY, now, days=60, seed=16))
    for kind in HISTORY:
        t.say(
            f"{kind.count} gate(s) of rule {kind.rule} ({kind.repository} -> {kind.environment}): "
            f"{kind.rejected} rejected, {kind.rolled_back} rolled back",
            indent=1,
        )
    model = refit(tenant, audit, services.recommender.store(tenant), now)
    assert model is not None
    services.recommender.remember(tenant, model)
    t.say(
        f"model {model.version} fitted from {model.samples} decided L2 gates (the refit timer does this daily): "
        f"Brier {model.brier} vs base rate {model.base_rate_brier} (leave-one-out)"
    )
    summary = {
        "tenant": tenant,
        "model_version": model.version,
        "fitted_at": model.fitted_at.isoformat(),
        "samples": model.samples,
        "good": model.good,
        "bad": model.bad,
        "brier": model.brier,
        "base_rate_brier": model.base_rate_brier,
        "weights": model.weights,
        "counts": {name: {v: list(c) for v, c in values.items()} for name, values in model.counts.items()},
    }
    (demo.out_dir / "recommendation-model.json").write_text(json.dumps(summary, indent=2) + "\n")
    return records[0].seq, records[-1].seq


def show_recommendation(demo: Any, data: dict[str, Any]) -> None:
    advice = data.get("recommendation")
    if not isinstance(advice, dict):
        return
    demo.timeline.say(
        f"recommendation: {advice['verdict']} (confidence {advice['confidence']:.0%}, p(approve) "
        f"{advice['p_approve']:.0%}, model {advice['model_version']}); the level stays {data['level']}",
        indent=1,
    )
    for factor in advice.get("factors") or ():
        demo.timeline.say(f"{factor['name']} ({factor['weight']:+.2f}): {factor['detail']}", indent=2)


def policy_recommendations(demo: Any, tenant: str, out_dir: Path) -> None:
    """`python -m gatekeeper policy recommend` over the tenant's evidence, into policy-recommendations.txt."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = gatekeeper_cli(["policy", "recommend", "--tenant", tenant, "--since", "365d"])
    (out_dir / "policy-recommendations.txt").write_text(buffer.getvalue())
    demo.timeline.say(f"gatekeeper policy recommend -> {out_dir / 'policy-recommendations.txt'} (exit {code})")
    for line in buffer.getvalue().splitlines():
        if line.startswith("rule ") or line.startswith("no proposals"):
            demo.timeline.say(line, indent=1)
