"""Shared HTTP plumbing for trigger functions: request conversion and problem-details answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import azure.functions as func

from gatekeeper import telemetry
from gatekeeper.errors import RETRY_AFTER_SECONDS, Problem
from gatekeeper.ingest.edge import IncomingRequest

if TYPE_CHECKING:
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


def problem_response(problem: Problem, instance: str | None = None) -> func.HttpResponse:
    headers: dict[str, str] = {}
    if problem.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="gatekeeper"'
    retry_after = problem.retry_after
    if retry_after is None and problem.status == 503:  # every "not now" says when to try again
        retry_after = RETRY_AFTER_SECONDS
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return func.HttpResponse(
        json.dumps(problem.to_dict(instance)),
        status_code=problem.status,
        mimetype=PROBLEM_JSON,
        headers=headers or None,
    )


def failure_response(req: func.HttpRequest, exc: Exception) -> func.HttpResponse:
    """The answer for an exception a route did not turn into a Problem itself: dependency outages are 503
    with Retry-After, sealed data that does not open is a named, audited integrity error, anything else a
    500 without internals. Never a traceback or an exception message in the body."""
    from gatekeeper.failures import as_problem
    from gatekeeper.store.envelope import SealedDataUnreadable

    route = req.url.split("?")[0]
    problem = as_problem(exc)
    if problem is None:
        log.exception("unhandled error on %s", route)
        problem = Problem(500, "internal-error", "Internal error", "The event was not accepted; retry later.")
        instance = None
    else:
        instance = route
        if isinstance(exc, SealedDataUnreadable):
            services().record_integrity_failure(exc, urlsplit(req.url).path)
        else:
            log.warning("refused %s: %s %s (%s)", route, problem.status, problem.slug, type(exc).__name__)
    telemetry.emit(
        telemetry.Event.INGEST_REJECTED, route=urlsplit(req.url).path, status=problem.status, slug=problem.slug
    )
    return problem_response(problem, instance=instance)


def handle(req: func.HttpRequest, action: Callable[[], tuple[int, dict[str, Any]]]) -> func.HttpResponse:
    """Run a route's action; Problems become problem+json, outages 503 with Retry-After, sealed data that
    does not open an audited `integrity-error`, anything else a 500 without internals."""
    try:
        status, body = action()
        return json_response(status, body)
    except Problem as problem:
        log.info("refused %s: %s %s", req.url.split("?")[0], problem.status, problem.slug)
        telemetry.emit(
            telemetry.Event.INGEST_REJECTED, route=urlsplit(req.url).path, status=problem.status, slug=problem.slug
        )
        return problem_response(problem, instance=req.url.split("?")[0])
    except Exception as exc:
        return failure_response(req, exc)
