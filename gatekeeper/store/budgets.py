"""Time budgets for calls to storage and Key Vault, so a dependency outage is answered, not waited out.

The Azure SDKs default to minutes: storage queues retry three times starting 15 s apart, tables and Key Vault
ten times with exponential backoff and 300 s socket timeouts. On a request path that turned a storage outage
into an 85 s answer and a Key Vault outage into a 500 after 4.8 s, while GitHub gives up after 10 s and an
Azure DevOps check must be acknowledged within 3 s. A request path instead gets 2 s in all
(`REQUEST_DEADLINE_SECONDS`) and answers 503 with `Retry-After` when a dependency does not make it.

How the 2 s hold: each attempt may take `CONNECT_SECONDS` to connect (TLS handshake included) and
`READ_SECONDS` to read; a connection failure (nothing was sent, so retrying cannot duplicate anything) is
retried once after `BACKOFF_SECONDS`; a read timeout or an error status is not retried on a request path (the
caller retries on 503, and a second attempt would overrun the budget). So one failing call costs at most
max(2 x CONNECT + BACKOFF, CONNECT + READ) = 1.1 s, and the calls before it succeeded quickly. A request
path stops at its first failure, so it never spends two such budgets.

Background paths (the dispatcher, activities, the CLI) read and write through the same bounded clients for
Key Vault and the Keys table, and through the default SDK budgets for everything else: the queue and the
orchestrator retry them, and a slower success there is worth more than a fast failure.
"""

from __future__ import annotations

from typing import Any

from azure.core.pipeline.policies import RetryMode

from gatekeeper.errors import RETRY_AFTER_SECONDS

__all__ = [
    "RETRY_AFTER_SECONDS",
    "admin_call_options",
    "keyvault_client_options",
    "queue_client_options",
    "table_client_options",
]

REQUEST_DEADLINE_SECONDS = 2.0
CONNECT_SECONDS = 0.5
READ_SECONDS = 1.0
BACKOFF_SECONDS = 0.1
ADMIN_READ_SECONDS = 60.0
"""Read timeout of the administrative Key Vault calls (create or rotate a tenant's KEK, from the CLI): Key Vault
generates the key pair before it answers, which takes seconds for RSA-3072/HSM keys, and no request waits."""


def admin_call_options() -> dict[str, Any]:
    """Per-call keywords for administrative Key Vault operations (never on a request path)."""
    return {"read_timeout": ADMIN_READ_SECONDS}


def _request_budget() -> dict[str, Any]:
    """What every request-path storage and Key Vault client shares: the per-attempt timeouts, one retry of a
    failed connection, none of a slow read or an error status."""
    return {
        "connection_timeout": CONNECT_SECONDS,
        "read_timeout": READ_SECONDS,
        "retry_total": 1,
        "retry_connect": 1,
        "retry_read": 0,
        "retry_status": 0,
    }


def _azure_core_retry() -> dict[str, Any]:
    """RetryPolicy keywords of azure-core based clients (Tables, Key Vault)."""
    return {
        **_request_budget(),
        "retry_backoff_factor": BACKOFF_SECONDS,
        "retry_backoff_max": BACKOFF_SECONDS,
        "retry_mode": RetryMode.Fixed,
    }


def table_client_options() -> dict[str, Any]:
    """Keywords for `TableServiceClient` on request paths."""
    return _azure_core_retry()


def queue_client_options() -> dict[str, Any]:
    """Keywords for `QueueClient`/`QueueServiceClient` on request paths (storage's own ExponentialRetry)."""
    return {
        **_request_budget(),
        "initial_backoff": BACKOFF_SECONDS,
        "increment_base": 0,
        "random_jitter_range": 0,
    }


def keyvault_client_options() -> dict[str, Any]:
    """Keywords for `KeyClient` and `CryptographyClient` (Key Vault calls sit on request paths: sealing)."""
    return _azure_core_retry()
