"""The ports: the few interfaces the gate's steps talk to, so adapters are looked up, not `isinstance`-checked.

- `PipelineTarget`: answers the pipeline that waits on a gate. One adapter per callback handle type
  (`github`, `azure-devops`, `webhook`); `gatekeeper.integrations.callbacks.PipelineCallbacks` picks the
  adapter by the handle's `type`, so a new CI is one adapter and one entry in that table.
- `Notifier`: tells approvers and operators. Channels (Graph: Teams activity feed + mail; the outbox) fan
  out behind it (`gatekeeper.integrations.notify.FanOutNotifier`), so a new channel is one adapter.

Ports named in the design but with no adapter yet (TicketSystem, DeviceManager, EventPublisher,
HealthProbe) are left out on purpose: an interface without a caller would be a guess.

This module imports only models, never an adapter, so any layer may depend on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gatekeeper.integrations.notify import Notification, NotificationResult
    from gatekeeper.integrations.results import CallbackResult

__all__ = ["Notifier", "PipelineTarget"]


class PipelineTarget(Protocol):
    """One CI's way to answer a waiting pipeline. `handle` is the callback handle of the adapter's type.

    Returns a `CallbackResult`; a remote failure is a result with ok=False, never an exception, so the
    caller can audit it and alert a human."""

    def complete(
        self, tenant_id: str, handle: Any, approved: bool, comment: str, context: Mapping[str, Any]
    ) -> CallbackResult:
        """The gate's decision (approved or rejected)."""
        ...

    def progress(self, tenant_id: str, handle: Any, comment: str) -> CallbackResult:
        """A status line while the gate waits."""
        ...


class Notifier(Protocol):
    """Delivers one notification for one tenant. Returns the result (per recipient), never raises for a
    remote failure."""

    def notify(self, tenant_id: str, notification: Notification) -> NotificationResult: ...
