"""The approval page (public contract), for the browser and mail. Thin: the logic is
`gatekeeper.gates.approval_page.ApprovalPage`; this module only turns requests and answers into HTTP.

    GET  /api/approvals/{instance_id}/page   -> 200 text/html; a browser without an identity -> 302 to login
    POST /api/approvals/{instance_id}/page   application/x-www-form-urlencoded -> 303 back to the page

Anonymous at the Functions level on purpose, like the API: App Service authentication signs people in for
this path (X-MS-CLIENT-PRINCIPAL), and bearer tokens keep working. A refusal renders as a small HTML page
with the problem+json's wording and status (`functions.http.status_of`, the one kind -> status table).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

import azure.durable_functions as df
import azure.functions as func

from functions.approvals import _NoGateway, approver, decision_service
from functions.durable_gateway import DurableClientGateway
from functions.http import failure_response, services, status_of
from gatekeeper.errors import DependencyUnavailable, GatekeeperError, Unauthenticated

if TYPE_CHECKING:
    from gatekeeper.gates.approval_page import ApprovalPage, PageAnswer
    from gatekeeper.gates.decisions import OrchestrationGateway

bp = df.Blueprint()
log = logging.getLogger("gatekeeper.approval_page")

LOGIN_PATH = "/.auth/login/aad"  # App Service authentication's sign-in endpoint for Entra ID


def approval_page(gateway: OrchestrationGateway) -> ApprovalPage:
    # Imported on the first request, not when the host indexes the app (cold start).
    from gatekeeper.gates.approval_page import ApprovalPage
    from gatekeeper.gates.page_guard import FormGuard

    runtime = services()
    return ApprovalPage(
        decision_service(gateway),
        FormGuard(runtime.sealer, runtime.clock),
        app_url=runtime.approval_base_url,
        clock=runtime.clock,
    )


def render_problem(status: int, title: str, detail: str) -> str:
    from gatekeeper.gates.page import render_problem as render

    return render(status, title, detail)


def _headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    from gatekeeper.gates.page import HEADERS

    return {**HEADERS, **(extra or {})}


def html_response(status: int, html: str, extra: Mapping[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(html, status_code=status, headers=_headers(extra), mimetype="text/html", charset="utf-8")


def problem_page(problem: GatekeeperError) -> func.HttpResponse:
    """The refusal as HTML, same title, detail and status as the problem+json; Retry-After / WWW-Authenticate
    as the API sends them."""
    status = status_of(problem)
    extra: dict[str, str] = {}
    if isinstance(problem, Unauthenticated):
        extra["WWW-Authenticate"] = 'Bearer realm="gatekeeper"'
    if isinstance(problem, DependencyUnavailable):
        extra["Retry-After"] = str(problem.retry_after)
    return html_response(status, render_problem(status, problem.title, problem.detail), extra)


def _is_browser_without_identity(req: func.HttpRequest) -> bool:
    """A top-level browser visit with no credential at all: sign in first, then come back."""
    headers = {k.lower(): v for k, v in req.headers.items()}
    return (
        req.method.upper() == "GET"
        and "authorization" not in headers
        and "text/html" in headers.get("accept", "").lower()
    )


def login_redirect(instance_id: str) -> func.HttpResponse:
    from gatekeeper.gates.page import page_path

    target = f"{LOGIN_PATH}?post_login_redirect_uri={quote(page_path(instance_id), safe='')}"
    return func.HttpResponse(status_code=302, headers=_headers({"Location": target}))


def to_response(answer: PageAnswer) -> func.HttpResponse:
    extra = {"Set-Cookie": answer.set_cookie} if answer.set_cookie else {}
    if answer.redirect is not None:
        return func.HttpResponse(status_code=303, headers=_headers({"Location": answer.redirect, **extra}))
    if answer.refusal is not None:
        _log_refusal("page shows refusal", answer.refusal)
    status = 200 if answer.refusal is None else status_of(answer.refusal)
    return html_response(status, answer.html or "", extra)


def _log_refusal(what: str, problem: GatekeeperError) -> None:
    log.info("%s: %s %s", what, status_of(problem), problem.code)  # the code only: no detail, no identity


def serve(req: func.HttpRequest, action: Callable[[], PageAnswer]) -> func.HttpResponse:
    """Run the page action; a browser without an identity goes to sign in, refusals become HTML pages,
    anything else the API's failure handling (503 with Retry-After, audited integrity errors, bare 500)."""
    instance_id = req.route_params.get("instance_id", "")
    try:
        return to_response(action())
    except Unauthenticated as problem:
        if _is_browser_without_identity(req):
            return login_redirect(instance_id)
        _log_refusal("page refused", problem)
        return problem_page(problem)
    except GatekeeperError as problem:
        _log_refusal("page refused", problem)
        return problem_page(problem)
    except Exception as exc:
        failed = failure_response(req, exc)  # logs, audits integrity failures, never leaks internals
        document = json.loads(failed.get_body())
        retry = failed.headers.get("Retry-After")
        return html_response(
            failed.status_code,
            render_problem(failed.status_code, str(document.get("title", "")), str(document.get("detail", ""))),
            {"Retry-After": retry} if retry else None,
        )


def _request_headers(req: func.HttpRequest) -> dict[str, str]:
    return dict(req.headers.items())


@bp.function_name("approval_page")
@bp.route(route="approvals/{instance_id}/page", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def approval_page_get(req: func.HttpRequest) -> func.HttpResponse:
    instance_id = req.route_params.get("instance_id", "")
    return serve(req, lambda: approval_page(_NoGateway()).get(instance_id, approver(req), _request_headers(req)))


@bp.function_name("approval_page_decision")
@bp.route(route="approvals/{instance_id}/page", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def approval_page_post(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    # Async for the durable client binding (see functions/approvals.py); blocking work runs on a thread.
    instance_id = req.route_params.get("instance_id", "")
    gateway = DurableClientGateway(client, asyncio.get_running_loop())
    body = req.get_body() or b""
    return await asyncio.to_thread(
        serve,
        req,
        lambda: approval_page(gateway).post(instance_id, approver(req), _request_headers(req), body),
    )
