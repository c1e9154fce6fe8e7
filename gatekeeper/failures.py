"""What a request path answers when a dependency fails or stored data does not check out.

Two kinds callers act on, besides the product's own errors (`gatekeeper.errors`):

- **dependency-unavailable** (`DependencyUnavailable`, answered 503 with `Retry-After`): storage or the key
  service could not be reached, timed out, throttled us or answered 5xx. Nothing was accepted; the same
  request can be sent again.
- **integrity-error** (`IntegrityError`, answered 500, named): a sealed value did not open where it is stored
  (moved, copied, tampered with, or its key destroyed). Retrying will not help; the failure is logged and
  audited.

Everything else stays an internal error. No answer carries exception text: SDK messages can hold URLs,
table names and request ids, and key errors must never reach a caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DeserializationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from gatekeeper.audit.records import SYSTEM_ACTOR
from gatekeeper.errors import RETRY_AFTER_SECONDS, GatekeeperError, dependency_unavailable, integrity_error
from gatekeeper.store.envelope import SealedDataUnreadable, SealingUnavailable
from gatekeeper.store.key_errors import KeyServiceUnavailable

log = logging.getLogger("gatekeeper.integrity")

KEY_SERVICE = "key service"
STORAGE = "storage service"

# Statuses that say "not now" rather than "your request is wrong": auth failures of our own identity, request
# timeout, throttling and server errors.
_UNAVAILABLE_STATUSES = frozenset({401, 403, 408, 429})


def _unavailable_status(exc: HttpResponseError) -> bool:
    """A status that is no error (the SDK refused a 2xx/3xx answer: something other than the service
    answered, e.g. a proxy's page) counts as the service being unavailable too."""
    status = exc.status_code or 0
    return status >= 500 or status < 400 or status in _UNAVAILABLE_STATUSES


def as_error(exc: BaseException) -> GatekeeperError | None:
    """The product error a request path answers for `exc`, or None when it is not a dependency or integrity
    failure (an internal error). Product errors pass through unchanged. An exception raised *from* a dependency
    failure (e.g. the checkpoint key that cannot be read while the process builds its runtime) is that
    dependency's failure."""
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 8:
        problem = _direct_problem(cause)
        if problem is not None:
            return problem
        cause, seen = cause.__cause__, seen + 1
    return None


def _direct_problem(exc: BaseException) -> GatekeeperError | None:
    if isinstance(exc, GatekeeperError):
        return exc
    if isinstance(exc, SealedDataUnreadable):
        return integrity_error()
    if isinstance(exc, SealingUnavailable | KeyServiceUnavailable):
        return dependency_unavailable(KEY_SERVICE, RETRY_AFTER_SECONDS)
    if isinstance(exc, DeserializationError):  # an answer that is not the service's (a proxy or firewall page)
        return dependency_unavailable(STORAGE, RETRY_AFTER_SECONDS)
    if isinstance(exc, ServiceRequestError | ServiceResponseError | ClientAuthenticationError):
        return dependency_unavailable(STORAGE, RETRY_AFTER_SECONDS)
    if isinstance(exc, HttpResponseError):
        return dependency_unavailable(STORAGE, RETRY_AFTER_SECONDS) if _unavailable_status(exc) else None
    if isinstance(exc, AzureError):  # other transport-level failures (e.g. a broken connection mid-read)
        return dependency_unavailable(STORAGE, RETRY_AFTER_SECONDS)
    return None


def record_integrity_failure(audit_for: Callable[[str], Any], failure: SealedDataUnreadable, route: str) -> bool:
    """Log and audit a sealed value that did not open: where it lies and why, never its contents.

    The audit entry goes to the tenant the value belongs to (kind `integrity_failure`, system actor).
    Returns whether it was audited: when the tenant's own key is what failed, its audit log cannot be sealed
    either, and the log line is the record."""
    where = failure.location
    log.error(
        "integrity failure on %s: sealed value in tenant %s, table %s, partition %s, row %s did not open (%s)",
        route,
        where.tenant_id if where else "?",
        where.table if where else "?",
        where.partition_key if where else "?",
        where.row_key if where else "?",
        failure.reason,
    )
    if where is None:
        return False
    try:
        audit_for(where.tenant_id).append(
            "integrity_failure",
            SYSTEM_ACTOR,
            "",
            f"sealed value in {where.table} did not open",
            {
                "table": where.table,
                "partition_key": where.partition_key,
                "row_key": where.row_key,
                "reason": failure.reason,
                "route": route,
            },
        )
    except Exception as exc:  # the audit log's own outage must not hide the integrity answer
        log.error("integrity failure in tenant %s could not be audited (%s)", where.tenant_id, type(exc).__name__)
        return False
    return True
