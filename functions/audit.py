"""Audit routes and timers: the export for a tenant's auditors, and checkpoints for quiet logs."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from functions.http import failure_response, problem_response, services
from gatekeeper.errors import GatekeeperError

log = logging.getLogger("gatekeeper.audit")
bp = df.Blueprint()


@bp.function_name("audit_export")
@bp.route(route="tenants/{tenant}/audit/export", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def audit_export(req: func.HttpRequest) -> func.HttpResponse:
    """`?format=oscal|bundle` (and `jsonl`), optional `from`/`to`; Entra ID app role Gatekeeper.Auditor."""
    from gatekeeper.audit.access import authorize_auditor, parse_range
    from gatekeeper.audit.export import export_for_http
    from gatekeeper.security.identity import identify_caller

    rt = services()
    tenant = req.route_params.get("tenant", "")
    try:
        principal = identify_caller(
            dict(req.headers), rt.token_validator, trust_easyauth=rt.settings.trust_easyauth_header
        )
        authorize_auditor(principal, tenant, rt.entra_tenants_for)
        content_type, body = export_for_http(
            rt.audit_for,
            tenant,
            req.params.get("format", "oscal"),
            start=parse_range(req.params.get("from"), "from"),
            end=parse_range(req.params.get("to"), "to"),
        )
    except GatekeeperError as problem:
        return problem_response(problem, instance=req.url.split("?")[0])
    except Exception as exc:  # outages: 503 with Retry-After; sealed data that does not open: integrity-error
        return failure_response(req, exc)
    log.info("audit export of %s by %s", tenant, principal.oid)
    return func.HttpResponse(body, status_code=200, mimetype=content_type)


@bp.function_name("audit_checkpoints")
@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=False)
def audit_checkpoints(timer: func.TimerRequest) -> None:
    """Sign a checkpoint for every tenant whose log has grown and whose interval has passed."""
    rt = services()
    for record in rt.registry.records():
        try:
            signed = rt.audit_for(record.tenant_id).checkpoint()
        except Exception:  # one tenant's outage must not stop the others' checkpoints
            log.exception("checkpoint failed for tenant %s", record.tenant_id)
            continue
        if signed is not None:
            log.info("checkpoint for %s", record.tenant_id)
