"""Shared HTTP plumbing for trigger functions: request conversion and problem-details answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from gatekeeper import telemetry
from gatekeeper.errors import Problem
from gatekeeper.ingest.edge import IncomingRequest

log = logging.getLogger("gatekeeper.http")

PROBLEM_JSON = "application/problem+json"


def services():
    """The process runtime, imported on first use so that indexing the app stays fast (cold start)."""
    from gatekeeper.runtime import runtime

    return runtime()


def incoming(req: func.HttpRequest) -> IncomingRequest:
    return IncomingRequest.of(req.get_body() or b"", dict(req.headers), req.url)


def json_response(status: int, body: dict[str, Any]) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def problem_response(problem: Problem, instance: str | None = None) -> func.HttpResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="gatekeeper"'} if problem.status == 401 else None
    return func.HttpResponse(
        json.dumps(problem.to_dict(instance)), status_code=problem.status, mimetype=PROBLEM_JSON, headers=headers
    )


def handle(req: func.HttpRequest, action: Callable[[], tuple[int, dict[str, Any]]]) -> func.HttpResponse:
    """Run a route's action; Problems become problem+json, anything else a 500 without internals."""
    try:
        status, body = action()
        return json_response(status, body)
    except Problem as problem:
        log.info("refused %s: %s %s", req.url.split("?")[0], problem.status, problem.slug)
        telemetry.emit(
            telemetry.Event.INGEST_REJECTED, route=urlsplit(req.url).path, status=problem.status, slug=problem.slug
        )
        return problem_response(problem, instance=req.url.split("?")[0])
    except Exception:
        log.exception("unhandled error on %s", req.url.split("?")[0])
        telemetry.emit(telemetry.Event.INGEST_REJECTED, route=urlsplit(req.url).path, status=500, slug="internal-error")
        return problem_response(
            Problem(500, "internal-error", "Internal error", "The event was not accepted; retry later."),
        )
