"""A small typed client for Gatekeeper's action approvals (`/api/actions`), for scripts and automation agents.

`GatekeeperClient` asks for one exact command and waits; `requires_approval` guards a call (decorator or
context manager) and answers a quiet `Denied` instead of running it. Imports requests and tenacity only.
See docs/guard-a-step.md.
"""

from gatekeeper.client.api import (
    ACTION_KINDS,
    ActionState,
    Approval,
    GatekeeperClient,
    derive_idempotency_key,
    format_duration,
    parse_duration,
)
from gatekeeper.client.errors import ClientError, InvalidRequest, Unavailable, UnexpectedResponse
from gatekeeper.client.guard import Approved, Denied, requires_approval

__all__ = [
    "ACTION_KINDS",
    "ActionState",
    "Approval",
    "Approved",
    "ClientError",
    "Denied",
    "GatekeeperClient",
    "InvalidRequest",
    "Unavailable",
    "UnexpectedResponse",
    "derive_idempotency_key",
    "format_duration",
    "parse_duration",
    "requires_approval",
]
