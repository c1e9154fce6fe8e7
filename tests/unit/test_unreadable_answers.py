"""An answer the SDK cannot read (a proxy's or firewall's HTML page where storage or Key Vault should answer)
is that service being unavailable: never an internal error, and for Key Vault never a refused or destroyed
key, which would read as an integrity failure of the tenant's data (`gatekeeper.failures`,
`gatekeeper.store.key_errors`)."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import DeserializationError, HttpResponseError

from gatekeeper.errors import DependencyUnavailable
from gatekeeper.failures import as_error
from gatekeeper.store.key_errors import KeyGone, KeyRefused, KeyServiceUnavailable, classify


def page_json_error() -> json.JSONDecodeError:
    try:
        json.loads("<html>blocked</html>")
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError("unreachable")


def not_utf8() -> UnicodeDecodeError:
    try:
        b"\xff\xfe".decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc
    raise AssertionError("unreachable")


def refused_2xx() -> HttpResponseError:
    error = HttpResponseError("Operation returned an invalid status 'OK'")
    error.status_code = 200
    return error


@pytest.mark.parametrize(
    "exc",
    [DeserializationError("Unable to deserialize response data"), refused_2xx()],
    ids=["unreadable-body", "2xx-refused-by-the-sdk"],
)
def test_storage_answering_something_else_is_unavailable(exc):
    problem = as_error(exc)
    assert isinstance(problem, DependencyUnavailable) and problem.extra["dependency"] == "storage service"


@pytest.mark.parametrize(
    "exc",
    [page_json_error(), DeserializationError("bad body"), not_utf8()],
    ids=["json", "deserialization", "unicode"],
)
def test_a_key_service_answer_that_cannot_be_read_is_unavailable_not_a_refusal(exc):
    failure = classify(exc, "tenant t: unwrap data key d1")
    assert isinstance(failure, KeyServiceUnavailable) and not isinstance(failure, KeyGone)


def test_a_local_unwrap_that_fails_is_still_a_refusal():
    failure = classify(ValueError("Decryption failed"), "tenant t: unwrap data key d1")
    assert isinstance(failure, KeyRefused)
