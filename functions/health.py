"""`GET /api/health` (anonymous) and the first-tenant bootstrap timer. Thin: the probes, the report and the
bootstrap live in gatekeeper/health and gatekeeper/tenancy/bootstrap.py.

The health answer names dependencies and fixed reasons only (no tenant, secret or exception text), is never
cached by clients (`Cache-Control: no-store`), and is 503 with `Retry-After` when anything is not fine. The app
reuses its last check for a few seconds (`Services.health_cache`): an anonymous caller never sets the pace of
Key Vault, storage and task hub reads."""

from __future__ import annotations

import json
import logging

import azure.durable_functions as df
import azure.functions as func

from functions.http import services
from gatekeeper.errors import RETRY_AFTER_SECONDS

log = logging.getLogger("gatekeeper.health")
bp = df.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def health(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from gatekeeper.health.probes import TaskHubProbe
    from gatekeeper.health.report import check_health

    headers = {"Cache-Control": "no-store"}
    try:
        rt = services()
        probes = (*rt.health_probes, TaskHubProbe(client.get_status))
        report = await rt.health_cache.report(
            lambda: check_health(probes, rt.settings.data_boundary, rt.bootstrap.status)
        )
    except Exception as exc:  # settings that do not build services: unhealthy, without internals
        log.error("health: the app cannot build its services (%s)", type(exc).__name__)
        body = {"status": "unavailable", "reason": "the app's settings do not build its services; see the logs"}
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return func.HttpResponse(json.dumps(body), status_code=503, mimetype="application/json", headers=headers)
    if not report.ok:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return func.HttpResponse(
        json.dumps(report.to_json()),
        status_code=200 if report.ok else 503,
        mimetype="application/json",
        headers=headers,
    )


@bp.function_name("first_tenant_bootstrap")
@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=True)
def first_tenant_bootstrap(timer: func.TimerRequest) -> None:
    """Import the first tenant from the GATEKEEPER_BOOTSTRAP_TENANT_* settings until it is done (then one read
    per host start, nothing per tick). On host start too: the install's buyer should not wait five minutes."""
    try:
        result = services().bootstrap.run()
    except Exception as exc:  # a dependency not ready yet (roles propagate in minutes): the next tick retries
        log.warning("first tenant bootstrap: not done yet (%s); retrying in five minutes", type(exc).__name__)
        return
    log.info("first tenant bootstrap: %s", result.state.value)
