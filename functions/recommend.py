"""Recommendation model refit: daily, per registered tenant, from that tenant's own audit history.

Thin: the refit (read history, fit, store the version, audit `model_fitted`, then put it in use) lives in
gatekeeper.recommend.store; one tenant's failure never stops the others'."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from functions.http import services

log = logging.getLogger("gatekeeper.recommend")
bp = df.Blueprint()


@bp.function_name("recommendation_refit")
@bp.timer_trigger(arg_name="timer", schedule="0 40 2 * * *", run_on_startup=False)
def recommendation_refit(timer: func.TimerRequest) -> None:
    """Refit every registered tenant's recommendation model (02:40 UTC, a quiet hour for most tenants)."""
    from gatekeeper.recommend.store import refit

    rt = services()
    recommender = rt.recommender
    for record in rt.registry.records():
        tenant = record.tenant_id
        try:
            model = refit(tenant, rt.audit_for(tenant), recommender.store(tenant), rt.clock())
        except Exception:  # one tenant's outage or bad history must not stop the others' refit
            log.exception("recommendation refit failed for tenant %s", tenant)
            continue
        if model is None:
            continue  # no gate to learn from yet
        recommender.remember(tenant, model)
        log.info("tenant %s: recommendation model %s from %d gate(s)", tenant, model.version, model.samples)
