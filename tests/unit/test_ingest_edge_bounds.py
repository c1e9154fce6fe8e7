"""The checks every ingestion route makes first (gatekeeper/ingest/edge.py), at their exact boundaries: body
size (declared and actual), JSON media types, header lengths (name and value counted together; credential
headers answer 401, others 431), required headers, and case-insensitive header names."""

from __future__ import annotations

import pytest

from gatekeeper.errors import HeadersTooLarge, InputTooLarge, MalformedInput, Unauthenticated, UnsupportedMediaType
from gatekeeper.ingest.edge import (
    MAX_HEADER_CHARS,
    MAX_LARGE_HEADER_CHARS,
    Headers,
    IncomingRequest,
    require_bounded_headers,
    require_header,
    require_json_content_type,
    require_size,
)

LIMIT = 1000


def request(body: bytes = b"{}", **headers: str) -> IncomingRequest:
    return IncomingRequest.of(body, {k.replace("_", "-"): v for k, v in headers.items()})


def test_header_names_are_case_insensitive_whatever_case_they_arrive_in():
    headers = Headers({"X-Hub-Signature-256": "sha256=ab", "content-TYPE": "application/json"})
    assert headers.get("x-hub-signature-256") == "sha256=ab" and headers.get("Content-Type") == "application/json"
    assert "X-HUB-SIGNATURE-256" in headers and "x-other" not in headers and 42 not in headers  # type: ignore[operator]
    assert headers.as_dict() == {"x-hub-signature-256": "sha256=ab", "content-type": "application/json"}


def test_a_body_of_exactly_the_limit_passes_and_one_byte_more_is_refused():
    require_size(request(b"x" * LIMIT), LIMIT)
    with pytest.raises(InputTooLarge):
        require_size(request(b"x" * (LIMIT + 1)), LIMIT)


@pytest.mark.parametrize(
    ("declared", "refused"),
    [
        (str(LIMIT), False),
        (str(LIMIT + 1), True),  # refused on the declaration, before the body is read
        ("9" * 21, True),  # more digits than any real length (and more than int() should parse)
        ("²", False),  # not ASCII digits: not a declaration at all (the actual size still counts)
        ("12ab", False),
        (" 1001 ", True),
    ],
)
def test_a_declared_content_length_over_the_limit_is_refused(declared, refused):
    incoming = request(b"{}", content_length=declared)
    if refused:
        with pytest.raises(InputTooLarge):
            require_size(incoming, LIMIT)
    else:
        require_size(incoming, LIMIT)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/cloudevents+json"],
)
def test_json_media_types_pass(content_type):
    require_json_content_type(request(content_type=content_type))


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "application/jsonl", "text/plain", "text/json", ""])
def test_other_media_types_are_refused_naming_the_header(content_type):
    incoming = request(content_type=content_type) if content_type else request()
    with pytest.raises(UnsupportedMediaType) as refused:
        require_json_content_type(incoming)
    assert refused.value.field == "header:Content-Type"


def test_a_header_counts_its_name_and_value_together():
    name = "x-custom"
    require_bounded_headers(request(**{name: "v" * (MAX_HEADER_CHARS - len(name))}))
    with pytest.raises(HeadersTooLarge) as refused:
        require_bounded_headers(request(**{name: "v" * (MAX_HEADER_CHARS - len(name) + 1)}))
    assert refused.value.field == "header:x-custom"
    long_name = "x-" + "n" * MAX_HEADER_CHARS  # a short value does not excuse a huge name
    with pytest.raises(HeadersTooLarge) as refused:
        require_bounded_headers(request(**{long_name: "v"}))
    assert len(refused.value.field) <= len("header:") + 64  # the name is shortened in the answer


@pytest.mark.parametrize(
    "name",
    [
        "authorization",
        "x-gatekeeper-tenant",
        "x-functions-key",
        "x-hub-signature-256",
        "x-gatekeeper-check-secret",
        "x-gatekeeper-hook-secret",
        "x-gatekeeper-connector-secret",
        "x-hook-signature",
        "x-content-signature",
        "x-ms-client-principal",
    ],
)
def test_an_oversized_credential_header_is_not_authenticated_not_a_431(name):
    with pytest.raises(Unauthenticated):
        require_bounded_headers(request(**{name: "v" * (MAX_LARGE_HEADER_CHARS + 1)}))


def test_the_documented_large_headers_get_their_larger_limits():
    require_bounded_headers(request(authtoken="t" * (MAX_LARGE_HEADER_CHARS - len("authtoken"))))
    require_bounded_headers(request(authorization="Bearer " + "t" * (2 * MAX_HEADER_CHARS - 30)))
    with pytest.raises(HeadersTooLarge):
        require_bounded_headers(request(authtoken="t" * MAX_LARGE_HEADER_CHARS))
    with pytest.raises(Unauthenticated):
        require_bounded_headers(request(authorization="t" * (2 * MAX_HEADER_CHARS)))


@pytest.mark.parametrize("value", [None, ""])
def test_a_required_header_that_is_missing_or_empty_is_named(value):
    incoming = request() if value is None else request(x_github_event=value)
    with pytest.raises(MalformedInput) as refused:
        require_header(incoming, "X-GitHub-Event")
    assert refused.value.field == "header:X-GitHub-Event"
    assert require_header(request(x_github_event="ping"), "X-GitHub-Event") == "ping"
