"""One product error base and the few kinds callers act on.

Domain code raises a kind (`InvalidInput`, `Unauthenticated`, `Forbidden`, `NotFound`, `Conflict`, `Gone`,
`DependencyUnavailable`, `IntegrityError`); each carries a stable machine `code` (the problem type slug, a
public contract), a human `title` and `detail`, and the `field` at fault. What a kind means on the wire (the
RFC 9457 status, `Retry-After`, `WWW-Authenticate`) is decided in one place only, `functions/http.py`; the
CLI maps kinds to exit codes in `gatekeeper/cli.py`. No HTTP number lives here.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://gatekeeper.dev/problems/"
# What a "not now" tells the caller (Retry-After): long enough for a blip to pass, short enough for a pipeline.
RETRY_AFTER_SECONDS = 5


class GatekeeperError(Exception):
    """A failure the caller can act on: a stable `code`, a `title`, a `detail` naming the `field`."""

    default_code: ClassVar[str] = "internal-error"
    default_title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str = "",
        *,
        code: str | None = None,
        title: str | None = None,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.code = code or self.default_code
        self.title = title or self.default_title
        self.detail = detail
        self.field = field
        self.extra: dict[str, Any] = dict(extra or {})
        super().__init__(f"{self.title}: {detail}" if detail else self.title)

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.code


class InvalidInput(GatekeeperError):
    """The input was read but a field is missing or wrong (unprocessable)."""

    default_code = "validation-failed"
    default_title = "The payload failed validation"

    def __init__(
        self,
        detail: str = "",
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        *,
        code: str | None = None,
        title: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        more = dict(extra or {})
        if errors:
            more["errors"] = errors
        super().__init__(detail, code=code, title=title, field=field, extra=more)


class MalformedInput(InvalidInput):
    """The input could not be read at all (not JSON, a repeated key, a missing header, a bad query value)."""

    default_code = "malformed-request"
    default_title = "The request is malformed"


class InputTooLarge(InvalidInput):
    """The body is over its limit; nothing was read or written."""

    default_code = "payload-too-large"
    default_title = "The request body is too large"


class UnsupportedMediaType(InvalidInput):
    """The body is not in a media type the route reads."""

    default_code = "unsupported-media-type"
    default_title = "Unsupported media type"


class HeadersTooLarge(InvalidInput):
    """The request's headers are over their limit."""

    default_code = "headers-too-large"
    default_title = "Request headers too large"


class Unauthenticated(GatekeeperError):
    """The caller could not be authenticated. One answer for every reason: nothing is revealed."""

    default_code = "unauthenticated"
    default_title = "Authentication failed"


class Forbidden(GatekeeperError):
    """The caller is known but may not do this."""

    default_code = "forbidden"
    default_title = "Forbidden"


class NotFound(GatekeeperError):
    default_code = "not-found"
    default_title = "Not found"


class Conflict(GatekeeperError):
    """The request conflicts with what is already recorded (a second vote, a racing write)."""

    default_code = "conflict"
    default_title = "Conflict"


class Gone(GatekeeperError):
    """What the request acts on is closed for good (a decided gate, a passed deadline)."""

    default_code = "gone"
    default_title = "Gone"


class DependencyUnavailable(GatekeeperError):
    """A service Gatekeeper depends on did not answer in time. Nothing was accepted and nothing written, so
    the caller can send the same request again after `retry_after` seconds."""

    default_code = "dependency-unavailable"
    default_title = "A service Gatekeeper depends on is unavailable"

    def __init__(
        self,
        detail: str = "",
        *,
        code: str | None = None,
        title: str | None = None,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
        retry_after: int = RETRY_AFTER_SECONDS,
    ) -> None:
        super().__init__(detail, code=code, title=title, field=field, extra=extra)
        self.retry_after = retry_after


class IntegrityError(GatekeeperError):
    """Stored or presented data failed its integrity check. Retrying will not help."""

    default_code = "integrity-error"
    default_title = "Stored data failed its integrity check"


DEPENDENCY_UNAVAILABLE = DependencyUnavailable.default_code
INTEGRITY_ERROR = IntegrityError.default_code


def unauthenticated(detail: str = "The request could not be authenticated.") -> Unauthenticated:
    """One answer for a bad signature, a missing secret and an unknown tenant: nothing is revealed."""
    return Unauthenticated(detail)


def foreign_target(field: str, detail: str) -> InvalidInput:
    """An authenticated request names a target (repository, installation, callback URL, organisation, account)
    that is not registered for its tenant: invalid input naming the field. Whose it is, if anyone's, is not
    said."""
    return InvalidInput(
        f"field '{field}' {detail}",
        field,
        code="target-not-registered",
        title="The request names a target not registered for this tenant",
    )


def dependency_unavailable(dependency: str, retry_after: int) -> DependencyUnavailable:
    """Storage or the key service did not answer in time; nothing was accepted."""
    return DependencyUnavailable(
        f"The {dependency} did not answer in time; nothing was accepted. Send the request again later.",
        extra={"dependency": dependency},
        retry_after=retry_after,
    )


def integrity_error() -> IntegrityError:
    """Stored sealed data did not open where it lies (moved, copied or tampered with, or its key was
    destroyed). The failure is logged and audited for the tenant's operators."""
    return IntegrityError(
        "A sealed record did not open where it is stored; the failure was recorded. Contact the operators."
    )
