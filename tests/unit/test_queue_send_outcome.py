"""Which failed queue sends certainly stored nothing (their claim-check blob may go) and which leave the outcome
open (the blob stays, or a queued reference would name a deleted blob): `gatekeeper.ingest.queue`."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)

from gatekeeper.ingest.queue import certainly_not_sent


def answered(status: int) -> HttpResponseError:
    error = HttpResponseError(f"status {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    "exc",
    [ServiceRequestError("connection refused"), answered(400), answered(403), ResourceNotFoundError("no queue")],
    ids=["never-sent", "400", "403", "404"],
)
def test_a_send_that_never_left_or_was_refused_stored_nothing(exc):
    if isinstance(exc, ResourceNotFoundError):
        exc.status_code = 404
    assert certainly_not_sent(exc) is True


@pytest.mark.parametrize(
    "exc",
    [
        ServiceResponseError("connection reset after the request"),
        ServiceResponseTimeoutError("read timed out"),
        answered(408),
        answered(500),
        answered(503),
        HttpResponseError("no status"),
        RuntimeError("anything else"),
    ],
    ids=["lost-answer", "read-timeout", "408", "500", "503", "no-status", "unknown"],
)
def test_a_lost_answer_a_server_error_or_an_unknown_failure_leaves_the_outcome_open(exc):
    assert certainly_not_sent(exc) is False
