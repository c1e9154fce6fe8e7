"""Checks every ingestion route makes before anything else: size, content type, JSON well-formedness.

Kept free of azure.functions so the same checks run under the Functions host, the local runner and
the tests; the trigger functions only copy the request into `IncomingRequest`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gatekeeper import json_bounded
from gatekeeper.errors import (
    HeadersTooLarge,
    InputTooLarge,
    MalformedInput,
    UnsupportedMediaType,
    unauthenticated,
)

MAX_HEADER_CHARS = 8192  # any one header; what a proxy in front of the app would allow
MAX_LARGE_HEADER_CHARS = 65_536
# Headers whose documented content can be larger. Azure DevOps sends the job's access token (a JWT that grows
# with the pipeline's scopes; 44 KiB is seen) in the check's `AuthToken` header; Entra access tokens carrying
# many groups or roles run past 8 KiB.
HEADER_LIMITS = {"authtoken": MAX_LARGE_HEADER_CHARS, "authorization": 2 * MAX_HEADER_CHARS}
# Headers that carry a credential or name the tenant: too large means "not authenticated" (401), never 400,
# so the answer says no more than for any other wrong credential.
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "x-gatekeeper-tenant",
        "x-functions-key",
        "x-hub-signature-256",
        "x-gatekeeper-check-secret",
        "x-gatekeeper-hook-secret",
        "x-gatekeeper-connector-secret",
        "x-hook-signature",
        "x-content-signature",  # ConnectWise's callback signature (gatekeeper.ingest.connectwise_signature)
        "x-ms-client-principal",
    }
)


class Headers:
    """Case-insensitive, read-only header lookup (HTTP header names are case-insensitive)."""

    def __init__(self, headers: Mapping[str, str] | None = None):
        self._headers = {k.lower(): v for k, v in (headers or {}).items()}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._headers.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._headers

    def as_dict(self) -> dict[str, str]:
        return dict(self._headers)


@dataclass(frozen=True)
class IncomingRequest:
    body: bytes
    headers: Headers = field(default_factory=Headers)
    path: str = ""

    @classmethod
    def of(cls, body: bytes, headers: Mapping[str, str] | None = None, path: str = "") -> IncomingRequest:
        return cls(body=body, headers=Headers(headers), path=path)


def require_size(request: IncomingRequest, max_bytes: int) -> None:
    declared = (request.headers.get("content-length") or "").strip()
    # ASCII digits only ("²".isdigit() is True) and no more than 20 of them (int() refuses 4,300)
    too_long = declared.isascii() and declared.isdigit() and (len(declared) > 20 or int(declared) > max_bytes)
    if too_long or len(request.body) > max_bytes:
        raise InputTooLarge(f"The limit is {max_bytes} bytes.")


def require_json_content_type(request: IncomingRequest) -> None:
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"Expected application/json, got {content_type or 'no content type'}.",
            "header:Content-Type",
            code="unsupported-media-type",
            title="Unsupported content type",
        )


def require_bounded_headers(request: IncomingRequest) -> None:
    """Refuse over-long headers before any of them is used as a key or compared: a credential or tenant
    header answers 401 (as any bad credential does), any other 431 naming the header."""
    for name, value in request.headers.as_dict().items():
        limit = HEADER_LIMITS.get(name, MAX_HEADER_CHARS)
        if len(name) + len(value) <= limit:
            continue
        if name in CREDENTIAL_HEADERS:
            raise unauthenticated(f"Header {name} is longer than {limit} characters.")
        shown = name if len(name) <= 64 else name[:63] + "…"
        raise HeadersTooLarge(
            f"Header {shown} is longer than the limit of {limit} characters.",
            f"header:{shown}",
            code="header-too-large",
            title="A request header is too large",
        )


def parse_json_object(body: bytes, *, what: str = "body") -> dict[str, Any]:
    """The body as a JSON object, read by the bounded parser: 400 naming the field for anything else."""
    try:
        return json_bounded.loads_object(body)
    except json_bounded.JsonBoundsError as exc:
        raise json_bounded.as_problem(exc, what) from None


def require_header(request: IncomingRequest, name: str) -> str:
    value = request.headers.get(name)
    if not value:
        raise MalformedInput(
            f"Header {name} is required.", f"header:{name}", code="missing-header", title="A required header is missing"
        )
    return value
