"""What a request path answers when a dependency fails or stored data does not check out.

Two kinds callers act on, besides the product's own Problems:

- **dependency-unavailable** (503 with `Retry-After`): storage or the key service could not be reached,
  timed out, throttled us or answered 5xx. Nothing was accepted; the same request can be sent again.
- **integrity-error** (500, named): a sealed value did not open where it is stored (moved, copied, tampered
  with, or its key destroyed). Retrying will not help; the failure is logged and audited.

Everything else stays an internal error. No answer carries exception text: SDK messages can hold URLs,
table names and request ids, and key errors must never reach a caller.
"""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from gatekeeper.errors import Problem, dependency_unavailable, integrity_error
from gatekeeper.store.budgets import RETRY_AFTER_SECONDS
from gatekeeper.store.envelope import SealedDataUnreadable, SealingUnavailable
from gatekeeper.store.key_errors import KeyServiceUnavailable

KEY_SERVICE = "key service"
STORAGE = "storage service"

# Statuses that say "not now" rather than "your request is wrong": auth failures of our own identity, request
# timeout, throttling and server errors.
_UNAVAILABLE_STATUSES = frozenset({401, 403, 408, 429})


def _unavailable_status(exc: HttpResponseError) -> bool:
    status = exc.status_code or 0
    return status >= 500 or status in _UNAVAILABLE_STATUSES


def as_problem(exc: BaseException) -> Problem | None:
    """The Problem a request path answers for `exc`, or None when it is not a dependency or integrity
    failure (an internal error). Problems pass through unchanged."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, SealedDataUnreadable):
        return integrity_error()
    if isinstance(exc, SealingUnavailable | KeyServiceUnavailable):
        return dependency_unavailable(KEY_SERVICE, RETRY_AFTER_SECONDS)
    if isinstance(exc, ServiceRequestError | ServiceResponseError | ClientAuthenticationError):
        return dependency_unavailable(STORAGE, RETRY_AFTER_SECONDS)
    if isinstance(exc, HttpResponseError):
        return dependency_unavailable(STORAGE, RETRY_AFTER_SECONDS) if _unavailable_status(exc) else None
    if isinstance(exc, AzureError):  # other transport-level failures (e.g. a broken connection mid-read)
        return dependency_unavailable(STORAGE, RETRY_AFTER_SECONDS)
    return None
