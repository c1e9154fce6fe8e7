"""Which failures a request path answers as 503 dependency-unavailable, which as integrity-error, and which
stay internal errors; and that the answer carries Retry-After and no exception text."""

from __future__ import annotations

import json

import azure.functions as func
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from functions.http import handle, problem_body, status_of
from gatekeeper.failures import as_error
from gatekeeper.store.envelope import SealingUnavailable
from gatekeeper.store.key_errors import KeyGone, KeyServiceUnavailable


def _status(exc: HttpResponseError, status: int) -> HttpResponseError:
    exc.status_code = status
    return exc


@pytest.mark.parametrize(
    ("exc", "dependency"),
    [
        (ServiceRequestError("connection refused to https://acct.table.core.windows.net"), "storage service"),
        (ServiceResponseError("read timed out"), "storage service"),
        (_status(HttpResponseError("server busy"), 503), "storage service"),
        (_status(HttpResponseError("internal"), 500), "storage service"),
        (_status(HttpResponseError("throttled"), 429), "storage service"),
        (_status(ClientAuthenticationError("forbidden"), 403), "storage service"),
        (SealingUnavailable("tenant t: cannot seal"), "key service"),
        (KeyServiceUnavailable("tenant t: key service answered HTTP 500"), "key service"),
    ],
)
def test_dependency_failures_are_503_with_retry_after(exc, dependency):
    problem = as_error(exc)
    assert problem is not None and status_of(problem) == 503 and problem.code == "dependency-unavailable"
    assert problem.retry_after and problem.retry_after > 0 and problem.extra["dependency"] == dependency
    assert str(exc) not in json.dumps(problem_body(problem))


@pytest.mark.parametrize(
    "exc",
    [
        _status(ResourceNotFoundError("no such table"), 404),
        _status(ResourceExistsError("exists"), 409),
        _status(HttpResponseError("bad request"), 400),
        KeyError("x"),
        RuntimeError("bug"),
        KeyGone("tenant t: deleted"),  # raised alone (not through the cipher) it is a bug, not an outage
    ],
)
def test_other_failures_stay_internal_errors(exc):
    assert as_error(exc) is None


def _boom(exc: Exception):
    def action():
        raise exc

    return action


def test_the_route_answer_has_retry_after_and_no_exception_text():
    request = func.HttpRequest("POST", "http://localhost/api/events", headers={}, body=b"{}")
    secret_url = "https://acct.queue.core.windows.net/pipeline-events?sig=SECRET"
    response = handle(request, _boom(ServiceRequestError(f"cannot connect to {secret_url}")))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.mimetype == "application/problem+json"
    body = response.get_body().decode()
    assert "SECRET" not in body and "Traceback" not in body
    assert json.loads(body)["type"].endswith("/dependency-unavailable")


def test_an_internal_error_has_no_retry_after():
    request = func.HttpRequest("POST", "http://localhost/api/events", headers={}, body=b"{}")
    response = handle(request, _boom(RuntimeError("internal detail")))
    assert response.status_code == 500 and "Retry-After" not in response.headers
    assert "internal detail" not in response.get_body().decode()


def test_every_503_says_when_to_try_again():
    """Route-specific 503s (an orchestration or directory lookup that is not reachable now) get Retry-After
    too, so a caller never has to guess."""
    from gatekeeper.errors import Conflict, DependencyUnavailable

    request = func.HttpRequest("POST", "http://localhost/api/approvals/x/decisions", headers={}, body=b"{}")
    unavailable = DependencyUnavailable("send it again", code="orchestration-unavailable", title="Try again")
    response = handle(request, _boom(unavailable))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    refused = handle(request, _boom(Conflict(code="duplicate-vote", title="Already voted")))
    assert "Retry-After" not in refused.headers


def test_a_failure_raised_from_a_dependency_outage_is_that_outage():
    from gatekeeper.audit.signing import CheckpointKeyError

    try:
        try:
            raise ServiceResponseError("read timed out")
        except ServiceResponseError as inner:
            raise CheckpointKeyError("checkpoint key: cannot be read from Key Vault") from inner
    except CheckpointKeyError as outer:
        problem = as_error(outer)
    assert problem is not None and status_of(problem) == 503
    assert as_error(CheckpointKeyError("checkpoint key type 'oct' is neither EC nor RSA")) is None
