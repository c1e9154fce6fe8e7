"""Retention timers: transit keys past `GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS` are deleted (crypto-shredded).

Hourly, so each run stays small (at most `MAX_DELETIONS_PER_RUN` rows per tenant, the rest next hour) while a
busy tenant's ~10^4 new transit rows a day are still kept up with. The decisions live in
gatekeeper.store.retention."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from functions.http import services

log = logging.getLogger("gatekeeper.retention")
bp = df.Blueprint()


@bp.function_name("transit_key_retention")
@bp.timer_trigger(arg_name="timer", schedule="0 17 * * * *", run_on_startup=False)
def transit_key_retention(timer: func.TimerRequest) -> None:
    """Delete every registered tenant's transit keys past retention, bounded per tenant and run."""
    rt = services()
    pruner = rt.transit_pruner
    for record in rt.registry.records():
        try:
            result = pruner.prune(record.tenant_id)
        except Exception:  # one tenant's outage must not stop the others' retention
            log.exception("transit key retention failed for tenant %s", record.tenant_id)
            continue
        if result.deleted or result.more:
            log.info(
                "tenant %s: %d transit key(s) past %d days deleted%s",
                record.tenant_id,
                len(result.deleted),
                pruner.retention_days,
                " (more next run)" if result.more else "",
            )
