"""Checks every ingestion route makes before anything else: size, content type, JSON well-formedness.

Kept free of azure.functions so the same checks run under the Functions host, the local runner and
the tests; the trigger functions only copy the request into `IncomingRequest`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.errors import Problem


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
    declared = request.headers.get("content-length")
    if (declared and declared.isdigit() and int(declared) > max_bytes) or len(request.body) > max_bytes:
        raise Problem(413, "payload-too-large", "The request body is too large", f"The limit is {max_bytes} bytes.")


def require_json_content_type(request: IncomingRequest) -> None:
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported content type",
            f"Expected application/json, got {content_type or 'no content type'}.",
            field="header:Content-Type",
        )


def parse_json_object(body: bytes, *, what: str = "body") -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Problem(400, "malformed-json", "The body is not valid JSON", f"{what}: {exc}", field=what) from exc
    if not isinstance(document, dict):
        raise Problem(400, "malformed-json", "The body must be a JSON object", f"{what}: expected an object")
    return document


def require_header(request: IncomingRequest, name: str) -> str:
    value = request.headers.get(name)
    if not value:
        raise Problem(
            400, "missing-header", "A required header is missing", f"Header {name} is required.", field=f"header:{name}"
        )
    return value
