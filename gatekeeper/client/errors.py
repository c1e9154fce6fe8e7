"""The client's one small error hierarchy: what a caller (and the CLI's exit code) acts on.

`InvalidRequest` means the request is wrong and sending it again will not help (exit 2); `Unavailable` means
Gatekeeper could not be reached or kept answering "not now" within the client's budget (exit 3);
`UnexpectedResponse` is anything else (exit 1). Each carries the RFC 9457 problem's `code`, `detail` and
`field` when the server sent one, and never a credential.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """A failure talking to Gatekeeper. `field` names the input at fault (the problem's `field`)."""

    exit_code = 1

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        status: int | None = None,
        code: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        self.detail = detail
        self.field = field
        self.status = status
        self.code = code
        self.problem: dict[str, Any] = dict(problem or {})
        where = f" (field: {field})" if field else ""
        super().__init__(f"{detail}{where}")


class InvalidRequest(ClientError):
    """The request was refused as it stands (bad input, a reused idempotency key, wrong credentials)."""

    exit_code = 2


class Unavailable(ClientError):
    """Gatekeeper did not answer, or answered 429/5xx, until the retry budget ran out. Safe to retry."""

    exit_code = 3

    def __init__(self, detail: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after = retry_after


class UnexpectedResponse(ClientError):
    """An answer the contract does not have (a redirect, a 500, a body that is not the documented shape)."""

    exit_code = 1
