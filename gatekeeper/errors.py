"""Errors that carry an RFC 9457 problem-details shape, so every edge answers bad input the same way."""

from __future__ import annotations

import dataclasses
from typing import Any

PROBLEM_BASE = "https://gatekeeper.dev/problems/"
# What a 503 tells the caller (Retry-After): long enough for a blip to pass, short enough for a waiting pipeline.
RETRY_AFTER_SECONDS = 5


@dataclasses.dataclass
class Problem(Exception):
    """A client-facing failure: HTTP status, a stable type slug, a title and a detail naming the field."""

    status: int
    slug: str
    title: str
    detail: str = ""
    field: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    retry_after: int | None = None  # seconds; sent as the Retry-After header (503: when to try again)

    def __post_init__(self) -> None:
        super().__init__(f"{self.title}: {self.detail}" if self.detail else self.title)

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type_uri, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        if self.field:
            body["field"] = self.field
        body.update(self.extra)
        return body


class ValidationProblem(Problem):
    """The payload was well-formed but a field is missing or wrong (422)."""

    def __init__(self, detail: str, field: str | None = None, errors: list[dict[str, Any]] | None = None):
        super().__init__(
            status=422,
            slug="validation-failed",
            title="The payload failed validation",
            detail=detail,
            field=field,
            extra={"errors": errors} if errors else {},
        )


def unauthenticated(detail: str = "The request could not be authenticated.") -> Problem:
    """One answer for a bad signature, a missing secret and an unknown tenant: nothing is revealed."""
    return Problem(401, "unauthenticated", "Authentication failed", detail)


def foreign_target(field: str, detail: str) -> Problem:
    """An authenticated request names a target (repository, installation, callback URL, organisation, account)
    that is not registered for its tenant: 422 naming the field. Whose it is, if anyone's, is not said."""
    return Problem(
        422,
        "target-not-registered",
        "The request names a target not registered for this tenant",
        f"field '{field}' {detail}",
        field=field,
    )


DEPENDENCY_UNAVAILABLE = "dependency-unavailable"
INTEGRITY_ERROR = "integrity-error"


def dependency_unavailable(dependency: str, retry_after: int) -> Problem:
    """503: storage or the key service did not answer in time. Nothing was accepted and nothing written, so
    the caller can send the same request again after `retry_after` seconds."""
    return Problem(
        503,
        DEPENDENCY_UNAVAILABLE,
        "A service Gatekeeper depends on is unavailable",
        f"The {dependency} did not answer in time; nothing was accepted. Send the request again later.",
        extra={"dependency": dependency},
        retry_after=retry_after,
    )


def integrity_error() -> Problem:
    """500, named: stored sealed data did not open where it lies (moved, copied or tampered with, or its key
    was destroyed). Retrying will not help; the failure is logged and audited for the tenant's operators."""
    return Problem(
        500,
        INTEGRITY_ERROR,
        "Stored data failed its integrity check",
        "A sealed record did not open where it is stored; the failure was recorded. Contact the operators.",
    )
