"""Shared HTTP plumbing for trigger functions: request conversion and problem-details answers.

The only place a product error kind (`gatekeeper.errors`) becomes an HTTP status: `STATUS_BY_KIND` below,
rendered as RFC 9457 problem+json with `Retry-After` (dependency unavailable) and `WWW-Authenticate`
(unauthenticated)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import azure.functions as func

from functions.durable_gateway import DurableClientGateway
from gatekeeper import telemetry
from gatekeeper.errors import (
    RETRY_AFTER_SECONDS,
    Conflict,
    DependencyUnavailable,
    Forbidden,
    GatekeeperError,
    Gone,
    HeadersTooLarge,
    InputTooLarge,
    IntegrityError,
    InvalidInput,
    MalformedInput,
    NotFound,
    Unauthenticated,
    UnsupportedMediaType,
)
from gatekeeper.ingest.edge import IncomingRequest
from gatekeeper.warmup import FIRST_REQUEST

if TYPE_CHECKING:
    import azure.durable_functions as df

    from gatekeeper.services import Services

log = logging.getLogger("gatekeeper.http")

PROBLEM_JSON = "application/problem+json"


def services() -> Services:
    """The process's services (`gatekeeper.services.get_services`), imported on first use so that indexing
    the app stays fast (cold start)."""
    from gatekeeper.services import get_services

    return get_services()


def incoming(req: func.HttpRequest) -> IncomingRequest:
    return IncomingRequest.of(req.get_body() or b"", dict(req.headers), req.url)


def json_response(status: int, body: dict[str, Any]) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


# Kind -> HTTP status. The most specific kind in an error's class hierarchy wins; anything else is 500.
STATUS_BY_KIND: dict[type[GatekeeperError], int] = {
    MalformedInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    InputTooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidInput: 422,
    HeadersTooLarge: 431,
    IntegrityError: 500,
    DependencyUnavailable: 503,
}


def status_of(error: GatekeeperError) -> int:
    """The HTTP status a product error is answered with."""
    for kind in type(error).__mro__:
        status = STATUS_BY_KIND.get(kind)
        if status is not None:
            return status
    return 500


def problem_body(error: GatekeeperError, instance: str | None = None) -> dict[str, Any]:
    """The RFC 9457 problem-details document for a product error."""
    body: dict[str, Any] = {"type": error.type_uri, "title": error.title, "status": status_of(error)}
    if error.detail:
        body["detail"] = error.detail
    if instance:
        body["instance"] = instance
    if error.field:
        body["field"] = error.field
    body.update(error.extra)
    return body


def problem_response(problem: GatekeeperError, instance: str | None = None) -> func.HttpResponse:
    status = status_of(problem)
    headers: dict[str, str] = {}
    if isinstance(problem, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="gatekeeper"'
    retry_after = problem.retry_after if isinstance(problem, DependencyUnavailable) else None
    if retry_after is None and status == 503:  # every "not now" says when to try again
        retry_after = RETRY_AFTER_SECONDS
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return func.HttpResponse(
        json.dumps(problem_body(problem, instance)),
        status_code=status,
        mimetype=PROBLEM_JSON,
        headers=headers or None,
    )


def failure_response(req: func.HttpRequest, exc: Exception) -> func.HttpResponse:
    """The answer for an exception a route did not turn into a product error itself: dependency outages are 503
    with Retry-After, sealed data that does not open is a named, audited integrity error, anything else a
    500 without internals. Never a traceback or an exception message in the body."""
    from gatekeeper.failures import as_error
    from gatekeeper.store.envelope import SealedDataUnreadable

    route = req.url.split("?")[0]
    problem = as_error(exc)
    if problem is None:
        log.exception("unhandled error on %s", route)
        problem = GatekeeperError("The event was not accepted; retry later.")
        instance = None
    else:
        instance = route
        if isinstance(exc, SealedDataUnreadable):
            services().record_integrity_failure(exc, urlsplit(req.url).path)
        else:
            log.warning("refused %s: %s %s (%s)", route, status_of(problem), problem.code, type(exc).__name__)
    telemetry.emit(
        telemetry.Event.INGEST_REJECTED, route=urlsplit(req.url).path, status=status_of(problem), slug=problem.code
    )
    return problem_response(problem, instance=instance)


def handle(req: func.HttpRequest, action: Callable[[], tuple[int, dict[str, Any]]]) -> func.HttpResponse:
    """Run a route's action; product errors become problem+json, outages 503 with Retry-After, sealed data that
    does not open an audited `integrity-error`, anything else a 500 without internals. The process's first
    request runs in the start-up window (`gatekeeper.warmup`: its imports without the cyclic collector)."""
    try:
        with FIRST_REQUEST.hold():
            status, body = action()
        return json_response(status, body)
    except GatekeeperError as problem:
        log.info("refused %s: %s %s", req.url.split("?")[0], status_of(problem), problem.code)
        telemetry.emit(
            telemetry.Event.INGEST_REJECTED, route=urlsplit(req.url).path, status=status_of(problem), slug=problem.code
        )
        return problem_response(problem, instance=req.url.split("?")[0])
    except Exception as exc:
        return failure_response(req, exc)


async def handle_with_client(
    req: func.HttpRequest,
    client: df.DurableOrchestrationClient,
    action: Callable[[DurableClientGateway], tuple[int, dict[str, Any]]],
) -> func.HttpResponse:
    """`handle` for a route with a durable client binding (which makes the function a coroutine): the action's
    blocking storage calls run on a worker thread, and its gateway hands each client call back to this loop."""
    gateway = DurableClientGateway(client, asyncio.get_running_loop())
    return await asyncio.to_thread(handle, req, lambda: action(gateway))
